//! HTTP API of the order service: one router per resource, merged here.

use axum::Router;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Storefront order API",
    description = "Orders, stock reservation and the order status lifecycle."
))]
pub struct ApiDoc;

/// The `/v1` routes.
pub fn router() -> Router {
    Router::new()
}
