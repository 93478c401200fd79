//! Settings of the auth service (`[auth]` in the settings file, `STOREFRONT_AUTH__*` in
//! the environment).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use storefront_kit::backend::{BackendUrl, SqlUrl};
use storefront_kit::settings::Secret;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

/// One signing key: its `kid` and its Ed25519 private key as PKCS#8 PEM.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKey {
    pub kid: String,
    pub pem: Secret,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// database backend; embedded default when unset.
    pub database_url: Option<SqlUrl>,
    /// `iss` of the tokens issued.
    pub issuer: String,
    /// `aud` of the tokens issued.
    pub audience: String,
    /// Access token lifetime.
    pub access_ttl_secs: u64,
    /// Refresh token lifetime (each rotation issues a new one with a fresh lifetime).
    pub refresh_ttl_secs: u64,
    /// Signing keys: the first signs, all are published in the JWKS (rotation overlap).
    pub signing_keys: Vec<SigningKey>,
    /// A directory of `<kid>.pem` files (a mounted Kubernetes Secret), used when
    /// `signing_keys` is empty. The greatest `kid` (by name) signs; all are published.
    /// Embedded default: `<data_dir>/auth-keys`, where a key is generated on first start.
    pub signing_keys_dir: Option<PathBuf>,
    /// Failed logins per account (e-mail) before it is locked.
    pub login_max_failures_per_account: u32,
    /// Failed logins per client IP before it is locked.
    pub login_max_failures_per_ip: u32,
    /// Longest lock; locks grow 2, 4, 8, ... seconds up to this.
    pub login_max_lock_secs: u64,
    /// Failures older than this are forgotten.
    pub login_failure_window_secs: u64,
    /// Argon2id memory cost in KiB for new password hashes.
    pub password_memory_kib: u32,
    /// Argon2id iterations for new password hashes.
    pub password_iterations: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            database_url: None,
            issuer: "storefront".into(),
            audience: "storefront".into(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            signing_keys: Vec::new(),
            signing_keys_dir: None,
            login_max_failures_per_account: 5,
            login_max_failures_per_ip: 50,
            login_max_lock_secs: 900,
            login_failure_window_secs: 900,
            password_memory_kib: 19 * 1024,
            password_iterations: 2,
        }
    }
}

impl Settings {
    /// The database backend: the configured URL, or `sqlite://<data-dir>/auth.db`.
    pub fn database(&self, data_dir: &Path) -> SqlUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| SqlUrl::embedded_path("sqlite", &data_dir.join("auth.db")))
    }

    /// Every backend with the name `/readyz` reports it under.
    pub fn backends(&self, data_dir: &Path) -> Vec<(&'static str, BackendUrl)> {
        vec![("database", BackendUrl::clone(&self.database(data_dir)))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn keys_and_limits_load_from_a_file_and_the_environment() {
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("file");
        file.write_all(
            b"[[signing_keys]]\nkid = \"k2\"\npem = \"PEM-2\"\n\n[[signing_keys]]\nkid = \"k1\"\npem = \"PEM-1\"\n",
        )
        .expect("write");
        let env = [
            ("STOREFRONT_LOGIN_MAX_FAILURES_PER_IP", "7"),
            ("STOREFRONT_SIGNING_KEYS_DIR", "/etc/storefront/auth-keys"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let s: Settings =
            storefront_kit::settings::load_from(Some(file.path()), env).expect("load");
        assert_eq!(s.signing_keys.len(), 2);
        assert_eq!(s.signing_keys[0].kid, "k2");
        assert_eq!(s.signing_keys[0].pem.expose(), Some("PEM-2"));
        assert!(!format!("{s:?}").contains("PEM-2"), "PEMs never print");
        assert_eq!(s.login_max_failures_per_ip, 7);
        assert_eq!(s.login_max_failures_per_account, 5);
        assert_eq!(
            s.signing_keys_dir.as_deref(),
            Some(Path::new("/etc/storefront/auth-keys"))
        );
    }
}
