//! Builds and runs the delivery service: opens the database named by the settings, spawns
//! the outbox relay, the `orders.v1` follower and the pending-assignment worker as tracked
//! workers, and serves the API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use storefront_kit::auth::Verifier;
use storefront_kit::backend::Location;
use storefront_kit::bus::{self, Bus};
use storefront_kit::health::{HealthCheck, Readiness};
use storefront_kit::server::{Bound, Platform, Service, startup_error};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::adapters::mysql::MysqlDeliveries;
use crate::adapters::sqlite::SqliteDeliveries;
use crate::http;
use crate::ports::DeliveryRepo;
use crate::service::AppState;
use crate::settings::Settings;

/// The service's name in logs, metrics and `/readyz`.
pub const NAME: &str = "delivery";

/// The delivery service, bound and ready to run.
pub type Application = Bound<AppState>;

fn io_error(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    startup_error(NAME, what, e)
}

/// The database named by the settings, migrated.
pub async fn repo(settings: &Settings, data_dir: &Path) -> std::io::Result<Arc<dyn DeliveryRepo>> {
    let url = settings.database(data_dir);
    let topic = settings.deliveries_topic.as_str();
    Ok(match url.scheme() {
        "mysql" => Arc::new(
            MysqlDeliveries::connect(url.expose(), topic)
                .await
                .map_err(|e| io_error("database", e))?,
        ),
        _ => {
            let Location::Path(path) = url.location() else {
                return Err(io_error("database", "expected a sqlite:// file path"));
            };
            Arc::new(
                SqliteDeliveries::open(path, topic)
                    .await
                    .map_err(|e| io_error("database", e))?,
            )
        }
    })
}

/// Connects the backends and binds the listener (so [`Bound::port`] is known).
pub async fn build(settings: &Settings, platform: &Platform) -> std::io::Result<Application> {
    build_with(settings, platform, Verifier::from_settings(&settings.auth)).await
}

/// [`build`] with a given token verifier.
pub async fn build_with(
    settings: &Settings,
    platform: &Platform,
    verifier: Verifier,
) -> std::io::Result<Application> {
    let settings = &settings.prefixed();
    let data_dir = &platform.data_dir;
    let state = AppState::new(repo(settings, data_dir).await?, verifier);
    let events = settings.events(data_dir);
    let bus =
        Bus::connect(&events, NAME, &platform.memory_bus).map_err(|e| io_error("events", e))?;

    let mut readiness = Readiness::new(NAME, platform.shutdown.token());
    readiness.add(
        HealthCheck::on("database", state.repo.clone(), |a| async move {
            a.check().await
        })
        .with_target(settings.database(data_dir).redacted()),
    );
    readiness.add(bus.readiness_check(&events));

    let token = platform.shutdown.token();
    platform.shutdown.spawn(
        state
            .repo
            .relay(bus.clone(), state.relay_wake.clone(), token.clone()),
    );
    platform
        .shutdown
        .spawn(follow(state.clone(), bus, settings.clone(), token.clone()));
    platform.shutdown.spawn(state.clone().assign_pending_loop(
        Duration::from_secs(settings.retry_interval_secs.max(1)),
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

/// Follows `orders.v1` until shutdown.
async fn follow(state: AppState, bus: Bus, settings: Settings, stop: CancellationToken) {
    let topics = [
        settings.orders_topic.as_str(),
        settings.deliveries_topic.as_str(),
    ];
    if let Err(e) = bus.ensure_topics(&topics, bus::TOPIC_PARTITIONS).await {
        tracing::warn!(error = %e, "could not create the order and delivery topics");
    }
    let orders = [settings.orders_topic.as_str()];
    let Some(subscription) = bus
        .subscribe_until(&settings.consumer_group, &orders, &stop)
        .await
    else {
        return;
    };
    bus::consume("delivery-orders", subscription, stop, |record| {
        let state = state.clone();
        async move { state.follow(record).await }
    })
    .await;
}
