//! HTTP API of the delivery service: one router per resource, merged here.

use axum::Router;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Storefront delivery API",
    description = "Delivery partners and their assignment to orders."
))]
pub struct ApiDoc;

/// The `/v1` routes.
pub fn router() -> Router {
    Router::new()
}
