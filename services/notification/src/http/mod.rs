//! HTTP API of the notification service: one router per resource, merged here.

pub mod notifications;

use axum::Router;
use storefront_kit::problem::{FieldError, Problem};

use crate::ports::{MailboxMessage, SendStatus, SentEntry};
use crate::service::AppState;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Storefront notification API",
        description = "Order and delivery emails."
    ),
    paths(notifications::list),
    components(schemas(
        SentEntry, SendStatus, MailboxMessage, notifications::Notifications, Problem, FieldError,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The `/v1` routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(notifications::router())
        .with_state(state)
}
