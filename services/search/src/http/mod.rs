//! HTTP API of the search service: one router per resource, merged here.

use axum::Router;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Storefront search API",
    description = "Product catalog, full-text search and suggestions."
))]
pub struct ApiDoc;

/// The `/v1` routes.
pub fn router() -> Router {
    Router::new()
}
