//! Traits the order domain needs from the outside world.

use futures::future::BoxFuture;
use storefront_kit::event::Envelope;
use uuid::Uuid;

use crate::domain::{Actor, Order, OrderStatus, Partner};

/// A backend failed (opaque to callers; logged).
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub message: String,
    /// The backend could not be reached (no connection in time, refused, broken): callers
    /// get 503, not 500.
    pub unavailable: bool,
}

impl BackendError {
    pub fn new(backend: &'static str, e: impl std::fmt::Display + 'static) -> Self {
        Self {
            backend,
            message: e.to_string(),
            unavailable: storefront_kit::sql::is_unavailable_any(&e),
        }
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// The stored first answer to an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub user_id: String,
    pub key: String,
    /// SHA-256 (hex) of the request body.
    pub request_hash: String,
    pub status: u16,
    pub response: String,
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// These products have too little (or no) stock.
    #[error("out of stock: {0:?}")]
    OutOfStock(Vec<String>),
    /// Another request with the same idempotency key got there first.
    #[error("idempotency key already used")]
    KeyTaken,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What a status change did.
#[derive(Debug)]
pub enum Transition {
    /// Changed; the order as it is now.
    Applied(Order),
    /// The order already had (or passed) that status: nothing done.
    Noop(Order),
    /// Not allowed from the order's current status.
    Illegal(Order),
    NotFound,
    /// The event was processed before (consumer dedupe).
    Duplicate,
}

/// A status change request.
#[derive(Clone, Debug)]
pub struct StatusChange {
    pub order_id: String,
    pub to: OrderStatus,
    pub actor: Actor,
    /// Follower of events: an already-reached status is a no-op, not an error.
    pub lenient: bool,
    pub partner: Option<Partner>,
    pub reason: Option<String>,
    /// Only apply when the caller owns the order (customers cancelling); `None` for admins.
    pub owner: Option<String>,
    /// The id of the event that caused it, for consumer dedupe.
    pub event_id: Option<Uuid>,
}

/// Orders, stock and the outbox, in one SQL database.
pub trait OrderRepo: Send + Sync {
    fn check(&self) -> BoxFuture<'_, Result<()>>;

    fn idempotency<'a>(
        &'a self,
        user_id: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<IdempotencyRecord>>>;

    /// In ONE transaction: reserves every line's stock (all or nothing), stores the order, its
    /// lines and `idem`, and enqueues `events` plus one `StockChanged` per product.
    fn place<'a>(
        &'a self,
        order: &'a Order,
        idem: &'a IdempotencyRecord,
        events: &'a [Envelope],
    ) -> BoxFuture<'a, Result<(), PlaceError>>;

    fn order<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Order>>>;

    /// The user's orders, newest first, older than the order `before` when given.
    fn orders_of<'a>(
        &'a self,
        user_id: &'a str,
        before: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Order>>>;

    /// Applies a status change with its event (and, for a cancellation, the stock release
    /// with its `StockChanged` events) in one transaction.
    fn change_status<'a>(&'a self, change: &'a StatusChange) -> BoxFuture<'a, Result<Transition>>;

    fn stock<'a>(&'a self, product_id: &'a str) -> BoxFuture<'a, Result<Option<i64>>>;

    /// Sets a product's stock (creating the row) and enqueues `StockChanged`.
    fn set_stock<'a>(&'a self, product_id: &'a str, available: i64) -> BoxFuture<'a, Result<()>>;

    /// Creates the stock row when missing (a new product), deduped on `event_id`; whether a
    /// row was created.
    fn init_stock<'a>(
        &'a self,
        event_id: Uuid,
        product_id: &'a str,
        available: i64,
    ) -> BoxFuture<'a, Result<bool>>;
}
