//! Builds and runs the gateway: loads the configuration file (or the built-in one), makes the
//! one upstream client and the token verifier, spawns the reload watcher, the health checker
//! and the rate-limit maintenance as tracked workers, and serves.

use std::sync::Arc;
use std::time::Duration;

use storefront_kit::auth::Verifier;
use storefront_kit::health::{HealthCheck, Readiness};
use storefront_kit::server::{Platform, Service, Shard, ShardedServer, startup_error};
use utoipa::OpenApi;

use crate::adapters::redis::RedisStore;
use crate::http::{self, AppState};
use crate::runtime::{self, Compiler, Shared};
use crate::settings::Settings;
use crate::tokens::Tokens;
use crate::upstream;
use crate::wire::Wire;

/// The service's name in logs, metrics and `/readyz`.
pub const NAME: &str = "gateway";

/// Bound of Redis connects and replies (each decision is also bounded by `storeTimeoutMs`,
/// which may not be longer).
const REDIS_TIMEOUT: Duration = Duration::from_millis(crate::domain::config::MAX_STORE_TIMEOUT_MS);

/// The gateway service, bound and ready to run.
pub struct Application {
    server: ShardedServer,
    shared: Arc<Shared>,
}

fn io_error(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    startup_error(NAME, what, e)
}

impl Application {
    /// Loads the configuration and binds the listener (so [`Application::port`] is known).
    /// Tokens are verified with the auth service's keys (`gateway.auth`).
    pub async fn build(settings: &Settings, platform: &Platform) -> std::io::Result<Self> {
        Self::build_with(settings, platform, Verifier::from_settings(&settings.auth)).await
    }

    /// [`Application::build`] with a given token verifier.
    pub async fn build_with(
        settings: &Settings,
        platform: &Platform,
        verifier: Verifier,
    ) -> std::io::Result<Self> {
        let cache = settings.cache(&platform.data_dir);
        let redis = match cache.scheme() {
            "redis" => Some(Arc::new(
                RedisStore::new(cache.expose(), &settings.cache_prefix, REDIS_TIMEOUT)
                    .map_err(|e| io_error("cache", e))?,
            )),
            _ => None,
        };
        let shared = Arc::new(
            Shared::load(
                settings.config_path.as_deref(),
                Compiler {
                    redis,
                    upstreams: settings.upstreams.clone(),
                    ..Compiler::default()
                },
            )
            .await
            .map_err(|e| io_error("config", e))?,
        );
        // Both upstream clients (hyper's and the fast path's wire) connect and keep alike.
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms.max(1));
        let max_idle = settings.pool_max_idle_per_host;
        let client = || upstream::client(connect_timeout, max_idle);
        let tokens = Arc::new(Tokens::new(verifier, settings.token_cache_capacity));

        let mut readiness = Readiness::new(NAME, platform.shutdown.token());
        let status = shared.clone();
        let source = shared.status.load().source.clone();
        readiness.add(
            HealthCheck::new("config", move || {
                let status = status.status.load_full();
                async move {
                    match &status.last_error {
                        None => Ok(()),
                        Some(e) => Err(format!(
                            "last reload rejected, still serving configuration {}: {e}",
                            &status.hash[..12.min(status.hash.len())]
                        )),
                    }
                }
            })
            .with_target(source)
            .advisory(),
        );

        let stop = platform.shutdown.token();
        if let Some(path) = settings.config_path.clone() {
            let every = Duration::from_millis(settings.reload_interval_ms.max(50));
            platform
                .shutdown
                .spawn(runtime::watch(shared.clone(), path, every, stop.clone()));
        }
        platform.shutdown.spawn(runtime::check_health(
            shared.clone(),
            client(),
            stop.clone(),
        ));
        platform
            .shutdown
            .spawn(runtime::resolve_upstreams(shared.clone(), stop.clone()));
        platform.shutdown.spawn(runtime::maintain_limits(
            shared.clone(),
            Duration::from_secs(10),
            stop,
        ));

        // One shard per serving thread, each with its own upstream pool, so a request and its
        // upstream connection stay on one thread; the configuration, limits and token cache
        // are shared.
        let shards: Vec<Shard> = (0..settings.serving_threads())
            .map(|_| {
                let state = Arc::new(AppState {
                    shared: shared.clone(),
                    tokens: tokens.clone(),
                    client: client(),
                    wire: Wire::new(connect_timeout, max_idle),
                    max_body: settings.max_body_bytes,
                });
                let front = http::Proxied::new(state.clone(), &settings.cors_origins);
                Shard {
                    service: Service {
                        name: NAME,
                        router: http::router(state, &settings.cors_origins),
                        openapi: http::ApiDoc::openapi(),
                        readiness: readiness.clone(),
                    },
                    front: Some(Arc::new(front)),
                }
            })
            .collect();
        let server = ShardedServer::bind(&settings.listen, shards).await?;
        Ok(Self { server, shared })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The running configuration (tests and benchmarks look at it).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until shutdown begins, then drains in-flight requests.
    pub async fn run_until_stopped(self, platform: Platform) -> std::io::Result<()> {
        self.server.run(platform.shutdown.token()).await
    }
}
