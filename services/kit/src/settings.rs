//! Layered settings: built-in defaults, then an optional file, then `STOREFRONT_*` environment
//! variables (a double underscore nests: `STOREFRONT_CART__LISTEN` sets `cart.listen`).
//!
//! Every settings struct derives `Deserialize` with `#[serde(default)]` and implements
//! `Default`; the defaults are the embedded, single-machine configuration.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use config::{Config, Environment, File};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Prefix of every environment variable read as a setting.
pub const ENV_PREFIX: &str = "STOREFRONT";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings file {path} cannot be used: {source}")]
    File {
        path: String,
        #[source]
        source: config::ConfigError,
    },
    #[error("invalid settings: {0}")]
    Invalid(#[source] config::ConfigError),
}

/// Variables with the settings prefix that are not settings: the CLI's settings file, and the
/// local stack's and test kit's own variables. They are never read as settings, so unknown
/// settings can still be rejected.
pub const NOT_SETTINGS: &[&str] = &[
    "STOREFRONT_CONFIG",
    "STOREFRONT_CACHE",
    "STOREFRONT_STACK_DIR",
    "STOREFRONT_KEEP_STACK",
    "STOREFRONT_JAVA17_HOME",
];

/// Prefixes of variables that are not settings (the test kit's `STOREFRONT_TEST_*`).
pub const NOT_SETTINGS_PREFIXES: &[&str] = &["STOREFRONT_TEST_"];

fn is_setting(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix)
        && !NOT_SETTINGS.contains(&key)
        && !NOT_SETTINGS_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Loads settings from the optional `file` and the process environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, SettingsError> {
    load_from(file, std::env::vars())
}

/// Loads settings from the optional `file` and the given environment (for tests and tools).
pub fn load_from<T, I>(file: Option<&Path>, env: I) -> Result<T, SettingsError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let prefix = format!("{ENV_PREFIX}_");
    let env: HashMap<String, String> = env
        .into_iter()
        .filter(|(key, _)| is_setting(key, &prefix))
        .collect();
    let mut builder = Config::builder();
    if let Some(path) = file {
        // A file named explicitly must exist: a typo should not silently fall back to defaults.
        let display = path.display().to_string();
        builder = builder.add_source(File::from(path).required(true));
        let probe = Config::builder()
            .add_source(File::from(path).required(true))
            .build();
        if let Err(source) = probe {
            return Err(SettingsError::File {
                path: display,
                source,
            });
        }
    }
    builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .source(Some(env)),
    );
    builder
        .build()
        .and_then(Config::try_deserialize)
        .map_err(SettingsError::Invalid)
}

/// A secret setting (password, signing key, token). Its `Debug` and `Display` never show the
/// value; [`Secret::expose`] is the one way to read it, so every read is easy to find.
#[derive(Clone, Default)]
pub struct Secret(Option<SecretString>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Some(SecretString::from(value.into())))
    }

    /// The value, or `None` when the secret was not set.
    pub fn expose(&self) -> Option<&str> {
        self.0.as_ref().map(ExposeSecret::expose_secret)
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() {
            "Secret([redacted])"
        } else {
            "Secret(unset)"
        })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Option::<String>::deserialize(deserializer)?;
        Ok(Self(
            value.filter(|v| !v.is_empty()).map(SecretString::from),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        listen: String,
        workers: u16,
        nested: Nested,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default)]
    struct Nested {
        name: String,
        enabled: bool,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:8080".into(),
                workers: 4,
                nested: Nested::default(),
            }
        }
    }

    impl Default for Nested {
        fn default() -> Self {
            Self {
                name: "default".into(),
                enabled: false,
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        f.write_all(contents.as_bytes()).expect("write");
        f
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s: Sample = load_from(None, env(&[])).expect("load");
        assert_eq!(s, Sample::default());
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let f = file("listen = \"0.0.0.0:9000\"\nworkers = 8\n[nested]\nname = \"from-file\"\n");
        let s: Sample = load_from(
            Some(f.path()),
            env(&[
                ("STOREFRONT_WORKERS", "16"),
                ("STOREFRONT_NESTED__ENABLED", "true"),
                ("OTHER_WORKERS", "99"),
            ]),
        )
        .expect("load");
        assert_eq!(s.listen, "0.0.0.0:9000", "file beats default");
        assert_eq!(s.workers, 16, "env beats file");
        assert_eq!(s.nested.name, "from-file", "nested from file");
        assert!(s.nested.enabled, "nested from env with double underscore");
    }

    #[test]
    fn tooling_variables_are_not_settings() {
        let s: Sample = load_from(
            None,
            env(&[
                ("STOREFRONT_CONFIG", "/etc/storefront.toml"),
                ("STOREFRONT_KEEP_STACK", "1"),
                ("STOREFRONT_TEST_MYSQL_URL", "mysql://root@127.0.0.1:13306"),
                ("STOREFRONT_WORKERS", "2"),
            ]),
        )
        .expect("tooling variables are ignored, settings still read");
        assert_eq!(s.workers, 2);
    }

    #[test]
    fn an_unknown_setting_is_rejected() {
        let err =
            load_from::<Sample, _>(None, env(&[("STOREFRONT_WORKRES", "2")])).expect_err("typo");
        assert!(err.to_string().contains("workres"), "{err}");
    }

    #[test]
    fn a_missing_named_file_is_an_error() {
        let err = load_from::<Sample, _>(Some(Path::new("/nonexistent/storefront.toml")), env(&[]))
            .expect_err("must fail");
        assert!(matches!(err, SettingsError::File { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/storefront.toml"));
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let err = load_from::<Sample, _>(None, env(&[("STOREFRONT_WORKERS", "many")]))
            .expect_err("must fail");
        assert!(err.to_string().contains("workers"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        #[derive(Debug, Deserialize, Default)]
        #[serde(default)]
        struct WithSecret {
            password: Secret,
        }
        let s: WithSecret =
            load_from(None, env(&[("STOREFRONT_PASSWORD", "hunter2")])).expect("load");
        assert_eq!(s.password.expose(), Some("hunter2"));
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redacted"));
        assert!(!WithSecret::default().password.is_set());
    }
}
