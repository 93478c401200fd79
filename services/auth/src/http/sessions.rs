//! `POST /v1/sessions` (login), `POST /v1/sessions/refresh` (rotate), `DELETE /v1/sessions`
//! (logout).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storefront_kit::problem::{ApiError, JsonBody, Problem};
use utoipa::ToSchema;

use super::required;
use crate::domain::{Email, MAX_PASSWORD_CHARS};
use crate::service::{AppState, Tokens};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", post(login).delete(logout))
        .route("/v1/sessions/refresh", post(refresh))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub email: Option<String>,
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshToken {
    #[serde(default)]
    #[schema(value_type = String, required = true)]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// EdDSA JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; spent by `/v1/sessions/refresh`, which returns a new one.
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

impl From<Tokens> for TokenResponse {
    fn from(t: Tokens) -> Self {
        Self {
            access_token: t.access_token,
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
            refresh_token: t.refresh_token,
            refresh_expires_in: t.refresh_expires_in,
        }
    }
}

/// Logs in. Failures answer the same whether the account exists or not; repeated failures
/// per account and per client IP are locked out with growing back-off (429, `Retry-After`).
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = Login,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Login>,
) -> Result<Json<TokenResponse>, ApiError> {
    let mut errors = Vec::new();
    let email = required(&body.email, "email", &mut errors)
        .and_then(|e| Email::parse(e).map_err(|f| errors.push(f)).ok());
    let password = required(&body.password, "password", &mut errors);
    if password.is_some_and(|p| p.chars().count() > MAX_PASSWORD_CHARS) {
        errors.push(storefront_kit::problem::FieldError::new(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let (Some(email), Some(password), true) = (email, password, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let tokens = state.login(email, password.to_string(), peer.ip()).await?;
    Ok(Json(tokens.into()))
}

fn refresh_token(body: &RefreshToken) -> Result<&str, ApiError> {
    match body.refresh_token.as_deref() {
        Some(t) if !t.is_empty() && t.len() <= 512 => Ok(t),
        Some(t) if !t.is_empty() => Err(ApiError::invalid("refresh_token", "is too long")),
        _ => Err(ApiError::invalid("refresh_token", "is required")),
    }
}

/// Spends a refresh token for a new access and refresh token. Presenting a spent refresh
/// token revokes every token of its family.
#[utoipa::path(post, path = "/v1/sessions/refresh", tag = "sessions", request_body = RefreshToken,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshToken>,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = refresh_token(&body)?;
    Ok(Json(state.refresh(token).await?.into()))
}

/// Logs out: revokes the refresh token's family.
#[utoipa::path(delete, path = "/v1/sessions", tag = "sessions", request_body = RefreshToken,
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshToken>,
) -> Result<StatusCode, ApiError> {
    let token = refresh_token(&body)?;
    state.logout(token).await?;
    Ok(StatusCode::NO_CONTENT)
}
