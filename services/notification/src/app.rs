//! Builds and runs the notification service: opens the store and the mailer named by the
//! settings, compiles the templates, spawns the outbox relay and one follower per topic
//! (`orders.v1`, `deliveries.v1`) as tracked workers, and serves the API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use storefront_kit::auth::Verifier;
use storefront_kit::backend::Location;
use storefront_kit::bus::{self, Bus};
use storefront_kit::health::{HealthCheck, Readiness};
use storefront_kit::server::{Bound, Platform, Service, startup_error};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::adapters::file::FileMailer;
use crate::adapters::mysql::MysqlStore;
use crate::adapters::smtp::SmtpMailer;
use crate::adapters::sqlite::SqliteStore;
use crate::domain::Templates;
use crate::http;
use crate::ports::{Mailer, NotificationStore};
use crate::service::{AppState, Delivery};
use crate::settings::Settings;

/// The service's name in logs, metrics and `/readyz`.
pub const NAME: &str = "notification";

/// The notification service, bound and ready to run.
pub type Application = Bound<AppState>;

fn io_error(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    startup_error(NAME, what, e)
}

/// The store named by the settings, migrated.
pub async fn store(
    settings: &Settings,
    data_dir: &Path,
) -> std::io::Result<Arc<dyn NotificationStore>> {
    let url = settings.database(data_dir);
    Ok(match url.scheme() {
        "mysql" => Arc::new(
            MysqlStore::connect(url.expose())
                .await
                .map_err(|e| io_error("database", e))?,
        ),
        _ => {
            let Location::Path(path) = url.location() else {
                return Err(io_error("database", "expected a sqlite:// file path"));
            };
            Arc::new(
                SqliteStore::open(path)
                    .await
                    .map_err(|e| io_error("database", e))?,
            )
        }
    })
}

/// The mailer named by the settings.
pub fn mailer(settings: &Settings, data_dir: &Path) -> std::io::Result<Arc<dyn Mailer>> {
    let url = settings.mail(data_dir);
    Ok(match url.scheme() {
        "smtp" | "smtps" => Arc::new(
            SmtpMailer::new(
                url.expose(),
                Duration::from_secs(settings.smtp_timeout_secs.max(1)),
                settings.smtp_pool_size,
            )
            .map_err(|e| io_error("mail", e))?,
        ),
        _ => {
            let Location::Path(dir) = url.location() else {
                return Err(io_error("mail", "expected a file:// directory"));
            };
            Arc::new(FileMailer::open(dir).map_err(|e| io_error("mail", e))?)
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
    let templates =
        Templates::load(settings.templates_dir.as_deref()).map_err(|e| io_error("templates", e))?;
    let state = AppState {
        store: store(settings, data_dir).await?,
        mailer: mailer(settings, data_dir)?,
        templates: Arc::new(templates),
        verifier,
        delivery: Delivery {
            from: settings.from.clone(),
            max_attempts: settings.max_attempts.max(1),
            retry_base: Duration::from_millis(settings.retry_base_ms),
            dlq_topic: settings.dlq_topic.clone(),
            unknown_order_grace: Duration::from_secs(settings.unknown_order_grace_secs),
        },
        relay_wake: Arc::new(Notify::new()),
    };
    let events = settings.events(data_dir);
    let bus =
        Bus::connect(&events, NAME, &platform.memory_bus).map_err(|e| io_error("events", e))?;

    let mut readiness = Readiness::new(NAME, platform.shutdown.token());
    readiness.add(
        HealthCheck::on("database", state.store.clone(), |a| async move {
            a.check().await
        })
        .with_target(settings.database(data_dir).redacted()),
    );
    readiness.add(bus.readiness_check(&events));
    readiness.add(
        HealthCheck::on(
            "mail",
            state.mailer.clone(),
            |a| async move { a.check().await },
        )
        .with_target(settings.mail(data_dir).redacted()),
    );

    let token = platform.shutdown.token();
    platform.shutdown.spawn(state.store.relay(
        bus.clone(),
        state.relay_wake.clone(),
        token.clone(),
    ));
    if let Err(e) = bus
        .ensure_topics(
            &[
                settings.orders_topic.as_str(),
                settings.deliveries_topic.as_str(),
                settings.dlq_topic.as_str(),
            ],
            bus::TOPIC_PARTITIONS,
        )
        .await
    {
        tracing::warn!(error = %e, "could not create the notification topics");
    }
    // Several consumers of one group split a Kafka topic's partitions between them; the
    // in-process bus has no partitions, so it gets one.
    let consumers = match &bus {
        Bus::Kafka(_) => settings.consumers_per_topic.max(1),
        Bus::Memory(_) => 1,
    };
    for (consumer, topic) in [
        ("notification-orders", settings.orders_topic.clone()),
        ("notification-deliveries", settings.deliveries_topic.clone()),
    ] {
        let group = format!(
            "{}-{}",
            settings.consumer_group,
            consumer.trim_start_matches("notification-")
        );
        for _ in 0..consumers {
            platform.shutdown.spawn(follow(
                consumer,
                state.clone(),
                bus.clone(),
                group.clone(),
                topic.clone(),
                token.clone(),
            ));
        }
    }

    let service = Service {
        name: NAME,
        router: http::router(state.clone()),
        openapi: http::ApiDoc::openapi(),
        readiness,
    };
    Bound::bind(&settings.listen, service, state).await
}

/// Follows one topic until shutdown.
async fn follow(
    consumer: &'static str,
    state: AppState,
    bus: Bus,
    group: String,
    topic: String,
    stop: CancellationToken,
) {
    let Some(subscription) = bus.subscribe_until(&group, &[topic.as_str()], &stop).await else {
        return;
    };
    bus::consume(consumer, subscription, stop, |record| {
        let state = state.clone();
        async move { state.follow(record).await }
    })
    .await;
}
