//! Builds and runs the order service: picks the database by URL scheme, spawns the outbox
//! relay and the `deliveries.v1` / `catalog.v1` followers as tracked workers, and serves the
//! API.

use std::sync::Arc;

use storefront_cart::client::CartClient;
use storefront_kit::auth::Verifier;
use storefront_kit::backend::Location;
use storefront_kit::bus::{self, Bus, HandlerError, Received};
use storefront_kit::health::{HealthCheck, Readiness};
use storefront_kit::server::{Bound, Platform, Service, startup_error};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::adapters::mysql::MysqlOrders;
use crate::adapters::sqlite::SqliteOrders;
use crate::http;
use crate::ports::OrderRepo;
use crate::service::AppState;
use crate::settings::Settings;

/// The service's name in logs, metrics and `/readyz`.
pub const NAME: &str = "order";

/// The order service, bound and ready to run.
pub type Application = Bound<AppState>;

fn io_error(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    startup_error(NAME, what, e)
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
    let database = settings.database(data_dir);
    let events = settings.events(data_dir);
    let bus =
        Bus::connect(&events, NAME, &platform.memory_bus).map_err(|e| io_error("events", e))?;
    let wake = Arc::new(Notify::new());
    let token = platform.shutdown.token();
    let orders_topic = settings.prefixed(&settings.orders_topic);
    let topic = orders_topic.as_str();

    let repo: Arc<dyn OrderRepo> = match database.scheme() {
        "mysql" => {
            let db = MysqlOrders::connect(database.expose(), topic)
                .await
                .map_err(|e| io_error("database", e))?;
            if settings.relay_enabled {
                let relay = db.relay(bus.clone()).with_wake(wake.clone());
                platform.shutdown.spawn(relay.run(token.clone()));
            }
            Arc::new(db)
        }
        _ => {
            let Location::Path(path) = database.location() else {
                return Err(io_error("database", "expected a path"));
            };
            let db = SqliteOrders::open(path, topic)
                .await
                .map_err(|e| io_error("database", e))?;
            if settings.relay_enabled {
                let relay = db.relay(bus.clone()).with_wake(wake.clone());
                platform.shutdown.spawn(relay.run(token.clone()));
            }
            Arc::new(db)
        }
    };
    if !settings.relay_enabled {
        tracing::warn!("the outbox relay is off: events wait in the outbox");
    }
    let cart = CartClient::new(&settings.cart_url, settings.cart_client.clone())
        .map_err(|e| io_error("cart client", e))?;
    let state = AppState {
        repo,
        cart,
        verifier,
        relay_wake: wake,
        auto_confirm: settings.auto_confirm,
    };

    let mut readiness = Readiness::new(NAME, platform.shutdown.token());
    readiness.add(
        HealthCheck::on("database", state.repo.clone(), |a| async move {
            a.check().await
        })
        .with_target(database.redacted()),
    );
    readiness.add(bus.readiness_check(&events));

    let follower = state.clone();
    platform.shutdown.spawn(follow(
        bus.clone(),
        settings.prefixed(&settings.deliveries_topic),
        settings.prefixed(&format!("{}-deliveries", settings.consumer_group)),
        "order-deliveries",
        token.clone(),
        move |r| {
            let s = follower.clone();
            async move { s.follow_delivery(r).await }
        },
    ));
    let follower = state.clone();
    platform.shutdown.spawn(follow(
        bus.clone(),
        settings.prefixed(&settings.catalog_topic),
        settings.prefixed(&format!("{}-catalog", settings.consumer_group)),
        "order-stock",
        token.clone(),
        move |r| {
            let s = follower.clone();
            async move { s.follow_catalog(r).await }
        },
    ));
    let creator = bus.clone();
    platform.shutdown.spawn(async move {
        if let Err(e) = creator
            .ensure_topics(&[orders_topic.as_str()], bus::TOPIC_PARTITIONS)
            .await
        {
            tracing::warn!(error = %e, topic = %orders_topic, "could not create the orders topic");
        }
    });

    let service = Service {
        name: NAME,
        router: http::router(state.clone()),
        openapi: http::ApiDoc::openapi(),
        readiness,
    };
    Bound::bind(&settings.listen, service, state).await
}

/// Subscribes `group` to `topic` (creating it when missing) and feeds `handler` until stopped.
async fn follow<F, Fut>(
    bus: Bus,
    topic: String,
    group: String,
    consumer: &'static str,
    stop: CancellationToken,
    handler: F,
) where
    F: FnMut(Received) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let Some(subscription) = bus.follow_topic(&group, &topic, &stop).await else {
        return;
    };
    bus::consume(consumer, subscription, stop, handler).await;
}
