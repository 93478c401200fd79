//! `catalog.v1` events: `ProductUpserted` (the whole product) and `ProductDeleted`.

use serde::{Deserialize, Serialize};
use storefront_kit::event::Envelope;

use super::product::{Product, ProductId};

pub const PRODUCT_UPSERTED: &str = "ProductUpserted";
pub const PRODUCT_DELETED: &str = "ProductDeleted";
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
    #[error("invalid catalog event: {0}")]
    Invalid(#[from] serde_json::Error),
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
