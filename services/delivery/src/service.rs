//! What the delivery service does over its ports: follow `orders.v1`, keep assigning pending
//! deliveries, and the state the HTTP handlers share.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use storefront_kit::auth::Verifier;
use storefront_kit::bus::{HandlerError, Received};
use storefront_kit::event::Envelope;
use storefront_kit::problem::ApiError;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::event::OrderEvent;
use crate::ports::{AdvanceError, BackendError, Cancelled, Confirmed, CreateError, DeliveryRepo};

/// Pending deliveries tried per round.
const PENDING_BATCH: u32 = 200;

pub type AppResult<T> = Result<T, ApiError>;

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        ApiError::backend(e.unavailable, e)
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::AccountTaken => {
                ApiError::Conflict("This account already has a partner profile.".into())
            }
            CreateError::Backend(e) => e.into(),
        }
    }
}

impl From<AdvanceError> for ApiError {
    fn from(e: AdvanceError) -> Self {
        match e {
            AdvanceError::NotFound => ApiError::NotFound("No such delivery.".into()),
            AdvanceError::Illegal(status) => ApiError::Conflict(format!(
                "The delivery is {}; this step is not allowed now.",
                status.as_str()
            )),
            AdvanceError::Backend(e) => e.into(),
        }
    }
}

/// Everything a handler or worker needs.
#[derive(Clone)]
pub struct AppState {
    pub repo: Arc<dyn DeliveryRepo>,
    pub verifier: Verifier,
    /// Wakes the outbox relay after a commit that wrote events.
    pub relay_wake: Arc<Notify>,
    /// Wakes the pending-assignment worker (a partner came on shift or freed a slot).
    pub retry_wake: Arc<Notify>,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl AppState {
    pub fn new(repo: Arc<dyn DeliveryRepo>, verifier: Verifier) -> Self {
        Self {
            repo,
            verifier,
            relay_wake: Arc::new(Notify::new()),
            retry_wake: Arc::new(Notify::new()),
        }
    }

    /// Handles one `orders.v1` record: unknown types are skipped, malformed ones rejected,
    /// backend failures retried.
    pub async fn follow(&self, record: Received) -> Result<(), HandlerError> {
        let envelope: Envelope = Envelope::from_json(&record.payload)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let event = match OrderEvent::from_envelope(&envelope) {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(HandlerError::Permanent(format!(
                    "{} {}: {e}",
                    envelope.event_type, envelope.id
                )));
            }
        };
        let transient = |e: BackendError| HandlerError::Transient(e.to_string());
        match event {
            OrderEvent::Confirmed(order) => {
                let outcome = self
                    .repo
                    .order_confirmed(envelope.id, &order)
                    .await
                    .map_err(transient)?;
                match &outcome {
                    Confirmed::Assigned(p) => {
                        tracing::info!(order_id = %order.order_id, partner_id = %p.id, "partner assigned");
                        metrics::counter!("delivery_assignments_total", "outcome" => "assigned")
                            .increment(1);
                    }
                    Confirmed::Pending => {
                        tracing::info!(order_id = %order.order_id, "no partner available; pending");
                        metrics::counter!("delivery_assignments_total", "outcome" => "pending")
                            .increment(1);
                    }
                    Confirmed::Duplicate | Confirmed::Known => {
                        tracing::debug!(order_id = %order.order_id, ?outcome, "confirmation skipped");
                    }
                }
                self.relay_wake.notify_one();
            }
            OrderEvent::Cancelled(c) => {
                let outcome = self
                    .repo
                    .order_cancelled(envelope.id, &c.order_id, &c.user_id, c.reason.as_deref())
                    .await
                    .map_err(transient)?;
                if let Cancelled::Cancelled {
                    freed: Some(partner_id),
                } = &outcome
                {
                    tracing::info!(order_id = %c.order_id, %partner_id, "cancelled; slot freed");
                    self.retry_wake.notify_one();
                }
            }
        }
        Ok(())
    }

    /// Assigns pending deliveries every `interval`, and at once when woken, until `stop`.
    pub async fn assign_pending_loop(self, interval: Duration, stop: CancellationToken) {
        loop {
            match self.repo.assign_pending(PENDING_BATCH).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(assigned = n, "pending deliveries assigned");
                    metrics::counter!("delivery_assignments_total", "outcome" => "assigned_later")
                        .increment(u64::from(n));
                    self.relay_wake.notify_one();
                }
                Err(e) => tracing::warn!(error = %e, "assigning pending deliveries failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.retry_wake.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
