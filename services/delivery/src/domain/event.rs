//! Events: `orders.v1` as delivery reads it, and the `deliveries.v1` events it writes (see the
//! event contract). Readers are lenient (unknown fields are ignored), writers exact.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use storefront_kit::event::Envelope;

use super::assignment::Destination;
use super::partner::PartnerContact;

pub const ORDER_CONFIRMED: &str = "OrderConfirmed";
pub const ORDER_CANCELLED: &str = "OrderCancelled";

pub const PARTNER_ASSIGNED: &str = "PartnerAssigned";
pub const ASSIGNMENT_PENDING: &str = "AssignmentPending";
pub const DELIVERY_PICKED_UP: &str = "DeliveryPickedUp";
pub const DELIVERY_OUT_FOR_DELIVERY: &str = "DeliveryOutForDelivery";
pub const DELIVERY_DELIVERED: &str = "DeliveryDelivered";
/// The `source` of every `deliveries.v1` event.
pub const SOURCE: &str = "delivery";

/// The shipping address fields delivery uses; the whole object is kept as it came.
#[derive(Clone, Debug, Deserialize)]
pub struct Shipping {
    pub postal_code: String,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Line {
    pub quantity: u32,
    /// Not in the contract yet: a line without a weight weighs 0.
    #[serde(default)]
    pub weight_grams: Option<u64>,
}

/// `OrderConfirmed` data, as far as delivery needs it.
#[derive(Clone, Debug)]
pub struct ConfirmedOrder {
    pub order_id: String,
    pub user_id: String,
    pub shipping: serde_json::Value,
    pub destination: Destination,
}

#[derive(Debug, Deserialize)]
struct ConfirmedData {
    order_id: String,
    user_id: String,
    shipping: serde_json::Value,
    #[serde(default)]
    lines: Vec<Line>,
    #[serde(default)]
    item_count: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct CancelledOrder {
    pub order_id: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// An `orders.v1` event delivery acts on.
#[derive(Debug)]
pub enum OrderEvent {
    Confirmed(ConfirmedOrder),
    Cancelled(CancelledOrder),
}

impl OrderEvent {
    /// `Ok(None)` for event types delivery does not act on; `Err` for a malformed event.
    pub fn from_envelope(envelope: &Envelope) -> Result<Option<Self>, serde_json::Error> {
        match envelope.event_type.as_str() {
            ORDER_CONFIRMED => {
                let d: ConfirmedData = serde_json::from_value(envelope.data.clone())?;
                let s: Shipping = serde_json::from_value(d.shipping.clone())?;
                let items = d
                    .item_count
                    .unwrap_or_else(|| d.lines.iter().map(|l| l.quantity).sum());
                let weight = d
                    .lines
                    .iter()
                    .map(|l| l.weight_grams.unwrap_or(0) * u64::from(l.quantity))
                    .sum();
                Ok(Some(Self::Confirmed(ConfirmedOrder {
                    order_id: d.order_id,
                    user_id: d.user_id,
                    destination: Destination::new(&s.postal_code, s.lat, s.lon, items, weight),
                    shipping: d.shipping,
                })))
            }
            ORDER_CANCELLED => Ok(Some(Self::Cancelled(serde_json::from_value(
                envelope.data.clone(),
            )?))),
            _ => Ok(None),
        }
    }
}

/// `PartnerAssigned` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartnerAssigned {
    pub order_id: String,
    pub user_id: String,
    pub partner: PartnerContact,
    pub assigned_at: DateTime<Utc>,
}

/// `AssignmentPending` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignmentPending {
    pub order_id: String,
    pub user_id: String,
    pub reason: String,
}

/// `DeliveryPickedUp`, `DeliveryOutForDelivery` and `DeliveryDelivered` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStep {
    pub order_id: String,
    pub user_id: String,
    pub partner: PartnerContact,
    pub at: DateTime<Utc>,
}

/// A `deliveries.v1` envelope (subject = order id).
pub fn envelope<T: Serialize>(event_type: &str, order_id: &str, data: &T) -> Envelope {
    Envelope::new(
        event_type,
        SOURCE,
        order_id,
        serde_json::to_value(data).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn confirmed_orders_give_their_destination() {
        let e = Envelope::new(
            ORDER_CONFIRMED,
            "order",
            "o-1",
            json!({
                "order_id": "o-1", "user_id": "u-1", "status": "CONFIRMED",
                "customer": {"name": "Ann", "email": "ann@example.com"},
                "shipping": {"name": "Ann", "line1": "Str 1", "city": "Berlin",
                             "postal_code": "10115", "country": "DE", "lat": 52.5, "lon": 13.4},
                "lines": [{"product_id": "p", "sku": "S", "title": "T", "quantity": 2,
                           "unit_price": {"minor": 100, "currency": "EUR"},
                           "line_total": {"minor": 200, "currency": "EUR"}}],
                "item_count": 2, "total": {"minor": 200, "currency": "EUR"}
            }),
        );
        let Some(OrderEvent::Confirmed(o)) = OrderEvent::from_envelope(&e).expect("valid") else {
            panic!("confirmed")
        };
        assert_eq!(
            o.destination,
            Destination::new("10115", Some(52.5), Some(13.4), 2, 0)
        );
        assert_eq!(o.shipping["city"], "Berlin");
    }

    #[test]
    fn other_types_are_skipped_and_bad_data_is_an_error() {
        let other = Envelope::new("OrderPlaced", "order", "o-1", json!({}));
        assert!(OrderEvent::from_envelope(&other).expect("skip").is_none());
        let bad = Envelope::new(ORDER_CONFIRMED, "order", "o-1", json!({"order_id": 1}));
        assert!(OrderEvent::from_envelope(&bad).is_err());
    }
}
