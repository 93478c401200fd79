//! Traits the notification domain needs from the outside world: the store (sent-log, the
//! orders it writes about, the outbox of the dead-letter topic) and the mailer.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use storefront_kit::bus::Bus;
use storefront_kit::event::Envelope;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::OrderSnapshot;

/// A backend failure; adapters keep the cause for the logs.
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

/// Whether a message went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SendStatus {
    Sent,
    /// Given up; the event is on the dead-letter topic.
    Failed,
}

impl SendStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

/// One entry of the sent-log, keyed by the event that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SentEntry {
    pub event_id: Uuid,
    pub event_type: String,
    pub template: String,
    pub order_id: String,
    pub recipient: String,
    pub subject: String,
    pub status: SendStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// The sent-log, the orders, and the outbox of `notifications.dlq.v1`.
pub trait NotificationStore: Send + Sync {
    fn check(&self) -> BoxFuture<'_, Result<()>>;

    /// Keeps (or replaces) what is known of an order.
    fn remember_order<'a>(&'a self, order: &'a OrderSnapshot) -> BoxFuture<'a, Result<()>>;

    fn order<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<Option<OrderSnapshot>>>;

    /// The sent-log entry of an event, if it was handled before.
    fn logged(&self, event_id: Uuid) -> BoxFuture<'_, Result<Option<SentEntry>>>;

    /// Logs a sent message (a second entry for the same event is ignored).
    fn record_sent<'a>(&'a self, entry: &'a SentEntry) -> BoxFuture<'a, Result<()>>;

    /// Logs a failed message and writes `dead_letter` to the outbox for `topic`, in one
    /// transaction.
    fn record_failed<'a>(
        &'a self,
        entry: &'a SentEntry,
        topic: &'a str,
        dead_letter: &'a Envelope,
    ) -> BoxFuture<'a, Result<()>>;

    /// The newest entries first.
    fn recent(&self, limit: u32) -> BoxFuture<'_, Result<Vec<SentEntry>>>;

    /// The outbox relay of this database.
    fn relay(&self, bus: Bus, wake: Arc<Notify>, stop: CancellationToken)
    -> BoxFuture<'static, ()>;
}

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `<event-id@storefront>`: a redelivered event would carry the same Message-ID.
    pub message_id: String,
}

/// Why a message did not go out.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MailError {
    pub message: String,
    /// Sending again will not help (a 5xx answer, an invalid address).
    pub permanent: bool,
}

/// A message in the file mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MailboxMessage {
    /// The `.eml` file name.
    pub file: String,
    pub subject: String,
    pub to: String,
    pub date: String,
    /// The whole message (RFC 5322, MIME multipart/alternative).
    pub raw: String,
}

pub trait Mailer: Send + Sync {
    fn send<'a>(&'a self, mail: &'a OutgoingMail) -> BoxFuture<'a, Result<(), MailError>>;

    /// Health detail for `/readyz`.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;

    /// The newest messages of a file mailbox; `None` for a mail server.
    fn mailbox(&self, limit: u32) -> BoxFuture<'_, Result<Option<Vec<MailboxMessage>>, String>>;
}
