//! Builds and runs the search service: picks the adapters by URL scheme, spawns the outbox
//! relay, the index follower (`catalog.v1`) and the stock follower (`orders.v1`) as tracked
//! workers, and serves the API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use storefront_kit::auth::Verifier;
use storefront_kit::backend::Location;
use storefront_kit::bus::{self, Bus};
use storefront_kit::health::{HealthCheck, Readiness};
use storefront_kit::server::{Bound, Platform, Service, startup_error};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::adapters::elastic::ElasticIndex;
use crate::adapters::memory::MemoryCache;
use crate::adapters::mongo::MongoCatalog;
use crate::adapters::redis::RedisCache;
use crate::adapters::sqlite::SqliteCatalog;
use crate::adapters::tantivy::TantivyIndex;
use crate::demo;
use crate::http;
use crate::ports::{BackendError, Cache, CatalogRepo, SearchIndex};
use crate::service::{self, AppState};
use crate::settings::Settings;

/// The service's name in logs, metrics and `/readyz`.
pub const NAME: &str = "search";

/// The search service, bound and ready to run.
pub type Application = Bound<AppState>;

fn io_error(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    startup_error(NAME, what, e)
}

fn path_of(location: &Location, what: &str) -> std::io::Result<std::path::PathBuf> {
    match location {
        Location::Path(p) => Ok(p.clone()),
        _ => Err(io_error(what, "expected a path")),
    }
}

/// The catalog named by the settings.
pub async fn catalog(
    settings: &Settings,
    data_dir: &Path,
) -> std::io::Result<Arc<dyn CatalogRepo>> {
    let url = settings.catalog(data_dir);
    Ok(match url.scheme() {
        "mongodb" => {
            let mongo = MongoCatalog::connect(url.expose())
                .await
                .map_err(|e| io_error("catalog", e))?;
            if let Err(e) = mongo.migrate().await {
                tracing::warn!(error = %e, "catalog index not created (MongoDB down?)");
            }
            Arc::new(mongo)
        }
        _ => Arc::new(
            SqliteCatalog::open(&path_of(url.location(), "catalog")?)
                .await
                .map_err(|e| io_error("catalog", e))?,
        ),
    })
}

/// The search index named by the settings.
pub async fn index(settings: &Settings, data_dir: &Path) -> std::io::Result<Arc<dyn SearchIndex>> {
    let url = settings.index(data_dir);
    Ok(match url.scheme() {
        "http" | "https" => Arc::new(
            ElasticIndex::new(url.expose(), &settings.index_name)
                .map_err(|e| io_error("index", e))?,
        ),
        _ => Arc::new(
            TantivyIndex::open(&path_of(url.location(), "index")?)
                .await
                .map_err(|e| io_error("index", e))?,
        ),
    })
}

/// The cache named by the settings.
pub fn cache(settings: &Settings, data_dir: &Path) -> std::io::Result<Arc<dyn Cache>> {
    let url = settings.cache(data_dir);
    Ok(match url.scheme() {
        "redis" => Arc::new(
            RedisCache::new(url.expose(), &settings.cache_prefix)
                .map_err(|e| io_error("cache", e))?,
        ),
        _ => Arc::new(MemoryCache::new(settings.cache_capacity)),
    })
}

/// Connects the backends and binds the listener (so [`Bound::port`] is known).
/// Tokens are verified with the auth service's keys (default verifier settings).
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
    let state = AppState {
        catalog: catalog(settings, data_dir).await?,
        index: index(settings, data_dir).await?,
        cache: cache(settings, data_dir)?,
        verifier,
        cache_ttl: Duration::from_secs(settings.cache_ttl_secs.max(1)),
        relay_wake: Arc::new(Notify::new()),
    };
    let events = settings.events(data_dir);
    let bus =
        Bus::connect(&events, NAME, &platform.memory_bus).map_err(|e| io_error("events", e))?;

    let mut readiness = Readiness::new(NAME, platform.shutdown.token());
    readiness.add(
        HealthCheck::on("catalog", state.catalog.clone(), |a| async move {
            a.check().await
        })
        .with_target(settings.catalog(data_dir).redacted()),
    );
    readiness.add(
        HealthCheck::on(
            "index",
            state.index.clone(),
            |a| async move { a.check().await },
        )
        .with_target(settings.index(data_dir).redacted()),
    );
    readiness.add(bus.readiness_check(&events));
    // The cache is optional: when it is down the service answers uncached, so it is not
    // part of readiness; `search_cache_up` and the logs report it.
    platform
        .shutdown
        .spawn(watch_cache(state.cache.clone(), platform.shutdown.token()));

    // Create the index before serving, so the first searches find it; when the engine is
    // down, the follower keeps trying in the background.
    let ensured = match tokio::time::timeout(Duration::from_secs(15), state.index.ensure()).await {
        Ok(Ok(created)) => Some(created),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "index setup failed; retrying in the background");
            None
        }
        Err(_) => {
            tracing::warn!("index setup timed out; retrying in the background");
            None
        }
    };
    let token = platform.shutdown.token();
    platform.shutdown.spawn(service::relay(
        state.clone(),
        bus.clone(),
        settings.prefixed(&settings.catalog_topic),
        token.clone(),
    ));
    let (index_ready, ready) = watch::channel(ensured.is_some());
    platform.shutdown.spawn(follow_stock(
        state.clone(),
        bus.clone(),
        settings.clone(),
        ready,
        token.clone(),
    ));
    platform.shutdown.spawn(follow(
        state.clone(),
        bus,
        settings.clone(),
        ensured,
        index_ready,
        token,
    ));

    let service = Service {
        name: NAME,
        router: http::router(state.clone()),
        openapi: http::ApiDoc::openapi(),
        readiness,
    };
    Bound::bind(&settings.listen, service, state).await
}

async fn retry<T, F, Fut>(what: &str, stop: &CancellationToken, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => tracing::warn!(error = %e, "{what} failed; retrying in {delay:?}"),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Prepares the index (creating it, seeding the demo catalog into an empty catalog, filling an
/// empty index), then follows `catalog.v1` until shutdown.
async fn follow(
    state: AppState,
    bus: Bus,
    settings: Settings,
    ensured: Option<bool>,
    index_ready: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let created = match ensured {
        Some(c) => c,
        None => match retry("index setup", &stop, || state.index.ensure()).await {
            Some(c) => c,
            None => return,
        },
    };
    index_ready.send_replace(true);
    let Some(count) = retry("catalog count", &stop, || state.catalog.count()).await else {
        return;
    };
    let mut rebuild = created && count > 0;
    if count == 0 && settings.seed_demo && settings.demo_products > 0 {
        let products = demo::products(demo::DEFAULT_SEED, settings.demo_products);
        if retry("demo catalog import", &stop, || {
            state.catalog.import(&products)
        })
        .await
        .is_none()
        {
            return;
        }
        tracing::info!(products = products.len(), "demo catalog loaded");
        rebuild = true;
    }
    if rebuild {
        match retry("initial index build", &stop, || {
            state.index.reindex(state.catalog.as_ref())
        })
        .await
        {
            Some(n) => {
                state.cache.bump().await;
                tracing::info!(indexed = n, "index built from the catalog");
            }
            None => return,
        }
    }
    let topic = settings.prefixed(&settings.catalog_topic);
    let group = settings.prefixed(&settings.consumer_group);
    let Some(subscription) = bus.follow_topic(&group, &topic, &stop).await else {
        return;
    };
    bus::consume("search-indexer", subscription, stop, |record| {
        let state = state.clone();
        async move { state.follow(record).await }
    })
    .await;
}

/// Most `orders.v1` records applied at once (one catalog transaction, one index write).
const STOCK_BATCH: usize = 5000;

/// Follows `orders.v1` until shutdown, applying `StockChanged` to the catalog and the index
/// (once the index exists: a write before would create it without its mapping).
///
/// Records are taken in batches of what has arrived (a burst, such as the demo stock of
/// `storefront up`, costs one index commit per batch rather than per record); a batch is
/// retried whole until it applies, then committed, so a partition's order is kept and
/// nothing is skipped.
async fn follow_stock(
    state: AppState,
    bus: Bus,
    settings: Settings,
    mut index_ready: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    tokio::select! {
        () = stop.cancelled() => return,
        ready = index_ready.wait_for(|ready| *ready) => {
            if ready.is_err() {
                return;
            }
        }
    }
    let topic = settings.prefixed(&settings.orders_topic);
    let group = settings.prefixed(&settings.stock_consumer_group);
    let linger = Duration::from_millis(settings.stock_linger_ms);
    let Some(subscription) = bus.follow_topic(&group, &topic, &stop).await else {
        return;
    };
    // Reports gathered for the linger: a stream of orders costs one index write and one cache
    // invalidation per period, not one per order.
    bus::consume_batches(
        "search-stock",
        subscription,
        stop,
        STOCK_BATCH,
        linger,
        |batch| {
            let state = state.clone();
            async move { state.follow_stock(&batch).await }
        },
    )
    .await;
}

/// Reports the optional cache's health as a gauge and in the logs.
async fn watch_cache(cache: Arc<dyn Cache>, stop: CancellationToken) {
    let mut was_up = true;
    loop {
        let up = cache.check().await.is_ok();
        metrics::gauge!("search_cache_up").set(if up { 1.0 } else { 0.0 });
        if up != was_up {
            if up {
                tracing::info!("cache is back; responses are cached again");
            } else {
                tracing::warn!("cache is down; answering uncached");
            }
            was_up = up;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
