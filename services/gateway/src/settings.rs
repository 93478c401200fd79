//! Settings of the gateway service (`[gateway]` in the settings file, `STOREFRONT_GATEWAY__*` in
//! the environment). Routes and rate limits live in the configuration file
//! (`config_path`, see [`crate::domain::config`]), which is reloaded while running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use storefront_kit::auth::VerifierSettings;
use storefront_kit::backend::{BackendUrl, CacheUrl};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// Rate-limit store for `store: redis` (a `redis://` URL); `memory://` when unset.
    pub cache_url: Option<CacheUrl>,
    /// Prefix of every Redis key the gateway writes.
    pub cache_prefix: String,
    /// The routing and rate-limit file (`gateway.yaml`); unset: the built-in routes of
    /// `storefront up` (every service on its default local port).
    pub config_path: Option<PathBuf>,
    /// How often the configuration file is checked for changes.
    pub reload_interval_ms: u64,
    /// Base URL by service name (`auth`, `search`, ...), replacing the `upstream` of that
    /// service's routes (those without `instances`) in the configuration: `storefront up`
    /// sets these when it binds services on other ports than the defaults.
    pub upstreams: BTreeMap<String, String>,
    /// Where access tokens are verified.
    pub auth: VerifierSettings,
    /// Verified tokens remembered, each until its `exp`.
    pub token_cache_capacity: u64,
    /// Largest request body forwarded; larger ones get 413.
    pub max_body_bytes: usize,
    /// Connect timeout to upstream instances.
    pub connect_timeout_ms: u64,
    /// Idle keep-alive connections kept per upstream instance.
    pub pool_max_idle_per_host: usize,
    /// Origins allowed to call the API from a browser (`*` for any); empty: no CORS headers
    /// (the UI is served by the gateway itself, same origin).
    pub cors_origins: Vec<String>,
    /// Threads serving requests, each with its own runtime and upstream pool, sharing one
    /// listening socket (a new connection goes to the thread with the fewest open); 0: one
    /// per CPU the process may use.
    pub serve_threads: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            cache_url: None,
            cache_prefix: "gateway".into(),
            config_path: None,
            reload_interval_ms: 1_000,
            upstreams: BTreeMap::new(),
            auth: VerifierSettings::default(),
            token_cache_capacity: 100_000,
            max_body_bytes: 1 << 20,
            connect_timeout_ms: 1_000,
            pool_max_idle_per_host: 256,
            cors_origins: Vec::new(),
            serve_threads: 0,
        }
    }
}

impl Settings {
    /// The cache backend: the configured URL, or `memory://`.
    pub fn cache(&self, _data_dir: &Path) -> CacheUrl {
        self.cache_url.clone().unwrap_or_else(CacheUrl::in_memory)
    }

    /// How many threads serve requests: `serve_threads`, or one per available CPU.
    pub fn serving_threads(&self) -> usize {
        match self.serve_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Every backend with the name `/readyz` reports it under.
    pub fn backends(&self, data_dir: &Path) -> Vec<(&'static str, BackendUrl)> {
        vec![("cache", BackendUrl::clone(&self.cache(data_dir)))]
    }
}
