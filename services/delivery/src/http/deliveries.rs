//! `/v1/deliveries/{order_id}`: an order's delivery, for its customer or an admin.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use storefront_kit::auth::{Identity, Role};
use storefront_kit::problem::ApiError;

use crate::domain::Delivery;
use crate::service::{AppResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/deliveries/{order_id}", get(get_delivery))
}

/// The delivery of an order: its owner or an admin; anyone else gets 404.
#[utoipa::path(get, path = "/v1/deliveries/{order_id}", tag = "deliveries", security(("bearer" = [])),
    params(("order_id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The delivery", body = Delivery),
        (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such delivery (or not yours)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_delivery(
    identity: Identity,
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> AppResult<Json<Delivery>> {
    let delivery = state
        .repo
        .delivery(&order_id)
        .await?
        .filter(|d| identity.has(Role::Admin) || d.user_id == identity.subject)
        .ok_or_else(|| ApiError::NotFound("No such delivery.".into()))?;
    Ok(Json(delivery))
}
