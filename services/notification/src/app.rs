//! Builds and runs the notification service.

use storefront_kit::health::{HealthCheck, Readiness};
use storefront_kit::server::{HttpServer, Platform, Service};
use utoipa::OpenApi;

use crate::http;
use crate::settings::Settings;

/// The service's name in logs, metrics and `/readyz`.
pub const NAME: &str = "notification";

/// The notification service, bound and ready to run.
pub struct Application {
    server: HttpServer,
}

impl Application {
    /// Connects the backends and binds the listener (so [`Application::port`] is known).
    pub async fn build(settings: &Settings, platform: &Platform) -> std::io::Result<Self> {
        let mut readiness = Readiness::new(NAME, platform.shutdown.token());
        for (name, url) in settings.backends(&platform.data_dir) {
            readiness.add(HealthCheck::reachable(name, &url));
        }
        let service = Service {
            name: NAME,
            router: http::router(),
            openapi: http::ApiDoc::openapi(),
            readiness,
        };
        let server = HttpServer::bind(&settings.listen, service).await?;
        Ok(Self { server })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Serves until shutdown begins, then drains in-flight requests.
    pub async fn run_until_stopped(self, platform: Platform) -> std::io::Result<()> {
        self.server.run(platform.shutdown.token()).await
    }
}
