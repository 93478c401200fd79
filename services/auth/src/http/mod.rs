//! HTTP API of the auth service: one router per resource, merged here.

use axum::Router;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "Storefront auth API",
    description = "Accounts, JWT issuing and JWKS."
))]
pub struct ApiDoc;

/// The `/v1` routes.
pub fn router() -> Router {
    Router::new()
}
