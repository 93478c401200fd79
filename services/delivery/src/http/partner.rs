//! `/v1/partner/...`: what a partner does for themself (availability, their deliveries).

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storefront_kit::auth::{Identity, Role};
use storefront_kit::problem::{ApiError, JsonBody};
use utoipa::ToSchema;

use crate::domain::{Delivery, Partner, Transition};
use crate::service::{AppResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partner", get(me))
        .route("/v1/partner/availability", put(set_availability))
        .route("/v1/partner/deliveries", get(my_deliveries))
        .route(
            "/v1/partner/deliveries/{order_id}/picked-up",
            post(picked_up),
        )
        .route(
            "/v1/partner/deliveries/{order_id}/out-for-delivery",
            post(out_for_delivery),
        )
        .route(
            "/v1/partner/deliveries/{order_id}/delivered",
            post(delivered),
        )
}

/// `PUT /v1/partner/availability` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    pub on_shift: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<Delivery>,
}

/// The caller's partner profile: 403 without the partner role, 404 without a profile.
async fn my_profile(state: &AppState, identity: &Identity) -> AppResult<Partner> {
    identity.require(Role::Partner)?;
    state
        .repo
        .partner_by_account(&identity.subject)
        .await?
        .ok_or_else(|| ApiError::NotFound("This account has no partner profile.".into()))
}

/// The caller's partner profile.
#[utoipa::path(get, path = "/v1/partner", tag = "partner", security(("bearer" = [])),
    responses(
        (status = 200, description = "My profile", body = Partner),
        (status = 403, description = "Not a partner", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No partner profile", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(identity: Identity, State(state): State<AppState>) -> AppResult<Json<Partner>> {
    Ok(Json(my_profile(&state, &identity).await?))
}

/// Goes on or off shift. Coming on shift offers the pending orders at once.
#[utoipa::path(put, path = "/v1/partner/availability", tag = "partner", security(("bearer" = [])),
    request_body = Availability,
    responses(
        (status = 200, description = "My profile", body = Partner),
        (status = 403, description = "Not a partner", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No partner profile", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_availability(
    identity: Identity,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Availability>,
) -> AppResult<Json<Partner>> {
    identity.require(Role::Partner)?;
    let partner = state
        .repo
        .set_on_shift(&identity.subject, body.on_shift)
        .await?
        .ok_or_else(|| ApiError::NotFound("This account has no partner profile.".into()))?;
    tracing::info!(partner_id = %partner.id, on_shift = body.on_shift, "availability changed");
    if body.on_shift {
        state.retry_wake.notify_one();
    }
    Ok(Json(partner))
}

/// The caller's deliveries, newest first (at most 200).
#[utoipa::path(get, path = "/v1/partner/deliveries", tag = "partner", security(("bearer" = [])),
    responses(
        (status = 200, description = "My deliveries", body = DeliveryList),
        (status = 403, description = "Not a partner", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No partner profile", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn my_deliveries(
    identity: Identity,
    State(state): State<AppState>,
) -> AppResult<Json<DeliveryList>> {
    let me = my_profile(&state, &identity).await?;
    let items = state.repo.partner_deliveries(&me.id, 200).await?;
    Ok(Json(DeliveryList { items }))
}

async fn step(
    state: &AppState,
    identity: &Identity,
    order_id: &str,
    step: Transition,
) -> AppResult<Json<Delivery>> {
    let me = my_profile(state, identity).await?;
    let delivery = state.repo.advance(&me.id, order_id, step).await?;
    tracing::info!(%order_id, partner_id = %me.id, status = delivery.status.as_str(), "delivery advanced");
    state.relay_wake.notify_one();
    if step == Transition::Delivered {
        state.retry_wake.notify_one();
    }
    Ok(Json(delivery))
}

/// Marks my delivery picked up (from PARTNER_ASSIGNED).
#[utoipa::path(post, path = "/v1/partner/deliveries/{order_id}/picked-up", tag = "partner", security(("bearer" = [])),
    params(("order_id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The delivery", body = Delivery),
        (status = 404, description = "Not my delivery", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed from the current state", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn picked_up(
    identity: Identity,
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> AppResult<Json<Delivery>> {
    step(&state, &identity, &order_id, Transition::PickedUp).await
}

/// Marks my delivery out for delivery (from PICKED_UP).
#[utoipa::path(post, path = "/v1/partner/deliveries/{order_id}/out-for-delivery", tag = "partner", security(("bearer" = [])),
    params(("order_id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The delivery", body = Delivery),
        (status = 404, description = "Not my delivery", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed from the current state", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn out_for_delivery(
    identity: Identity,
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> AppResult<Json<Delivery>> {
    step(&state, &identity, &order_id, Transition::OutForDelivery).await
}

/// Marks my delivery delivered (from OUT_FOR_DELIVERY); frees my slot.
#[utoipa::path(post, path = "/v1/partner/deliveries/{order_id}/delivered", tag = "partner", security(("bearer" = [])),
    params(("order_id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The delivery", body = Delivery),
        (status = 404, description = "Not my delivery", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed from the current state", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delivered(
    identity: Identity,
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> AppResult<Json<Delivery>> {
    step(&state, &identity, &order_id, Transition::Delivered).await
}
