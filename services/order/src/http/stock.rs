//! `GET` and `PUT /v1/stock/{product_id}` (admin).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storefront_kit::auth::{Identity, Role};
use storefront_kit::problem::{ApiError, JsonBody};
use storefront_search::domain::ProductId;
use utoipa::ToSchema;

use crate::domain::MAX_STOCK;
use crate::service::{AppError, AppResult, AppState, name_missing_fields};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/stock/{product_id}", get(get_stock).put(put_stock))
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Stock {
    pub product_id: String,
    /// Units that can still be ordered.
    pub available: i64,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockInput {
    /// 0 ..= 10^9.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub available: i64,
}

fn product_id(raw: &str) -> AppResult<String> {
    ProductId::parse(raw)
        .map(|p| p.as_str().to_string())
        .map_err(|m| AppError::BadField("product_id".into(), m))
}

/// A product's stock (admin only).
#[utoipa::path(get, path = "/v1/stock/{product_id}", tag = "stock", security(("bearer" = [])),
    params(("product_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Product id: 1 to 64 of A-Z, a-z, 0-9, `-` and `_`")),
    responses(
    (status = 200, description = "The stock", body = Stock),
    (status = 400, description = "Invalid product id", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 404, description = "No stock row for the product", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn get_stock(
    identity: Identity,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> AppResult<Json<Stock>> {
    identity.require(Role::Admin)?;
    let id = product_id(&raw)?;
    match state.repo.stock(&id).await? {
        Some(available) => Ok(Json(Stock {
            product_id: id,
            available,
        })),
        None => Err(ApiError::NotFound(format!("No stock for product {id}.")).into()),
    }
}

/// Sets a product's stock (admin only); emits `StockChanged`.
#[utoipa::path(put, path = "/v1/stock/{product_id}", tag = "stock", security(("bearer" = [])),
    params(("product_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Product id: 1 to 64 of A-Z, a-z, 0-9, `-` and `_`")),
    request_body = StockInput, responses(
    (status = 200, description = "The stock as set", body = Stock),
    (status = 400, description = "Invalid product id or malformed JSON", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid `available`", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn put_stock(
    identity: Identity,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Result<JsonBody<StockInput>, ApiError>,
) -> AppResult<Json<Stock>> {
    identity.require(Role::Admin)?;
    let id = product_id(&raw)?;
    let JsonBody(input) = body.map_err(name_missing_fields)?;
    if !(0..=MAX_STOCK).contains(&input.available) {
        return Err(
            ApiError::invalid("available", format!("must be between 0 and {MAX_STOCK}")).into(),
        );
    }
    state.set_stock(&id, input.available).await?;
    tracing::info!(product_id = %id, available = input.available, by = %identity.subject, "stock set");
    Ok(Json(Stock {
        product_id: id,
        available: input.available,
    }))
}
