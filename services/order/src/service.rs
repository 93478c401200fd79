//! What the handlers and workers do: placing orders (idempotently), status changes, stock,
//! and following `deliveries.v1` and `catalog.v1`.

use std::sync::Arc;

use axum::extract::FromRef;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sha2::{Digest as _, Sha256};
use storefront_cart::client::CartClient;
use storefront_cart::domain::CartView;
use storefront_kit::auth::Verifier;
use storefront_kit::bus::{HandlerError, Received};
use storefront_kit::client::ClientError;
use storefront_kit::context::RequestContext;
use storefront_kit::event::Envelope;
use storefront_kit::problem::{ApiError, FieldError, problem_response};
use tokio::sync::Notify;

use crate::domain::events::{self, DeliveryData, ProductUpserted};
use crate::domain::{Actor, Currency, Customer, Money, Order, OrderLine, OrderStatus, Shipping};
use crate::ports::{
    BackendError, IdempotencyRecord, OrderRepo, PlaceError, StatusChange, Transition,
};

/// Everything the handlers and workers share.
#[derive(Clone)]
pub struct AppState {
    pub repo: Arc<dyn OrderRepo>,
    pub cart: CartClient,
    pub verifier: Verifier,
    /// Wakes the outbox relay after a commit.
    pub relay_wake: Arc<Notify>,
    pub auto_confirm: bool,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// Handler errors: a kit [`ApiError`], or a 400 naming a header or parameter, or a replayed
/// response.
#[derive(Debug)]
pub enum AppError {
    Api(ApiError),
    /// 400 with `errors: [{field, message}]` (a header or a query parameter).
    BadField(String, String),
    /// 409 naming the products that are short.
    OutOfStock(Vec<String>),
}

impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<BackendError> for AppError {
    fn from(e: BackendError) -> Self {
        Self::Api(ApiError::backend(e.unavailable, e))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::BadField(field, message) => {
                let mut p = ApiError::BadRequest(format!("Invalid {field}: {message}.")).problem();
                p.errors = vec![FieldError::new(field, message)];
                metrics::counter!("api_errors_total", "kind" => "bad_request").increment(1);
                problem_response(&p)
            }
            Self::OutOfStock(products) => {
                let mut p =
                    ApiError::Conflict(format!("Not enough stock for: {}.", products.join(", ")))
                        .problem();
                p.problem_type = "https://storefront.dev/problems/out-of-stock".into();
                p.errors = products
                    .iter()
                    .map(|id| FieldError::new("product_id", id.clone()))
                    .collect();
                metrics::counter!("api_errors_total", "kind" => "conflict").increment(1);
                problem_response(&p)
            }
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// Sharpens a JSON body error: serde names a missing field's parent (`shipping`, or `body` at
/// the root); the problem should name the field itself (`shipping.city`).
pub fn name_missing_fields(e: ApiError) -> ApiError {
    match e {
        ApiError::Validation(errors) => ApiError::Validation(
            errors
                .into_iter()
                .map(|mut fe| {
                    if let Some(name) = fe
                        .message
                        .strip_prefix("missing field `")
                        .and_then(|r| r.split('`').next())
                    {
                        fe.field = if fe.field == "body" {
                            name.to_string()
                        } else {
                            format!("{}.{name}", fe.field)
                        };
                    }
                    fe
                })
                .collect(),
        ),
        other => other,
    }
}

/// The answer to a placement: status and JSON body, stored for replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

/// SHA-256 (hex) of a request body, as the idempotency record keeps it.
pub fn body_hash(body: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

fn cart_error(e: ClientError) -> AppError {
    match e.status().map(|s| s.as_u16()) {
        Some(401) => AppError::Api(ApiError::Unauthorized("Authentication required.".into())),
        _ => {
            tracing::warn!(error = %e, "cart service unavailable");
            AppError::Api(ApiError::Unavailable(
                "The cart service is not reachable; try again.".into(),
            ))
        }
    }
}

/// How long a placement whose cart could not be read waits for the lookup of its key.
const REPLAY_LOOKUP_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The order's lines and currency from the cart, which must be non-empty and in one currency.
fn lines_of(cart: CartView) -> AppResult<(Vec<OrderLine>, Currency)> {
    if cart.items.is_empty() {
        return Err(ApiError::invalid("cart", "the cart is empty").into());
    }
    let currency = cart.items[0].unit_price.currency.clone();
    if cart.items.iter().any(|l| l.unit_price.currency != currency) {
        return Err(
            ApiError::invalid("cart", "the cart mixes currencies; one order has one").into(),
        );
    }
    let lines = cart
        .items
        .iter()
        .map(|l| OrderLine {
            product_id: l.product_id.as_str().to_string(),
            sku: l.sku.as_str().to_string(),
            title: l.title.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price.clone(),
            line_total: Money {
                minor: l.unit_price.minor * i64::from(l.quantity),
                currency: currency.clone(),
            },
        })
        .collect();
    Ok((lines, currency))
}

fn replay(record: IdempotencyRecord, hash: &str) -> AppResult<Placed> {
    if record.request_hash == hash {
        Ok(Placed {
            status: record.status,
            body: record.response,
            replayed: true,
        })
    } else {
        Err(ApiError::invalid(
            "Idempotency-Key",
            "was already used with a different request body",
        )
        .into())
    }
}

impl AppState {
    /// Places the caller's cart as an order; replays the first answer for a repeated key.
    pub async fn place(
        &self,
        ctx: &RequestContext,
        user_id: &str,
        key: &str,
        hash: &str,
        customer: Customer,
        shipping: Shipping,
    ) -> AppResult<Placed> {
        // The common case is a first request: read the cart and place, with the key's row
        // written in the placing transaction. A key seen before is looked up only when that
        // insert finds it taken, or when the cart cannot be placed: a retry after the order
        // emptied the cart, or while the cart service is down, still gets its replay.
        let cart = match self.cart.get(ctx).await {
            Ok(cart) => {
                let version = cart.version;
                lines_of(cart).map(|(lines, currency)| (lines, currency, version))
            }
            Err(e) => {
                let e = cart_error(e);
                // The lookup waits only briefly here: when the database the cart and the
                // orders share is down, the answer must not wait out two timeouts in a row.
                let lookup =
                    tokio::time::timeout(REPLAY_LOOKUP_WAIT, self.repo.idempotency(user_id, key));
                return match lookup.await {
                    Ok(Ok(Some(record))) => replay(record, hash),
                    _ => Err(e),
                };
            }
        };
        let (lines, currency, cart_version) = match cart {
            Ok(placeable) => placeable,
            Err(e) => {
                return match self.repo.idempotency(user_id, key).await? {
                    Some(record) => replay(record, hash),
                    None => Err(e),
                };
            }
        };
        let order = new_order(
            user_id,
            customer,
            shipping,
            lines,
            currency,
            self.auto_confirm,
        );
        // The cart service takes the order out of the cart when this event reaches it.
        let mut emitted = vec![events::order_placed(&order, cart_version).caused_by(ctx)];
        if self.auto_confirm {
            emitted.push(events::order_confirmed(&order).caused_by(ctx));
        }
        let body = serde_json::to_string(&order).map_err(ApiError::internal)?;
        let record = IdempotencyRecord {
            user_id: user_id.to_string(),
            key: key.to_string(),
            request_hash: hash.to_string(),
            status: 201,
            response: body.clone(),
        };
        let started = std::time::Instant::now();
        match self.repo.place(&order, &record, &emitted).await {
            Ok(()) => {}
            Err(PlaceError::OutOfStock(products)) => {
                metrics::counter!("orders_placed_total", "result" => "out_of_stock").increment(1);
                return Err(AppError::OutOfStock(products));
            }
            Err(PlaceError::KeyTaken) => {
                // A concurrent request with the same key won: answer like a retry.
                return match self.repo.idempotency(user_id, key).await? {
                    Some(record) => replay(record, hash),
                    None => Err(ApiError::Conflict(
                        "A request with this Idempotency-Key is in progress; retry.".into(),
                    )
                    .into()),
                };
            }
            Err(PlaceError::Backend(e)) => return Err(e.into()),
        }
        metrics::histogram!("order_place_tx_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("orders_placed_total", "result" => "placed").increment(1);
        self.relay_wake.notify_one();
        tracing::info!(order_id = %order.id, items = order.item_count, "order placed");
        Ok(Placed {
            status: 201,
            body,
            replayed: false,
        })
    }

    /// The order when `user` may see it (owner or admin); `None` otherwise.
    pub async fn visible_order(
        &self,
        id: &str,
        user: &str,
        admin: bool,
    ) -> AppResult<Option<Order>> {
        let order = self.repo.order(id).await?;
        Ok(order.filter(|o| admin || o.user_id == user))
    }

    /// Applies a status change; 404 when missing (or not the caller's), 409 when illegal.
    pub async fn change(&self, change: StatusChange) -> AppResult<Order> {
        match self.repo.change_status(&change).await? {
            Transition::Applied(o) => {
                self.relay_wake.notify_one();
                tracing::info!(order_id = %o.id, status = o.status.as_str(), actor = ?change.actor, "order status changed");
                Ok(o)
            }
            Transition::Noop(o) | Transition::Illegal(o) => Err(ApiError::Conflict(format!(
                "The order is {}; it cannot become {}.",
                o.status.as_str(),
                change.to.as_str()
            ))
            .into()),
            Transition::NotFound | Transition::Duplicate => {
                Err(ApiError::NotFound(format!("No order {}.", change.order_id)).into())
            }
        }
    }

    pub async fn set_stock(&self, product_id: &str, available: i64) -> AppResult<()> {
        self.repo.set_stock(product_id, available).await?;
        self.relay_wake.notify_one();
        Ok(())
    }

    /// Follows one `deliveries.v1` record: moves the order's status (idempotent).
    pub async fn follow_delivery(&self, record: Received) -> Result<(), HandlerError> {
        let envelope: Envelope = Envelope::from_json(&record.payload)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let Some(to) = events::delivery_target(&envelope.event_type) else {
            return Ok(());
        };
        let data: DeliveryData = serde_json::from_value(envelope.data.clone())
            .map_err(|e| HandlerError::Permanent(format!("{}: {e}", envelope.event_type)))?;
        let change = StatusChange {
            order_id: data.order_id,
            to,
            actor: Actor::Delivery,
            lenient: true,
            partner: data.partner,
            reason: None,
            owner: None,
            event_id: Some(envelope.id),
        };
        match self.repo.change_status(&change).await {
            Ok(Transition::Applied(o)) => {
                self.relay_wake.notify_one();
                tracing::info!(order_id = %o.id, status = o.status.as_str(), "delivery moved the order");
                Ok(())
            }
            Ok(Transition::Illegal(o)) => {
                tracing::warn!(order_id = %o.id, status = o.status.as_str(), event = %envelope.event_type, "delivery event does not apply to the order's status; skipped");
                Ok(())
            }
            Ok(Transition::NotFound) => {
                tracing::warn!(order_id = %change.order_id, "delivery event for an unknown order; skipped");
                Ok(())
            }
            Ok(Transition::Noop(_) | Transition::Duplicate) => Ok(()),
            Err(e) => Err(HandlerError::Transient(e.to_string())),
        }
    }

    /// Follows one `catalog.v1` record: a new product gets its stock row (idempotent).
    pub async fn follow_catalog(&self, record: Received) -> Result<(), HandlerError> {
        let envelope: Envelope = Envelope::from_json(&record.payload)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if envelope.event_type != events::PRODUCT_UPSERTED {
            return Ok(());
        }
        let product: ProductUpserted = serde_json::from_value(envelope.data.clone())
            .map_err(|e| HandlerError::Permanent(format!("ProductUpserted: {e}")))?;
        let initial = i64::from(product.stock_hint.unwrap_or(0));
        match self
            .repo
            .init_stock(envelope.id, &product.id, initial)
            .await
        {
            Ok(created) => {
                if created {
                    self.relay_wake.notify_one();
                    tracing::info!(product_id = %product.id, initial, "stock initialised");
                }
                Ok(())
            }
            Err(e) => Err(HandlerError::Transient(e.to_string())),
        }
    }
}

/// A new order (UUIDv7 id) for the cart's lines.
pub fn new_order(
    user_id: &str,
    customer: Customer,
    shipping: Shipping,
    lines: Vec<OrderLine>,
    currency: Currency,
    confirmed: bool,
) -> Order {
    // Millisecond precision, as stored: the answer and later reads agree.
    let now =
        chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let total = lines.iter().map(|l| l.line_total.minor).sum();
    let item_count = lines.iter().map(|l| l.quantity).sum();
    Order {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.to_string(),
        status: if confirmed {
            OrderStatus::Confirmed
        } else {
            OrderStatus::Placed
        },
        customer,
        shipping,
        lines,
        item_count,
        total: Money {
            minor: total,
            currency,
        },
        partner: None,
        placed_at: now,
        updated_at: now,
    }
}
