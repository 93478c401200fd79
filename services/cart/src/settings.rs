//! Settings of the cart service (`[cart]` in the settings file, `STOREFRONT_CART__*` in
//! the environment).

use std::path::Path;

use serde::Deserialize;
use storefront_kit::backend::{BackendUrl, CacheUrl, SqlUrl};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// database backend; embedded default when unset.
    pub database_url: Option<SqlUrl>,
    /// cache backend; embedded default when unset.
    pub cache_url: Option<CacheUrl>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            database_url: None,
            cache_url: None,
        }
    }
}

impl Settings {
    /// The database backend: the configured URL, or `sqlite://<data-dir>/cart.db`.
    pub fn database(&self, data_dir: &Path) -> SqlUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| SqlUrl::embedded_path("sqlite", &data_dir.join("cart.db")))
    }

    /// The cache backend: the configured URL, or `memory://`.
    pub fn cache(&self, _data_dir: &Path) -> CacheUrl {
        self.cache_url.clone().unwrap_or_else(CacheUrl::in_memory)
    }

    /// Every backend with the name `/readyz` reports it under.
    pub fn backends(&self, data_dir: &Path) -> Vec<(&'static str, BackendUrl)> {
        vec![
            ("database", BackendUrl::clone(&self.database(data_dir))),
            ("cache", BackendUrl::clone(&self.cache(data_dir))),
        ]
    }
}
