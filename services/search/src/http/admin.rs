//! `POST /v1/admin/reindex`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storefront_kit::auth::{Identity, Role};
use utoipa::ToSchema;

use crate::service::{AppResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/admin/reindex", post(reindex))
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Reindexed {
    /// Products in the new index.
    pub indexed: u64,
}

/// Rebuilds the index from the catalog and swaps it in without downtime (admin only).
#[utoipa::path(post, path = "/v1/admin/reindex", tag = "admin", security(("bearer" = [])), responses(
    (status = 200, description = "The new index is live", body = Reindexed),
    (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn reindex(
    identity: Identity,
    State(state): State<AppState>,
) -> AppResult<Json<Reindexed>> {
    identity.require(Role::Admin)?;
    let indexed = state.reindex().await?;
    tracing::info!(indexed, by = %identity.subject, "reindexed");
    Ok(Json(Reindexed { indexed }))
}
