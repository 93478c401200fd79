//! The `storefront` binary's library: settings for every service, and running a set of
//! services in one process (`storefront run cart order`, `storefront up`).

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use storefront_kit::server::Platform;
use storefront_kit::shutdown::Shutdown;
use storefront_kit::telemetry::TelemetrySettings;

pub mod demo;
pub mod load;

/// Every service this binary can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ServiceName {
    Gateway,
    Auth,
    Search,
    Cart,
    Order,
    Delivery,
    Notification,
}

impl ServiceName {
    pub const ALL: [ServiceName; 7] = [
        Self::Gateway,
        Self::Auth,
        Self::Search,
        Self::Cart,
        Self::Order,
        Self::Delivery,
        Self::Notification,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => storefront_gateway::NAME,
            Self::Auth => storefront_auth::NAME,
            Self::Search => storefront_search::NAME,
            Self::Cart => storefront_cart::NAME,
            Self::Order => storefront_order::NAME,
            Self::Delivery => storefront_delivery::NAME,
            Self::Notification => storefront_notification::NAME,
        }
    }
}

/// All settings of the binary: defaults, then the settings file, then `STOREFRONT_*`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where embedded backends (SQLite files, the Tantivy index, the mailbox) keep their data.
    pub data_dir: PathBuf,
    /// How long shutdown may take to drain in-flight requests and workers.
    pub drain_timeout_secs: u64,
    /// Seed the demo accounts and delivery partners (`storefront up` turns it on; the demo
    /// catalog is the search service's own `search.seed_demo`).
    pub demo: bool,
    pub telemetry: TelemetrySettings,
    pub gateway: storefront_gateway::Settings,
    pub auth: storefront_auth::Settings,
    pub search: storefront_search::Settings,
    pub cart: storefront_cart::Settings,
    pub order: storefront_order::Settings,
    pub delivery: storefront_delivery::Settings,
    pub notification: storefront_notification::Settings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            drain_timeout_secs: 10,
            demo: false,
            telemetry: TelemetrySettings::default(),
            gateway: Default::default(),
            auth: Default::default(),
            search: Default::default(),
            cart: Default::default(),
            order: Default::default(),
            delivery: Default::default(),
            notification: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{service} failed to start: {source}")]
    Start {
        service: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{service} stopped unexpectedly: {reason}")]
    Exited {
        service: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Drain(#[from] storefront_kit::shutdown::DrainTimeout),
}

/// A service that is bound and ready to run.
struct Bound {
    name: &'static str,
    url: String,
    run: BoxFuture<'static, std::io::Result<()>>,
}

fn start_error(service: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
    move |source| RunError::Start { service, source }
}

fn bound<F>(name: &'static str, port: u16, run: F) -> Bound
where
    F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    Bound {
        name,
        url: format!("http://127.0.0.1:{port}"),
        run: Box::pin(run),
    }
}

macro_rules! bind {
    ($krate:ident, $($build:ident)::+, $settings:expr, $platform:expr) => {{
        let app = $krate::$($build)::+($settings, $platform)
            .await
            .map_err(start_error($krate::NAME))?;
        bound(
            $krate::NAME,
            app.port(),
            app.run_until_stopped($platform.clone()),
        )
    }};
}

/// The order services are bound in: each after the ones it calls, so their real addresses
/// (which may be ephemeral ports) can be handed on.
const BIND_ORDER: [ServiceName; 7] = [
    ServiceName::Auth,
    ServiceName::Search,
    ServiceName::Cart,
    ServiceName::Order,
    ServiceName::Delivery,
    ServiceName::Notification,
    ServiceName::Gateway,
];

/// Points the settings of services not yet bound at a service just bound in this process.
fn wire(settings: &mut Settings, service: ServiceName, url: &str) {
    match service {
        ServiceName::Auth => {
            let jwks = format!("{url}/.well-known/jwks.json");
            settings.gateway.auth.jwks_url.clone_from(&jwks);
            settings.search.auth.jwks_url.clone_from(&jwks);
            settings.cart.auth.jwks_url.clone_from(&jwks);
            settings.order.auth.jwks_url.clone_from(&jwks);
            settings.delivery.auth.jwks_url.clone_from(&jwks);
            settings.notification.auth.jwks_url = jwks;
        }
        ServiceName::Search => settings.cart.search_url = url.to_string(),
        ServiceName::Cart => settings.order.cart_url = url.to_string(),
        _ => {}
    }
    settings
        .gateway
        .upstreams
        .insert(service.as_str().to_string(), url.to_string());
}

async fn bind(
    service: ServiceName,
    settings: &Settings,
    platform: &Platform,
    demo: &mut demo::Seeded,
) -> Result<Bound, RunError> {
    Ok(match service {
        ServiceName::Gateway => bind!(
            storefront_gateway,
            Application::build,
            &settings.gateway,
            platform
        ),
        ServiceName::Auth => {
            let app = storefront_auth::app::build(&settings.auth, platform)
                .await
                .map_err(start_error(storefront_auth::NAME))?;
            if settings.demo {
                demo::accounts(&app, demo)
                    .await
                    .map_err(start_error(storefront_auth::NAME))?;
            }
            bound(
                storefront_auth::NAME,
                app.port(),
                app.run_until_stopped(platform.clone()),
            )
        }
        ServiceName::Search => bind!(storefront_search, app::build, &settings.search, platform),
        ServiceName::Cart => bind!(storefront_cart, app::build, &settings.cart, platform),
        ServiceName::Order => {
            let app = storefront_order::app::build(&settings.order, platform)
                .await
                .map_err(start_error(storefront_order::NAME))?;
            if settings.demo {
                demo::stock(&app, &settings.search, demo)
                    .await
                    .map_err(start_error(storefront_order::NAME))?;
            }
            bound(
                storefront_order::NAME,
                app.port(),
                app.run_until_stopped(platform.clone()),
            )
        }
        ServiceName::Delivery => {
            let app = storefront_delivery::app::build(&settings.delivery, platform)
                .await
                .map_err(start_error(storefront_delivery::NAME))?;
            if settings.demo {
                demo::partners(&app, demo)
                    .await
                    .map_err(start_error(storefront_delivery::NAME))?;
            }
            bound(
                storefront_delivery::NAME,
                app.port(),
                app.run_until_stopped(platform.clone()),
            )
        }
        ServiceName::Notification => {
            bind!(
                storefront_notification,
                app::build,
                &settings.notification,
                platform
            )
        }
    })
}

/// Runs `services` until a signal (or `shutdown.trigger()`), then drains within the deadline.
/// If one service stops on its own, the others are stopped too and its reason is returned.
pub async fn run(
    services: &[ServiceName],
    settings: &Settings,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    // The metrics recorder before any service is built: a gauge set while building (or by a
    // task the build spawns) before it was installed would be lost.
    storefront_kit::metrics::handle();
    let platform = Platform {
        data_dir: settings.data_dir.clone(),
        shutdown: shutdown.clone(),
        memory_bus: storefront_kit::bus::MemoryBus::new(),
    };
    let mut settings = settings.clone();
    let mut demo = demo::Seeded::default();
    let mut bound = Vec::new();
    for service in BIND_ORDER.into_iter().filter(|s| services.contains(s)) {
        let b = bind(service, &settings, &platform, &mut demo).await?;
        wire(&mut settings, service, &b.url);
        bound.push(b);
    }
    let shop_url = bound
        .iter()
        .find(|b| b.name == storefront_gateway::NAME)
        .map(|b| b.url.clone());
    let (exited_tx, mut exited_rx) = tokio::sync::mpsc::unbounded_channel();
    for b in bound {
        println!("storefront: {} listening on {}", b.name, b.url);
        let tx = exited_tx.clone();
        let token = shutdown.token();
        let name = b.name;
        let run = b.run;
        shutdown.spawn(async move {
            let outcome = run.await;
            if !token.is_cancelled() {
                let reason = match outcome {
                    Ok(()) => "server returned".to_string(),
                    Err(e) => e.to_string(),
                };
                let _ = tx.send((name, reason));
            }
        });
    }
    drop(exited_tx);
    if settings.demo {
        demo.print(shop_url.as_deref());
    }
    let token = shutdown.token();
    let failure = tokio::select! {
        () = token.cancelled() => None,
        Some((service, reason)) = exited_rx.recv() => {
            tracing::error!(service, reason, "service stopped unexpectedly; stopping the others");
            shutdown.trigger();
            Some(RunError::Exited { service, reason })
        }
    };
    let started = std::time::Instant::now();
    shutdown.drained().await?;
    println!(
        "storefront: stopped in {} ms",
        started.elapsed().as_millis()
    );
    failure.map_or(Ok(()), Err)
}

/// The shutdown coordinator for these settings.
pub fn shutdown_for(settings: &Settings) -> Shutdown {
    Shutdown::new(Duration::from_secs(settings.drain_timeout_secs))
}
