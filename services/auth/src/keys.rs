//! Signing keys: from settings (a Kubernetes Secret) or, for the embedded backend, generated
//! on first start and kept under `<data_dir>/auth-keys/` so restarts keep tokens valid.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::JwkSet;
use storefront_kit::auth::Issuer;

use crate::settings::Settings;

/// Directory under `data_dir` where embedded keys live.
pub const EMBEDDED_KEYS_DIR: &str = "auth-keys";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "auth: no signing keys configured. With a mysql:// database, set auth.signing_keys \
         (kid + PKCS#8 Ed25519 PEM, e.g. from a Kubernetes Secret) or auth.signing_keys_dir"
    )]
    NoneConfigured,
    #[error("auth: signing key {kid:?} cannot be used: {reason}")]
    Invalid { kid: String, reason: String },
    #[error("auth: signing keys in {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// The keys of the service: one signs, all are published.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<Issuer>,
}

impl KeyRing {
    /// A ring from keys; the first signs.
    pub fn new(keys: Vec<Issuer>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoneConfigured);
        }
        Ok(Self { keys })
    }

    /// The key that signs new tokens.
    pub fn signer(&self) -> &Issuer {
        &self.keys[0]
    }

    /// Every public key, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(Issuer::jwk).collect(),
        }
    }

    /// The keys the settings name: `signing_keys`, else `signing_keys_dir`, else (embedded
    /// backend only) `<data_dir>/auth-keys`, generating a key there when it is empty.
    pub fn load(settings: &Settings, data_dir: &Path, embedded: bool) -> Result<Self, KeyError> {
        let parse = |kid: &str, pem: &str| {
            Issuer::from_pkcs8_pem(kid, &settings.issuer, &settings.audience, pem).map_err(|e| {
                KeyError::Invalid {
                    kid: kid.to_string(),
                    reason: e.to_string(),
                }
            })
        };
        if !settings.signing_keys.is_empty() {
            let keys = settings
                .signing_keys
                .iter()
                .map(|k| {
                    let pem = k.pem.expose().ok_or_else(|| KeyError::Invalid {
                        kid: k.kid.clone(),
                        reason: "no pem".into(),
                    })?;
                    parse(&k.kid, pem)
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Self::new(keys);
        }
        if let Some(dir) = &settings.signing_keys_dir {
            let keys = read_dir(dir)?
                .into_iter()
                .map(|(kid, pem)| parse(&kid, &pem))
                .collect::<Result<Vec<_>, _>>()?;
            return Self::new(keys);
        }
        if !embedded {
            return Err(KeyError::NoneConfigured);
        }
        let dir = data_dir.join(EMBEDDED_KEYS_DIR);
        let mut found = read_dir(&dir).or_else(|e| match &e {
            KeyError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(Vec::new())
            }
            _ => Err(e),
        })?;
        if found.is_empty() {
            let kid = format!("auth-{}", uuid::Uuid::now_v7());
            let key = Issuer::generate(&kid, &settings.issuer, &settings.audience);
            let pem = key.to_pkcs8_pem().map_err(|e| KeyError::Invalid {
                kid: kid.clone(),
                reason: e.to_string(),
            })?;
            write_private(&dir, &kid, &pem)?;
            tracing::info!(kid, dir = %dir.display(), "generated a signing key");
            found.push((kid, pem));
        }
        let keys = found
            .into_iter()
            .map(|(kid, pem)| parse(&kid, &pem))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }
}

/// `<kid>.pem` files of `dir`, greatest kid first (so date- or time-ordered kids rotate by
/// adding a file).
fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, KeyError> {
    let io = |source| KeyError::Io {
        dir: dir.display().to_string(),
        source,
    };
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path: PathBuf = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let Some(kid) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let pem = std::fs::read_to_string(&path).map_err(io)?;
        keys.push((kid.to_string(), pem));
    }
    keys.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(keys)
}

fn write_private(dir: &Path, kid: &str, pem: &str) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |source| KeyError::Io {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(format!("{kid}.pem")))
        .map_err(io)?;
    file.write_all(pem.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SigningKey;
    use storefront_kit::settings::Secret;

    #[test]
    fn embedded_keys_are_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings::default();
        let first = KeyRing::load(&settings, dir.path(), true).expect("generate");
        let again = KeyRing::load(&settings, dir.path(), true).expect("reload");
        assert_eq!(first.jwks(), again.jwks());
        let file = std::fs::read_dir(dir.path().join(EMBEDDED_KEYS_DIR))
            .expect("dir")
            .next()
            .expect("one key")
            .expect("entry");
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_network_database_needs_configured_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = KeyRing::load(&Settings::default(), dir.path(), false).expect_err("no keys");
        assert!(err.to_string().contains("signing_keys"), "{err}");
    }

    #[test]
    fn configured_keys_sign_with_the_first_and_publish_all() {
        let pem = |kid| {
            Issuer::generate(kid, "storefront", "storefront")
                .to_pkcs8_pem()
                .expect("pem")
        };
        let settings = Settings {
            signing_keys: vec![
                SigningKey {
                    kid: "new".into(),
                    pem: Secret::new(pem("new")),
                },
                SigningKey {
                    kid: "old".into(),
                    pem: Secret::new(pem("old")),
                },
            ],
            ..Settings::default()
        };
        let ring = KeyRing::load(&settings, Path::new("/nonexistent"), false).expect("load");
        assert_eq!(ring.signer().kid(), "new");
        assert_eq!(ring.jwks().keys.len(), 2);
    }
}
