//! What the notification service does: turn order and delivery events into messages, send
//! each at most once per event (the sent-log), retry with back-off, and dead-letter what
//! cannot be sent.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use chrono::Utc;
use serde::Serialize;
use storefront_kit::auth::Verifier;
use storefront_kit::bus::{HandlerError, Received};
use storefront_kit::event::Envelope;
use storefront_kit::problem::ApiError;
use tokio::sync::Notify;

use crate::domain::plan::context;
use crate::domain::{OrderSnapshot, Plan, TemplateKind, Templates, plan};
use crate::ports::{
    BackendError, MailError, Mailer, NotificationStore, OutgoingMail, SendStatus, SentEntry,
};

pub type AppResult<T> = Result<T, ApiError>;

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        ApiError::backend(e.unavailable, e)
    }
}

/// The `NotificationFailed` event type and its source.
pub const NOTIFICATION_FAILED: &str = "NotificationFailed";
pub const SOURCE: &str = "notification";

/// `NotificationFailed` data (see the event contract).
#[derive(Clone, Debug, Serialize)]
pub struct NotificationFailed {
    pub event: Envelope,
    pub template: String,
    pub recipient: String,
    pub attempts: u32,
    pub reason: String,
}

/// How messages are sent.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub from: String,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub dlq_topic: String,
    pub unknown_order_grace: Duration,
}

/// Everything a handler or worker needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn NotificationStore>,
    pub mailer: Arc<dyn Mailer>,
    pub templates: Arc<Templates>,
    pub verifier: Verifier,
    pub delivery: Delivery,
    /// Wakes the outbox relay after a dead letter was written.
    pub relay_wake: Arc<Notify>,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// Back-off before attempt `n + 1` (n ≥ 1): base, 2·base, 4·base, ... at most 10 s.
pub fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1 << n.saturating_sub(1).min(10))
        .min(Duration::from_secs(10))
}

struct Failure {
    attempts: u32,
    reason: String,
}

impl AppState {
    /// Handles one `orders.v1` or `deliveries.v1` record.
    pub async fn follow(&self, record: Received) -> Result<(), HandlerError> {
        let envelope: Envelope = Envelope::from_json(&record.payload)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let plan = match plan(&envelope) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(HandlerError::Permanent(format!(
                    "{} {}: {e}",
                    envelope.event_type, envelope.id
                )));
            }
        };
        let transient = |e: BackendError| HandlerError::Transient(e.to_string());
        let Some(kind) = plan.send else {
            if let Some(order) = &plan.remember {
                self.store.remember_order(order).await.map_err(transient)?;
            }
            return Ok(());
        };
        // Remembering the order and looking up the sent-log are independent: one round trip
        // of waiting instead of two before the message goes out.
        let remember = async {
            match &plan.remember {
                Some(order) => self.store.remember_order(order).await,
                None => Ok(()),
            }
        };
        let ((), logged) =
            tokio::try_join!(remember, self.store.logged(envelope.id)).map_err(transient)?;
        if logged.is_some() {
            tracing::debug!(event_id = %envelope.id, "already notified; skipped");
            metrics::counter!("notifications_total", "template" => kind.name(), "outcome" => "duplicate")
                .increment(1);
            return Ok(());
        }
        // An event that carries the whole order (`OrderConfirmed`) is the freshest copy; the
        // others name an order remembered from an earlier event.
        let stored = match &plan.remember {
            Some(order) => Some(order.clone()),
            None => self.store.order(&plan.order_id).await.map_err(transient)?,
        };
        let order = match stored {
            Some(o) => o,
            None => match plan.fallback.clone() {
                Some(o) => o,
                None => {
                    let age = Utc::now().signed_duration_since(envelope.time);
                    if age.to_std().unwrap_or_default() < self.delivery.unknown_order_grace {
                        return Err(HandlerError::Transient(format!(
                            "order {} not known yet",
                            plan.order_id
                        )));
                    }
                    let failure = Failure {
                        attempts: 0,
                        reason: format!("order {} is unknown", plan.order_id),
                    };
                    return self
                        .dead_letter(&envelope, kind, &plan, "", "", failure)
                        .await
                        .map_err(transient);
                }
            },
        };
        self.notify(&envelope, kind, &plan, &order)
            .await
            .map_err(transient)
    }

    async fn notify(
        &self,
        envelope: &Envelope,
        kind: TemplateKind,
        plan: &Plan,
        order: &OrderSnapshot,
    ) -> Result<(), BackendError> {
        let recipient = order.customer.email.clone();
        let rendered = match self.templates.render(kind, &context(order, plan)) {
            Ok(r) => r,
            Err(e) => {
                let failure = Failure {
                    attempts: 0,
                    reason: format!("template {}: {e}", kind.name()),
                };
                return self
                    .dead_letter(envelope, kind, plan, &recipient, "", failure)
                    .await;
            }
        };
        let mail = OutgoingMail {
            from: self.delivery.from.clone(),
            to: if order.customer.name.trim().is_empty() {
                recipient.clone()
            } else {
                format!(
                    "\"{}\" <{recipient}>",
                    order.customer.name.replace(['"', '\\'], "")
                )
            },
            subject: rendered.subject.clone(),
            text: rendered.text,
            html: rendered.html,
            message_id: format!("<{}@storefront>", envelope.id),
        };
        match self.send_with_retries(&mail).await {
            Ok(attempts) => {
                let entry = SentEntry {
                    event_id: envelope.id,
                    event_type: envelope.event_type.clone(),
                    template: kind.name().to_string(),
                    order_id: plan.order_id.clone(),
                    recipient: recipient.clone(),
                    subject: rendered.subject,
                    status: SendStatus::Sent,
                    attempts,
                    error: None,
                    at: Utc::now(),
                };
                self.store.record_sent(&entry).await?;
                tracing::info!(event_id = %envelope.id, template = kind.name(), order_id = %plan.order_id, attempts, "notification sent");
                metrics::counter!("notifications_total", "template" => kind.name(), "outcome" => "sent")
                    .increment(1);
                Ok(())
            }
            Err(failure) => {
                self.dead_letter(envelope, kind, plan, &recipient, &rendered.subject, failure)
                    .await
            }
        }
    }

    async fn send_with_retries(&self, mail: &OutgoingMail) -> Result<u32, Failure> {
        let max = self.delivery.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.mailer.send(mail).await {
                Ok(()) => return Ok(attempt),
                Err(MailError { message, permanent }) => {
                    if permanent || attempt >= max {
                        return Err(Failure {
                            attempts: attempt,
                            reason: message,
                        });
                    }
                    let delay = backoff(self.delivery.retry_base, attempt);
                    tracing::warn!(attempt, error = %message, retry_in = ?delay, "sending failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        envelope: &Envelope,
        kind: TemplateKind,
        plan: &Plan,
        recipient: &str,
        subject: &str,
        failure: Failure,
    ) -> Result<(), BackendError> {
        let entry = SentEntry {
            event_id: envelope.id,
            event_type: envelope.event_type.clone(),
            template: kind.name().to_string(),
            order_id: plan.order_id.clone(),
            recipient: recipient.to_string(),
            subject: subject.to_string(),
            status: SendStatus::Failed,
            attempts: failure.attempts,
            error: Some(failure.reason.clone()),
            at: Utc::now(),
        };
        let data = NotificationFailed {
            event: envelope.clone(),
            template: kind.name().to_string(),
            recipient: recipient.to_string(),
            attempts: failure.attempts,
            reason: failure.reason.clone(),
        };
        let dead = Envelope::new(
            NOTIFICATION_FAILED,
            SOURCE,
            envelope.subject.clone(),
            serde_json::to_value(&data).unwrap_or_default(),
        );
        self.store
            .record_failed(&entry, &self.delivery.dlq_topic, &dead)
            .await?;
        self.relay_wake.notify_one();
        tracing::error!(event_id = %envelope.id, template = kind.name(), attempts = failure.attempts, reason = %failure.reason, "notification failed; dead-lettered");
        metrics::counter!("notifications_total", "template" => kind.name(), "outcome" => "failed")
            .increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff(base, 1), Duration::from_millis(500));
        assert_eq!(backoff(base, 2), Duration::from_secs(1));
        assert_eq!(backoff(base, 3), Duration::from_secs(2));
        assert_eq!(backoff(base, 9), Duration::from_secs(10));
    }
}
