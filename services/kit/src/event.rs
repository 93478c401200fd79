//! The event envelope every Storefront event travels in, and the topic names.
//!
//! The Kafka message key is the envelope's `subject` (the aggregate id), so all events of one
//! aggregate land in one partition, in order. Consumers dedupe on `id`.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::RequestContext;

/// Topic names, versioned in the name.
pub mod topics {
    pub const CATALOG: &str = "catalog.v1";
    pub const ORDERS: &str = "orders.v1";
    pub const DELIVERIES: &str = "deliveries.v1";
    pub const NOTIFICATIONS_DLQ: &str = "notifications.dlq.v1";
    pub const ALL: [&str; 4] = [CATALOG, ORDERS, DELIVERIES, NOTIFICATIONS_DLQ];
}

/// One event: who said what about which aggregate, when, in which trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T = serde_json::Value> {
    /// Unique per event; consumers dedupe on it.
    pub id: Uuid,
    /// The event type, e.g. `OrderPlaced`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The service that emitted it, e.g. `order`.
    pub source: String,
    pub time: DateTime<Utc>,
    /// The aggregate id; also the Kafka key.
    pub subject: String,
    /// W3C trace context of the emitting request, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub data: T,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("event is not a valid envelope: {0}")]
    Decode(#[from] serde_json::Error),
}

impl<T> Envelope<T> {
    pub fn new(
        event_type: impl Into<String>,
        source: impl Into<String>,
        subject: impl Into<String>,
        data: T,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            source: source.into(),
            time: Utc::now(),
            subject: subject.into(),
            // Made while handling a request or a consumed event, the event names that work as
            // its cause (its exported span, or the kit's own context of it); `caused_by` says
            // so explicitly.
            traceparent: crate::telemetry::current_traceparent().map(|t| t.to_string()),
            data,
        }
    }

    /// Records the trace of the request that caused the event.
    pub fn caused_by(mut self, ctx: &RequestContext) -> Self {
        self.traceparent = Some(ctx.outgoing_traceparent().to_string());
        self
    }

    /// The Kafka message key.
    pub fn key(&self) -> &str {
        &self.subject
    }
}

impl<T: Serialize> Envelope<T> {
    pub fn to_json(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(serde_json::to_vec(self)?)
    }
}

impl<T: DeserializeOwned> Envelope<T> {
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct OrderPlaced {
        order_id: String,
        total_minor: i64,
        currency: String,
    }

    #[test]
    fn envelope_round_trips_typed_and_untyped() {
        let ctx = RequestContext::new_root();
        let event = Envelope::new(
            "OrderPlaced",
            "order",
            "ord-1",
            OrderPlaced {
                order_id: "ord-1".into(),
                total_minor: 12_999,
                currency: "EUR".into(),
            },
        )
        .caused_by(&ctx);
        let bytes = event.to_json().expect("serialize");
        let back: Envelope<OrderPlaced> = Envelope::from_json(&bytes).expect("typed");
        assert_eq!(back, event);

        let raw: Envelope = Envelope::from_json(&bytes).expect("untyped");
        assert_eq!(raw.data["total_minor"], 12_999);
        assert_eq!(raw.key(), "ord-1");
        assert_eq!(raw.traceparent, Some(ctx.trace.to_string()));
    }

    #[test]
    fn wire_format_has_the_documented_fields() {
        let event = Envelope::new("ProductDeleted", "search", "p-9", serde_json::json!({}));
        let value: serde_json::Value =
            serde_json::from_slice(&event.to_json().expect("json")).expect("value");
        let mut keys: Vec<_> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["data", "id", "source", "subject", "time", "type"]);
        assert!(value["time"].as_str().expect("time").ends_with('Z'));
    }

    #[test]
    fn unknown_or_missing_fields_are_rejected() {
        let missing = br#"{"id":"0192d1d0-0000-7000-8000-000000000000","type":"X","source":"s","time":"2026-01-01T00:00:00Z","data":{}}"#;
        assert!(Envelope::<serde_json::Value>::from_json(missing).is_err());
        assert!(Envelope::<serde_json::Value>::from_json(b"not json").is_err());
    }
}
