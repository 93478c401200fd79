//! `GET /v1/notifications`: the sent-log, and the file mailbox when mail goes to files.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storefront_kit::auth::{Identity, Role};
use storefront_kit::problem::{ApiError, QueryParams};
use utoipa::{IntoParams, ToSchema};

use crate::ports::{MailboxMessage, SentEntry};
use crate::service::{AppResult, AppState};

const MAX_LIMIT: u32 = 200;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/notifications", get(list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1 ..= 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Notifications {
    /// Sent-log entries, newest first.
    pub items: Vec<SentEntry>,
    /// The messages of the file mailbox, newest first (only when mail goes to `file://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<Vec<MailboxMessage>>,
}

/// Recent notifications (admin).
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Recent notifications", body = Notifications),
        (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameter", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    identity: Identity,
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> AppResult<Json<Notifications>> {
    identity.require(Role::Admin)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_LIMIT}"),
        ));
    }
    let items = state.store.recent(limit).await?;
    let mailbox = state
        .mailer
        .mailbox(limit)
        .await
        .map_err(|e| ApiError::internal(std::io::Error::other(e)))?;
    Ok(Json(Notifications { items, mailbox }))
}
