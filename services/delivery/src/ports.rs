//! Traits the delivery domain needs from the outside world: the partner and delivery store
//! (MySQL or SQLite), which writes every `deliveries.v1` event to its transactional outbox in
//! the same transaction as the change.

use std::sync::Arc;

use futures::future::BoxFuture;
use storefront_kit::bus::Bus;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::event::ConfirmedOrder;
use crate::domain::{Delivery, DeliveryStatus, Partner, PartnerContact, Transition};

/// A backend failure; adapters keep the cause for the logs.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub message: String,
    /// A deadlock or busy database: the same call may succeed when repeated.
    pub retryable: bool,
    /// The backend could not be reached (no connection in time, refused, broken): callers
    /// get 503, not 500.
    pub unavailable: bool,
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Why a partner was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the account already has a partner profile")]
    AccountTaken,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a partner's step was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdvanceError {
    /// No such delivery, or it belongs to another partner.
    #[error("no such delivery")]
    NotFound,
    #[error("illegal step from {0:?}")]
    Illegal(DeliveryStatus),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What an `OrderConfirmed` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confirmed {
    /// The event was processed before.
    Duplicate,
    /// The order already has a delivery (another event for it came first).
    Known,
    Assigned(PartnerContact),
    /// No partner can take it now; it waits for one.
    Pending,
}

/// What an `OrderCancelled` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancelled {
    Duplicate,
    /// The delivery is cancelled; `freed` names the partner whose slot it gave back.
    Cancelled {
        freed: Option<String>,
    },
}

/// The partners, the deliveries and the outbox.
pub trait DeliveryRepo: Send + Sync {
    /// A protocol-level health check.
    fn check(&self) -> BoxFuture<'_, Result<()>>;

    fn create_partner<'a>(&'a self, partner: &'a Partner)
    -> BoxFuture<'a, Result<(), CreateError>>;

    fn partner<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Partner>>>;

    fn partner_by_account<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Partner>>>;

    /// Partners by id, after `after`, at most `limit`.
    fn partners<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Partner>>>;

    /// Stores every field of `partner` but its load; false when it does not exist.
    fn update_partner<'a>(&'a self, partner: &'a Partner) -> BoxFuture<'a, Result<bool>>;

    /// Sets the availability of the account's partner; the partner, if there is one.
    fn set_on_shift<'a>(
        &'a self,
        account_id: &'a str,
        on_shift: bool,
    ) -> BoxFuture<'a, Result<Option<Partner>>>;

    /// Creates the order's delivery and assigns the best partner, atomically with the dedupe
    /// row of `event_id` and the `PartnerAssigned` or `AssignmentPending` event.
    fn order_confirmed<'a>(
        &'a self,
        event_id: Uuid,
        order: &'a ConfirmedOrder,
    ) -> BoxFuture<'a, Result<Confirmed>>;

    /// Cancels the order's delivery and frees its partner's slot, with the dedupe row.
    fn order_cancelled<'a>(
        &'a self,
        event_id: Uuid,
        order_id: &'a str,
        user_id: &'a str,
        reason: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Cancelled>>;

    /// Tries to assign up to `limit` pending deliveries, oldest first; how many got a partner.
    fn assign_pending(&self, limit: u32) -> BoxFuture<'_, Result<u32>>;

    fn delivery<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<Option<Delivery>>>;

    /// The partner's deliveries, newest first, at most `limit`.
    fn partner_deliveries<'a>(
        &'a self,
        partner_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Delivery>>>;

    /// Moves the partner's delivery one step on, with its event; a delivered order frees the
    /// partner's slot.
    fn advance<'a>(
        &'a self,
        partner_id: &'a str,
        order_id: &'a str,
        step: Transition,
    ) -> BoxFuture<'a, Result<Delivery, AdvanceError>>;

    /// The outbox relay of this database: publishes to `bus` until `stop`, at once when
    /// `wake` is notified.
    fn relay(&self, bus: Bus, wake: Arc<Notify>, stop: CancellationToken)
    -> BoxFuture<'static, ()>;
}
