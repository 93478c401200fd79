//! `catalog.v1` events: `ProductUpserted` (the whole product) and `ProductDeleted`; and the
//! `orders.v1` event search follows: `StockChanged`.

use serde::{Deserialize, Serialize};
use storefront_kit::event::Envelope;

use super::product::{Availability, Product, ProductId};

pub const PRODUCT_UPSERTED: &str = "ProductUpserted";
pub const PRODUCT_DELETED: &str = "ProductDeleted";
/// The `orders.v1` event with a product's new stock (subject = product id).
pub const STOCK_CHANGED: &str = "StockChanged";
/// The `source` of every catalog event.
pub const SOURCE: &str = "search";

/// The data of a `ProductDeleted` event: the id and the version the deletion gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductDeleted {
    pub id: ProductId,
    pub version: u64,
}

/// A change of the catalog, as carried by `catalog.v1`.
#[derive(Clone, Debug, PartialEq)]
pub enum CatalogEvent {
    Upserted(Box<Product>),
    Deleted(ProductDeleted),
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("unknown catalog event type `{0}`")]
    UnknownType(String),
    #[error("invalid event: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("invalid product id in event: {0}")]
    ProductId(String),
}

/// The data of `StockChanged` as the order service writes it.
#[derive(Debug, Deserialize)]
struct StockChangedData {
    product_id: String,
    available: i64,
}

/// A product's new stock, from `StockChanged`; the event time orders the reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockChanged {
    pub product_id: ProductId,
    pub availability: Availability,
}

impl StockChanged {
    /// Reads the stock change an `orders.v1` envelope carries; `Ok(None)` for the other event
    /// types of the topic (orders), which search does not follow.
    pub fn from_envelope(envelope: &Envelope) -> Result<Option<Self>, EventError> {
        if envelope.event_type != STOCK_CHANGED {
            return Ok(None);
        }
        let data: StockChangedData = serde_json::from_value(envelope.data.clone())?;
        let product_id = ProductId::parse(&data.product_id).map_err(EventError::ProductId)?;
        Ok(Some(Self {
            product_id,
            availability: Availability::new(data.available, envelope.time),
        }))
    }
}

impl CatalogEvent {
    pub fn product_id(&self) -> &ProductId {
        match self {
            Self::Upserted(p) => &p.id,
            Self::Deleted(d) => &d.id,
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            Self::Upserted(p) => p.version,
            Self::Deleted(d) => d.version,
        }
    }

    /// The envelope this change travels in (subject = product id).
    pub fn envelope(&self) -> Envelope {
        let (kind, data) = match self {
            Self::Upserted(p) => (PRODUCT_UPSERTED, serde_json::to_value(p)),
            Self::Deleted(d) => (PRODUCT_DELETED, serde_json::to_value(d)),
        };
        Envelope::new(
            kind,
            SOURCE,
            self.product_id().as_str(),
            data.unwrap_or_default(),
        )
    }

    /// Reads a change back from its envelope.
    pub fn from_envelope(envelope: Envelope) -> Result<Self, EventError> {
        match envelope.event_type.as_str() {
            PRODUCT_UPSERTED => Ok(Self::Upserted(Box::new(serde_json::from_value(
                envelope.data,
            )?))),
            PRODUCT_DELETED => Ok(Self::Deleted(serde_json::from_value(envelope.data)?)),
            other => Err(EventError::UnknownType(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stock_changed_is_read_and_other_order_events_are_skipped() {
        let e = Envelope::new(
            STOCK_CHANGED,
            "order",
            "p-1",
            json!({ "product_id": "p-1", "available": 7 }),
        );
        let change = StockChanged::from_envelope(&e)
            .expect("valid")
            .expect("a stock change");
        assert_eq!(change.product_id.as_str(), "p-1");
        assert_eq!(change.availability.available, 7);
        assert!(change.availability.in_stock);
        assert_eq!(change.availability.stamp(), e.time.timestamp_micros());

        let placed = Envelope::new("OrderPlaced", "order", "o-1", json!({ "order_id": "o-1" }));
        assert_eq!(StockChanged::from_envelope(&placed).expect("skipped"), None);
    }

    #[test]
    fn a_malformed_stock_change_is_an_error() {
        let missing = Envelope::new(
            STOCK_CHANGED,
            "order",
            "p-1",
            json!({ "product_id": "p-1" }),
        );
        assert!(StockChanged::from_envelope(&missing).is_err());
        let bad_id = Envelope::new(
            STOCK_CHANGED,
            "order",
            "x",
            json!({ "product_id": "no spaces", "available": 1 }),
        );
        assert!(matches!(
            StockChanged::from_envelope(&bad_id),
            Err(EventError::ProductId(_))
        ));
    }
}
