//! Builds and runs the cart service: picks the adapters by URL scheme and serves the API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use storefront_kit::auth::Verifier;
use storefront_kit::backend::Location;
use storefront_kit::bus::{self, Bus};
use storefront_kit::health::{HealthCheck, Readiness};
use storefront_kit::server::{Bound, Platform, Service, startup_error};
use storefront_search::domain::Currency;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::adapters::memory::MemoryCache;
use crate::adapters::mysql::MysqlCarts;
use crate::adapters::redis::RedisCache;
use crate::adapters::search::SearchCatalog;
use crate::adapters::sqlite::SqliteCarts;
use crate::http;
use crate::ports::{CartCache, CartRepo};
use crate::service::{AppState, CHECKOUT_CONSUMER};
use crate::settings::Settings;

/// The service's name in logs, metrics and `/readyz`.
pub const NAME: &str = "cart";
/// Most `orders.v1` records the checkout follower handles at once (about 250 orders).
const CHECKOUT_BATCH: usize = 1_000;

/// The cart service, bound and ready to run.
pub type Application = Bound<AppState>;

fn io_error(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    startup_error(NAME, what, e)
}

/// The cart database named by the settings, migrated.
pub async fn repo(settings: &Settings, data_dir: &Path) -> std::io::Result<Arc<dyn CartRepo>> {
    let url = settings.database(data_dir);
    Ok(match url.scheme() {
        "mysql" => Arc::new(
            MysqlCarts::connect(url.expose())
                .await
                .map_err(|e| io_error("database", e))?,
        ),
        _ => {
            let Location::Path(path) = url.location() else {
                return Err(io_error("database", "expected a sqlite:// file path"));
            };
            Arc::new(
                SqliteCarts::open(path)
                    .await
                    .map_err(|e| io_error("database", e))?,
            )
        }
    })
}

/// The cart cache named by the settings.
pub fn cache(settings: &Settings, data_dir: &Path) -> std::io::Result<Arc<dyn CartCache>> {
    let url = settings.cache(data_dir);
    let ttl = Duration::from_secs(settings.cache_ttl_secs.max(1));
    Ok(match url.scheme() {
        "redis" => Arc::new(
            RedisCache::new(url.expose(), &settings.cache_prefix, ttl)
                .map_err(|e| io_error("cache", e))?,
        ),
        _ => Arc::new(MemoryCache::new(settings.cache_capacity, ttl)),
    })
}

/// The state of the service: database, cache, catalog client, token verifier.
pub async fn state(
    settings: &Settings,
    data_dir: &Path,
    verifier: Verifier,
) -> std::io::Result<AppState> {
    let currency = Currency::parse(&settings.currency).map_err(|e| io_error("currency", e))?;
    let catalog = SearchCatalog::new(&settings.search_url, settings.search_client.clone())
        .map_err(|e| io_error("search_url", e))?;
    Ok(AppState {
        repo: repo(settings, data_dir).await?,
        cache: cache(settings, data_dir)?,
        catalog: Arc::new(catalog),
        verifier,
        currency,
        price_timeout: Duration::from_millis(settings.price_timeout_ms.max(1)),
    })
}

/// Connects the backends and binds the listener (so [`Bound::port`] is known).
/// Tokens are verified with the auth service's keys (`auth` settings).
pub async fn build(settings: &Settings, platform: &Platform) -> std::io::Result<Application> {
    build_with(settings, platform, Verifier::from_settings(&settings.auth)).await
}

/// [`build`] with a given token verifier.
pub async fn build_with(
    settings: &Settings,
    platform: &Platform,
    verifier: Verifier,
) -> std::io::Result<Application> {
    let data_dir = &platform.data_dir;
    let state = state(settings, data_dir, verifier).await?;
    let bus = Bus::connect(&settings.events(data_dir), NAME, &platform.memory_bus)
        .map_err(|e| io_error("events", e))?;

    let mut readiness = Readiness::new(NAME, platform.shutdown.token());
    readiness.add(
        HealthCheck::on("database", state.repo.clone(), |a| async move {
            a.check().await
        })
        .with_target(settings.database(data_dir).redacted()),
    );
    // The cache, the catalog and the bus are not part of readiness. Without the cache, carts
    // are read from the database; without the catalog, carts are still shown (at the
    // captured prices), changed and emptied, only adding is refused (503); without the bus,
    // placed orders leave their carts once it is back. Taking every replica out of service
    // for either would turn a partial outage into a full one. `cart_cache_up`,
    // `cart_catalog_up`, `cart_events_up` and the logs report them.
    watch(platform, "cache", state.cache.clone(), |c| {
        async move { c.check().await }.boxed()
    });
    watch(platform, "catalog", state.catalog.clone(), |c| {
        async move { c.check().await }.boxed()
    });
    watch(platform, "events", bus.clone(), |b| {
        async move { b.check().await }.boxed()
    });
    platform.shutdown.spawn(follow_orders(
        state.clone(),
        bus,
        settings.clone(),
        platform.shutdown.token(),
    ));

    let service = Service {
        name: NAME,
        router: http::router(state.clone()),
        openapi: http::ApiDoc::openapi(),
        readiness,
    };
    Bound::bind(&settings.listen, service, state).await
}

/// Takes placed orders out of their carts: follows the order service's topic in batches of
/// what arrives within `checkout_linger_ms`, so a stream of orders costs one statement per
/// batch, not one request per order.
async fn follow_orders(state: AppState, bus: Bus, settings: Settings, stop: CancellationToken) {
    let topic = settings.prefixed(&settings.orders_topic);
    let group = settings.prefixed(&settings.checkout_consumer_group);
    let Some(subscription) = bus.follow_topic(&group, &topic, &stop).await else {
        return;
    };
    bus::consume_batches(
        CHECKOUT_CONSUMER,
        subscription,
        stop,
        CHECKOUT_BATCH,
        Duration::from_millis(settings.checkout_linger_ms),
        |batch| {
            let state = state.clone();
            async move { state.follow_orders(&batch).await }
        },
    )
    .await;
}

/// Reports `dependency`, which the service works without, as the gauge `cart_<name>_up` and
/// in the logs, checking it every 5 s until shutdown.
fn watch<T>(
    platform: &Platform,
    name: &'static str,
    dependency: T,
    check: fn(T) -> BoxFuture<'static, Result<(), String>>,
) where
    T: Clone + Send + 'static,
{
    platform
        .shutdown
        .spawn(watching(name, dependency, check, platform.shutdown.token()));
}

async fn watching<T: Clone>(
    name: &'static str,
    dependency: T,
    check: fn(T) -> BoxFuture<'static, Result<(), String>>,
    stop: CancellationToken,
) {
    let mut was_up = true;
    loop {
        let up = check(dependency.clone()).await.is_ok();
        metrics::gauge!(format!("cart_{name}_up")).set(if up { 1.0 } else { 0.0 });
        if up != was_up {
            if up {
                tracing::info!(dependency = name, "dependency is back");
            } else {
                tracing::warn!(dependency = name, "dependency is down; serving without it");
            }
            was_up = up;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
