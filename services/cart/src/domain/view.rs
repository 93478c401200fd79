//! The cart as the API shows it (`GET /v1/cart`): the wire contract other services
//! (order, through [`crate::client::CartClient`]) deserialize.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use storefront_search::domain::{Money, ProductId, Sku};
use utoipa::ToSchema;

/// A cart: its lines, the total and the number of items (the sum of the quantities).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CartView {
    pub items: Vec<CartLineView>,
    /// Sum of the line totals; `{"minor": 0, "currency": "EUR"}` for an empty cart.
    pub total: Money,
    /// Sum of the quantities.
    pub item_count: u32,
    pub updated_at: DateTime<Utc>,
    /// The cart's version: 0 for a cart never saved, one more with every change. An order
    /// records the version it was placed from, and the cart takes out only what that
    /// version held (see `OrderPlaced`).
    #[serde(default)]
    pub version: u64,
}

/// One product in a cart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CartLineView {
    pub product_id: ProductId,
    pub sku: Sku,
    pub title: String,
    /// The catalog's current price when search answers, else the price captured when added.
    pub unit_price: Money,
    /// 1 ..= 99.
    pub quantity: u32,
    /// `unit_price × quantity`.
    pub line_total: Money,
}
