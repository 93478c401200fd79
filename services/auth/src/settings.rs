//! Settings of the auth service (`[auth]` in the settings file, `STOREFRONT_AUTH__*` in
//! the environment).

use std::path::Path;

use serde::Deserialize;
use storefront_kit::backend::{BackendUrl, SqlUrl};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// database backend; embedded default when unset.
    pub database_url: Option<SqlUrl>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            database_url: None,
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
