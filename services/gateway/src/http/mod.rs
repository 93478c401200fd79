//! HTTP API of the gateway service: one router per resource, merged here.

use axum::Router;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Storefront gateway API",
    description = "Routing, JWT verification, rate limits and load balancing in front of every service."
))]
pub struct ApiDoc;

/// The `/v1` routes.
pub fn router() -> Router {
    Router::new()
}
