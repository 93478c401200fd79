//! `POST /v1/accounts` (sign-up), `GET /v1/me`, `POST /v1/accounts/{id}/roles` (admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storefront_kit::auth::{Identity, Role};
use storefront_kit::problem::{ApiError, JsonBody, Problem};
use utoipa::ToSchema;

use super::required;
use crate::domain::{Account, Email, Name, NewPassword, parse_role};
use crate::service::{AppState, Error};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts", post(sign_up))
        .route("/v1/accounts/{id}/roles", post(grant_roles))
        .route("/v1/me", get(me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// E-mail address (case-insensitive, unique), at most 254 bytes.
    #[serde(default)]
    #[schema(value_type = String, required = true, pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f@]+@[^\s\x00-\x1f\x7f-\x9f@.]([^\s\x00-\x1f\x7f-\x9f@]*[^\s\x00-\x1f\x7f-\x9f@.])?\s*$")]
    pub email: Option<String>,
    /// 12 to 256 characters.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 12, max_length = 256)]
    pub password: Option<String>,
    /// Display name, 1 to 100 characters (surrounding spaces trimmed), no control characters.
    #[serde(default)]
    #[schema(value_type = String, required = true, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<Role>,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        Self {
            id: a.id,
            email: a.email,
            name: a.name,
            roles: a.roles,
        }
    }
}

/// Creates a customer account.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = SignUp,
    responses(
        (status = 201, body = AccountView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The e-mail address is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sign_up(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SignUp>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let mut errors = Vec::new();
    let email = required(&body.email, "email", &mut errors)
        .and_then(|e| Email::parse(e).map_err(|f| errors.push(f)).ok());
    let password = required(&body.password, "password", &mut errors)
        .and_then(|p| NewPassword::parse(p).map_err(|f| errors.push(f)).ok());
    let name = required(&body.name, "name", &mut errors)
        .and_then(|n| Name::parse(n).map_err(|f| errors.push(f)).ok());
    let (Some(email), Some(password), Some(name)) = (email, password, name) else {
        return Err(ApiError::Validation(errors));
    };
    let account = state
        .sign_up(email, password, name, &[Role::Customer])
        .await?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

/// The caller's account.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 200, body = AccountView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Json<AccountView>, ApiError> {
    match state.account(&identity.subject).await {
        Ok(account) => Ok(Json(account.into())),
        Err(Error::NoAccount) => Err(ApiError::Unauthorized("Invalid or expired token.".into())),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRoles {
    /// Roles to add: `customer`, `admin`, `partner`.
    #[serde(default)]
    #[schema(value_type = Vec<storefront_kit::auth::Role>, required = true, min_items = 1)]
    pub roles: Option<Vec<String>>,
}

/// Grants roles to an account (admin only).
#[utoipa::path(post, path = "/v1/accounts/{id}/roles", tag = "accounts", request_body = GrantRoles,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, body = AccountView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn grant_roles(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<GrantRoles>,
) -> Result<Json<AccountView>, ApiError> {
    identity.require(Role::Admin)?;
    let raw = match body.roles {
        Some(r) if !r.is_empty() => r,
        _ => return Err(ApiError::invalid("roles", "is required: one or more roles")),
    };
    let mut roles = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        match parse_role(r) {
            Some(role) => roles.push(role),
            None => {
                return Err(ApiError::invalid(
                    format!("roles[{i}]"),
                    "must be one of customer, admin, partner",
                ));
            }
        }
    }
    Ok(Json(state.grant(&id, &roles).await?.into()))
}
