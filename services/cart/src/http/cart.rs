//! `/v1/cart`: the caller's own cart (the JWT subject's). There is no way to name another
//! user's cart, so a user only ever sees and changes their own.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::{Json, Router};
use storefront_kit::auth::Identity;
use storefront_kit::context::RequestContext;
use storefront_kit::problem::{ApiError, JsonBody};

use crate::domain::CartView;
use crate::service::{AddItemInput, AppState, SetQuantityInput, product_param, user_of};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/cart", get(get_cart).delete(clear_cart))
        .route("/v1/cart/items", axum::routing::post(add_item))
        .route(
            "/v1/cart/items/{product}",
            patch(set_quantity).delete(remove_item),
        )
}

/// The caller's cart, priced as the catalog has it now (captured prices when search is down).
#[utoipa::path(get, path = "/v1/cart", tag = "cart", security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart (empty when nothing was added)", body = CartView),
        (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_cart(
    identity: Identity,
    State(state): State<AppState>,
    ctx: RequestContext,
) -> Result<Json<CartView>, ApiError> {
    let user = user_of(&identity)?;
    Ok(Json(state.get(&ctx, user).await?))
}

/// Adds a product (to its line when it is already in the cart).
#[utoipa::path(post, path = "/v1/cart/items", tag = "cart", security(("bearer" = [])),
    request_body = AddItemInput,
    responses(
        (status = 200, description = "The cart after the change", body = CartView),
        (status = 400, description = "Malformed JSON", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, unknown product, other currency, more than 99 or 50 lines (named in `errors`)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The catalog (search) is unavailable", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_item(
    identity: Identity,
    State(state): State<AppState>,
    ctx: RequestContext,
    JsonBody(input): JsonBody<AddItemInput>,
) -> Result<Json<CartView>, ApiError> {
    let user = user_of(&identity)?;
    Ok(Json(state.add(&ctx, user, input).await?))
}

/// Sets the quantity of a product in the cart; 0 removes it.
#[utoipa::path(patch, path = "/v1/cart/items/{product}", tag = "cart", security(("bearer" = [])),
    params(("product" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Product id: 1 to 64 of A-Z, a-z, 0-9, `-` and `_`")),
    request_body = SetQuantityInput,
    responses(
        (status = 200, description = "The cart after the change", body = CartView),
        (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The product is not in the cart", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (named in `errors`)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_quantity(
    identity: Identity,
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(product): Path<String>,
    JsonBody(input): JsonBody<SetQuantityInput>,
) -> Result<Json<CartView>, ApiError> {
    let user = user_of(&identity)?;
    let id = product_param(&product)?;
    Ok(Json(state.set_quantity(&ctx, user, &id, input).await?))
}

/// Removes a product from the cart.
#[utoipa::path(delete, path = "/v1/cart/items/{product}", tag = "cart", security(("bearer" = [])),
    params(("product" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Product id: 1 to 64 of A-Z, a-z, 0-9, `-` and `_`")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "The product is not in the cart", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid product id", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_item(
    identity: Identity,
    State(state): State<AppState>,
    Path(product): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = user_of(&identity)?;
    let id = product_param(&product)?;
    state.remove(user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Empties the cart (the order service calls this after checkout).
#[utoipa::path(delete, path = "/v1/cart", tag = "cart", security(("bearer" = [])),
    responses(
        (status = 204, description = "Emptied"),
        (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn clear_cart(
    identity: Identity,
    State(state): State<AppState>,
) -> Result<StatusCode, ApiError> {
    let user = user_of(&identity)?;
    state.clear(user).await?;
    Ok(StatusCode::NO_CONTENT)
}
