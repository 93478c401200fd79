//! HTTP API of the auth service: one router per resource, merged here.

use axum::Router;
use storefront_kit::problem::{FieldError, Problem};

use crate::service::AppState;

pub mod accounts;
pub mod jwks;
pub mod sessions;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Storefront auth API",
        description = "Accounts, sessions (EdDSA JWT access tokens, rotating refresh tokens) \
                       and the JWKS other services verify tokens with."
    ),
    paths(
        accounts::sign_up,
        accounts::me,
        accounts::grant_roles,
        sessions::login,
        sessions::refresh,
        sessions::logout,
        jwks::jwks,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The `/v1` routes and the JWKS.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(accounts::router())
        .merge(sessions::router())
        .merge(jwks::router())
        .with_state(state)
}

/// `Some(s)` or a "required" field error.
pub(crate) fn required<'a>(
    value: &'a Option<String>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Some(v),
        _ => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
    }
}
