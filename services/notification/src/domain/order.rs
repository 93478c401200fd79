//! What notification keeps of an order (from `OrderPlaced`/`OrderConfirmed`) so that delivery
//! events, which carry no customer, can be written to the customer.

use serde::{Deserialize, Serialize};

/// `{minor, currency}` as in every event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: String,
    pub email: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    #[serde(default)]
    pub sku: String,
    #[serde(default)]
    pub title: String,
    pub quantity: u32,
    #[serde(default)]
    pub unit_price: Money,
    #[serde(default)]
    pub line_total: Money,
}

/// An order as the messages show it. Read leniently from the event data (unknown fields are
/// ignored, optional ones default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderSnapshot {
    pub order_id: String,
    #[serde(default)]
    pub user_id: String,
    pub customer: Customer,
    #[serde(default)]
    pub lines: Vec<OrderLine>,
    #[serde(default)]
    pub item_count: Option<u32>,
    #[serde(default)]
    pub total: Money,
    /// The shipping address as the event carried it.
    #[serde(default)]
    pub shipping: Option<serde_json::Value>,
}

impl OrderSnapshot {
    pub fn from_data(data: &serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(data.clone())
    }

    pub fn item_count(&self) -> u32 {
        self.item_count
            .unwrap_or_else(|| self.lines.iter().map(|l| l.quantity).sum())
    }
}
