//! `/v1/orders`: place (idempotent), list, read, cancel, and the admin status change.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storefront_kit::auth::{Identity, Role};
use storefront_kit::context::RequestContext;
use storefront_kit::problem::{ApiError, JsonBody, QueryParams, parse_json};
use utoipa::ToSchema;

use crate::domain::{Actor, Order, OrderStatus, PlaceOrderInput, cursor, parse_idempotency_key};
use crate::ports::StatusChange;
use crate::service::{AppError, AppResult, AppState, body_hash, name_missing_fields};

/// Orders per page: default and cap.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(place_order).get(list_orders))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/cancel", post(cancel_order))
        .route("/v1/orders/{id}/status", post(set_status))
}

/// A page of the caller's orders, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<Order>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusInput {
    /// The new status, e.g. `PICKED_UP`.
    #[schema(value_type = OrderStatus)]
    pub status: String,
}

#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelInput {
    /// Why, at most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Places the caller's cart as an order.
///
/// `Idempotency-Key` is required: the same key with the same body answers the first response
/// again (`Idempotent-Replayed: true`); with another body, 422.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "Unique per intended order: 1 to 255 visible ASCII characters")),
    request_body = PlaceOrderInput, responses(
    (status = 201, description = "Placed", body = Order),
    (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 409, description = "Out of stock (the products are named)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid fields, empty cart, or key reused with another body", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn place_order(
    identity: Identity,
    ctx: RequestContext,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody<serde_json::Value>, ApiError>,
) -> AppResult<Response> {
    let raw_key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{1}"));
    let key = parse_idempotency_key(raw_key)
        .map_err(|m| AppError::BadField("Idempotency-Key".into(), m.into()))?;
    let JsonBody(value) = body?;
    let input: PlaceOrderInput =
        parse_json(value.to_string().as_bytes()).map_err(name_missing_fields)?;
    let (customer, shipping) = input.validate().map_err(ApiError::Validation)?;
    let hash = body_hash(&value);
    let placed = state
        .place(&ctx, &identity.subject, &key, &hash, customer, shipping)
        .await?;
    let status = StatusCode::from_u16(placed.status).unwrap_or(StatusCode::CREATED);
    let id = serde_json::from_str::<serde_json::Value>(&placed.body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned));
    let mut response = json_response(status, placed.body);
    if let Some(id) = id
        && let Ok(v) = HeaderValue::from_str(&format!("/v1/orders/{id}"))
    {
        response.headers_mut().insert(header::LOCATION, v);
    }
    if placed.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The caller's orders, newest first (`?limit=1..100&cursor=`).
#[utoipa::path(get, path = "/v1/orders", tag = "orders", security(("bearer" = [])),
    params(
        ("limit" = Option<i64>, Query, minimum = 1.0, maximum = 4294967295.0, description = "1 or more, default 20; more than 100 is taken as 100"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ), responses(
    (status = 200, description = "A page", body = OrderPage),
    (status = 400, description = "Bad `limit` or `cursor`", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn list_orders(
    identity: Identity,
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> AppResult<Json<OrderPage>> {
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => {
                return Err(AppError::BadField(
                    "limit".into(),
                    format!(
                        "must be a whole number, at least 1 (more than {MAX_LIMIT} is taken as {MAX_LIMIT})"
                    ),
                ));
            }
        },
    };
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(cursor::decode(raw).ok_or_else(|| {
            AppError::BadField("cursor".into(), "is not a cursor this API gave out".into())
        })?),
    };
    let mut items = state
        .repo
        .orders_of(&identity.subject, before.as_deref(), limit + 1)
        .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|o| cursor::encode(&o.id))
    } else {
        None
    };
    Ok(Json(OrderPage { items, next_cursor }))
}

fn not_found(id: &str) -> AppError {
    AppError::Api(ApiError::NotFound(format!("No order {id}.")))
}

fn order_id(raw: &str) -> AppResult<String> {
    // Ids are UUIDs; anything else names no order.
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| not_found(raw))
}

/// One order: the caller's own, or any for an admin; 404 otherwise.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", security(("bearer" = [])), responses(
    (status = 200, description = "The order", body = Order),
    (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such order of the caller", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn get_order(
    identity: Identity,
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> AppResult<Json<Order>> {
    let id = order_id(&raw)?;
    state
        .visible_order(&id, &identity.subject, identity.has(Role::Admin))
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

/// Cancels an order (its owner, or an admin) and releases its stock; 409 once it is picked up.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])), request_body(content = Option<CancelInput>), responses(
    (status = 200, description = "Cancelled", body = Order),
    (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such order of the caller", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 409, description = "Too late to cancel", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 422, description = "Invalid `reason`", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn cancel_order(
    identity: Identity,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Bytes,
) -> AppResult<Json<Order>> {
    let id = order_id(&raw)?;
    // No body, or `null`, is a cancellation without a reason.
    let input: CancelInput = if body.iter().all(u8::is_ascii_whitespace) {
        CancelInput::default()
    } else {
        parse_json::<Option<CancelInput>>(&body)
            .map_err(name_missing_fields)?
            .unwrap_or_default()
    };
    let reason = input
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::invalid("reason", "must be at most 500 characters").into());
    }
    let admin = identity.has(Role::Admin);
    let order = state
        .change(StatusChange {
            order_id: id,
            to: OrderStatus::Cancelled,
            actor: if admin { Actor::Admin } else { Actor::Customer },
            lenient: false,
            partner: None,
            reason,
            owner: (!admin).then(|| identity.subject.clone()),
            event_id: None,
        })
        .await?;
    Ok(Json(order))
}

/// Moves an order to `status` (admin only); 409 when the status machine does not allow it.
#[utoipa::path(post, path = "/v1/orders/{id}/status", tag = "orders", security(("bearer" = [])), request_body = StatusInput, responses(
    (status = 200, description = "Changed", body = Order),
    (status = 401, description = "No valid token", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 404, description = "No such order", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 409, description = "Illegal transition", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
    (status = 422, description = "Unknown status", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn set_status(
    identity: Identity,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Result<JsonBody<StatusInput>, ApiError>,
) -> AppResult<Json<Order>> {
    identity.require(Role::Admin)?;
    let id = order_id(&raw)?;
    let JsonBody(input) = body.map_err(name_missing_fields)?;
    let to = OrderStatus::parse(input.status.trim()).ok_or_else(|| {
        ApiError::invalid(
            "status",
            format!(
                "must be one of {}",
                OrderStatus::ALL.map(OrderStatus::as_str).join(", ")
            ),
        )
    })?;
    let order = state
        .change(StatusChange {
            order_id: id,
            to,
            actor: Actor::Admin,
            lenient: false,
            partner: None,
            reason: None,
            owner: None,
            event_id: None,
        })
        .await?;
    Ok(Json(order))
}
