//! Settings of the gateway service (`[gateway]` in the settings file, `STOREFRONT_GATEWAY__*` in
//! the environment).

use std::path::Path;

use serde::Deserialize;
use storefront_kit::backend::{BackendUrl, CacheUrl};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// cache backend; embedded default when unset.
    pub cache_url: Option<CacheUrl>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            cache_url: None,
        }
    }
}

impl Settings {
    /// The cache backend: the configured URL, or `memory://`.
    pub fn cache(&self, _data_dir: &Path) -> CacheUrl {
        self.cache_url.clone().unwrap_or_else(CacheUrl::in_memory)
    }

    /// Every backend with the name `/readyz` reports it under.
    pub fn backends(&self, data_dir: &Path) -> Vec<(&'static str, BackendUrl)> {
        vec![("cache", BackendUrl::clone(&self.cache(data_dir)))]
    }
}
