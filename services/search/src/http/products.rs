//! `/v1/products`: read for everyone, create/update/delete for admins.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use storefront_kit::auth::{Identity, Role};
use storefront_kit::context::RequestContext;
use storefront_kit::problem::{ApiError, JsonBody, QueryParams};

use crate::domain::{Product, ProductId, ProductInput, ProductList, ProductsParams};
use crate::service::{AppResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/products", get(list_products).post(create_product))
        .route(
            "/v1/products/{id}",
            get(get_product).put(update_product).delete(delete_product),
        )
}

fn product_id(raw: &str) -> Result<ProductId, ApiError> {
    ProductId::parse(raw).map_err(|m| ApiError::invalid("id", m))
}

/// `If-Match` as the version it names (`"3"`, `W/"3"`, `3`, or a product's full `ETag`,
/// whose stock part is not compared: a write never changes the stock); `*` or absent is
/// `None`.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value
        .to_str()
        .map_err(|_| ApiError::invalid("If-Match", "must be an entity tag such as \"3\""))?
        .trim();
    if raw == "*" {
        return Ok(None);
    }
    Product::version_of_tag(raw)
        .map(Some)
        .ok_or_else(|| ApiError::invalid("If-Match", "must be an entity tag such as \"3\""))
}

fn with_etag(status: StatusCode, product: Product) -> Response {
    let etag = HeaderValue::from_str(&product.etag()).ok();
    let location = HeaderValue::from_str(&format!("/v1/products/{}", product.id)).ok();
    let mut response = (status, Json(product)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED
        && let Some(location) = location
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// One product, with an `ETag` that changes with its version and its reported stock;
/// `If-None-Match` naming the current one is 304.
#[utoipa::path(get, path = "/v1/products/{id}", tag = "products",
    params(
        ("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Product id: 1 to 64 of A-Z, a-z, 0-9, `-` and `_`"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag seen before: 304 while it is still the product's"),
    ),
    responses(
        (status = 200, description = "The product", body = Product, headers(("ETag" = String, description = "The version and the last stock report, e.g. \"3\" or \"3.5.1764367342123456\""))),
        (status = 304, description = "Unchanged since the ETag in If-None-Match", headers(("ETag" = String, description = "The current ETag"))),
        (status = 404, description = "No such product", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let id = product_id(&id)?;
    let product = state.product(&id).await?;
    let etag = product.etag();
    if storefront_kit::server::none_match(&headers, &etag)
        && let Ok(value) = HeaderValue::from_str(&etag)
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, value)]).into_response());
    }
    Ok(with_etag(StatusCode::OK, product))
}

/// Several products by id in one call (a cart's lines): those that exist, in the order asked;
/// an id with no product is left out.
#[utoipa::path(get, path = "/v1/products", tag = "products", params(ProductsParams),
    responses(
        (status = 200, description = "The products found", body = ProductList),
        (status = 422, description = "`ids` missing, malformed or more than 100", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_products(
    State(state): State<AppState>,
    QueryParams(params): QueryParams<ProductsParams>,
) -> AppResult<Json<ProductList>> {
    let ids = params.validate().map_err(ApiError::Validation)?;
    Ok(Json(ProductList {
        items: state.products(&ids).await?,
    }))
}

/// Creates a product (admin). Its `ProductUpserted` event is published through the outbox.
#[utoipa::path(post, path = "/v1/products", tag = "products", security(("bearer" = [])),
    request_body = ProductInput,
    responses(
        (status = 201, description = "Created", body = Product),
        (status = 400, description = "Malformed JSON", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another product has this SKU (the problem names the field `sku`)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (named in `errors`)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_product(
    identity: Identity,
    State(state): State<AppState>,
    ctx: RequestContext,
    JsonBody(input): JsonBody<ProductInput>,
) -> AppResult<Response> {
    identity.require(Role::Admin)?;
    let product = state.create(&ctx, input).await?;
    Ok(with_etag(StatusCode::CREATED, product))
}

/// Replaces a product (admin). Needs the version being replaced: `If-Match: "<version>"`
/// (412 on mismatch) or `version` in the body (409 on mismatch).
#[utoipa::path(put, path = "/v1/products/{id}", tag = "products", security(("bearer" = [])),
    params(
        ("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Product id: 1 to 64 of A-Z, a-z, 0-9, `-` and `_`"),
        ("If-Match" = Option<String>, Header, description = "The version being replaced, e.g. \"3\", or the product's ETag (its stock part is not compared)"),
    ),
    request_body = ProductInput,
    responses(
        (status = 200, description = "Replaced", body = Product),
        (status = 404, description = "No such product", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Body version is not the current one, or another product has the SKU (the problem then names the field `sku`)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match is not the current version", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_product(
    identity: Identity,
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ProductInput>,
) -> AppResult<Response> {
    identity.require(Role::Admin)?;
    let id = product_id(&id)?;
    let expected = if_match(&headers)?;
    let product = state.update(&ctx, &id, input, expected).await?;
    Ok(with_etag(StatusCode::OK, product))
}

/// Deletes a product (admin); `If-Match` makes it conditional (412 on mismatch).
#[utoipa::path(delete, path = "/v1/products/{id}", tag = "products", security(("bearer" = [])),
    params(
        ("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Product id: 1 to 64 of A-Z, a-z, 0-9, `-` and `_`"),
        ("If-Match" = Option<String>, Header, description = "The version being deleted"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such product", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match is not the current version", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_product(
    identity: Identity,
    State(state): State<AppState>,
    ctx: RequestContext,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<StatusCode> {
    identity.require(Role::Admin)?;
    let id = product_id(&id)?;
    let expected = if_match(&headers)?;
    state.delete(&ctx, &id, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}
