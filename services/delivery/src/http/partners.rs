//! `/v1/partners`: partner management for admins.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use storefront_kit::auth::{Identity, Role};
use storefront_kit::problem::{ApiError, JsonBody, QueryParams};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{NewPartner, Partner, PartnerPatch};
use crate::service::{AppResult, AppState};

const MAX_PAGE: u32 = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/partners", post(create_partner).get(list_partners))
        .route("/v1/partners/{id}", get(get_partner).patch(patch_partner))
}

/// One page of partners, by id.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PartnerPage {
    pub items: Vec<Partner>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The last id of the previous page.
    pub after: Option<String>,
    /// 1 ..= 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Creates a partner (admin).
#[utoipa::path(post, path = "/v1/partners", tag = "partners", security(("bearer" = [])),
    request_body = NewPartner,
    responses(
        (status = 201, description = "Created", body = Partner),
        (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account already has a partner profile", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (named in `errors`)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_partner(
    identity: Identity,
    State(state): State<AppState>,
    JsonBody(input): JsonBody<NewPartner>,
) -> AppResult<(StatusCode, Json<Partner>)> {
    identity.require(Role::Admin)?;
    let partner = input
        .into_partner(Utc::now())
        .map_err(ApiError::Validation)?;
    state.repo.create_partner(&partner).await?;
    tracing::info!(partner_id = %partner.id, by = %identity.subject, "partner created");
    if partner.on_shift {
        state.retry_wake.notify_one();
    }
    Ok((StatusCode::CREATED, Json(partner)))
}

/// Lists partners by id (admin).
#[utoipa::path(get, path = "/v1/partners", tag = "partners", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of partners", body = PartnerPage),
        (status = 403, description = "Not an admin", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameter", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_partners(
    identity: Identity,
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> AppResult<Json<PartnerPage>> {
    identity.require(Role::Admin)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    let items = state.repo.partners(query.after.as_deref(), limit).await?;
    let next_after = (items.len() == limit as usize)
        .then(|| items.last().map(|p| p.id.clone()))
        .flatten();
    Ok(Json(PartnerPage { items, next_after }))
}

async fn find(state: &AppState, id: &str) -> AppResult<Partner> {
    state
        .repo
        .partner(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("No such partner.".into()))
}

/// One partner (admin).
#[utoipa::path(get, path = "/v1/partners/{id}", tag = "partners", security(("bearer" = [])),
    params(("id" = String, Path, description = "Partner id")),
    responses(
        (status = 200, description = "The partner", body = Partner),
        (status = 404, description = "No such partner", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_partner(
    identity: Identity,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AppResult<Json<Partner>> {
    identity.require(Role::Admin)?;
    Ok(Json(find(&state, &id).await?))
}

/// Changes a partner's details, area, capacity or availability (admin).
#[utoipa::path(patch, path = "/v1/partners/{id}", tag = "partners", security(("bearer" = [])),
    params(("id" = String, Path, description = "Partner id")),
    request_body = PartnerPatch,
    responses(
        (status = 200, description = "The changed partner", body = Partner),
        (status = 404, description = "No such partner", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (named in `errors`)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn patch_partner(
    identity: Identity,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<PartnerPatch>,
) -> AppResult<Json<Partner>> {
    identity.require(Role::Admin)?;
    let current = find(&state, &id).await?;
    let next = patch
        .apply(&current, Utc::now())
        .map_err(ApiError::Validation)?;
    if !state.repo.update_partner(&next).await? {
        return Err(ApiError::NotFound("No such partner.".into()));
    }
    // A wider area, more capacity or a shift start may let pending orders through.
    state.retry_wake.notify_one();
    Ok(Json(find(&state, &id).await?))
}
