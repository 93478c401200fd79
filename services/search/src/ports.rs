//! Traits the search domain needs from the outside world: the catalog (source of truth, with
//! its outbox), the search index, and the response cache.

use std::time::Duration;

use futures::future::BoxFuture;
use storefront_kit::event::Envelope;

use crate::domain::{
    CatalogEvent, Product, ProductId, SearchQuery, SearchResult, StockChanged, SuggestQuery,
    Suggestion,
};

/// A backend failure; adapters keep the cause for the logs.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{backend}: {message}")]
    Failed {
        backend: &'static str,
        message: String,
    },
}

impl BackendError {
    pub fn new(backend: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Failed {
            backend,
            message: err.to_string(),
        }
    }
}

/// Why a catalog write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no product {0}")]
    NotFound(ProductId),
    /// The product exists at another version than the expected one.
    #[error("product {id} is at version {current}, not {expected}")]
    VersionMismatch {
        id: ProductId,
        expected: u64,
        current: u64,
    },
    /// A product with this id already exists.
    #[error("product {0} already exists")]
    Exists(ProductId),
    /// Another live product has this SKU (`held_by`, when it could be read).
    #[error("SKU {sku} is taken")]
    SkuTaken {
        sku: String,
        held_by: Option<ProductId>,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// One event waiting in the outbox, in the order it must be published.
#[derive(Clone, Debug)]
pub struct PendingEvent {
    pub product_id: ProductId,
    pub envelope: Envelope,
    /// How the adapter finds the stored entry again (opaque outside it).
    pub receipt: String,
}

/// The catalog: the source of truth. Every write stores its `catalog.v1` event atomically
/// with the change (transactional outbox); the relay publishes and acknowledges them.
///
/// It also keeps the stock the order service reports, apart from the product documents (a
/// report may arrive before the product and survives product writes); `get` and `page`
/// return products with it.
pub trait CatalogRepo: Send + Sync {
    /// Stores a new product and its `ProductUpserted` event. A SKU names one live product:
    /// [`WriteError::SkuTaken`] if another has it (also for `update`).
    fn create<'a>(
        &'a self,
        product: &'a Product,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), WriteError>>;

    /// Replaces the product at `product.version - 1` by `product`, with its event.
    fn update<'a>(
        &'a self,
        product: &'a Product,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), WriteError>>;

    /// Deletes the product if it is at `version`, storing its `ProductDeleted` event.
    fn delete<'a>(
        &'a self,
        id: &'a ProductId,
        version: u64,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), WriteError>>;

    fn get<'a>(&'a self, id: &'a ProductId)
    -> BoxFuture<'a, Result<Option<Product>, BackendError>>;

    /// Stores stock reports, in order, each unless the one held for its product is as new or
    /// newer; how many were stored.
    fn set_stock<'a>(
        &'a self,
        reports: &'a [StockChanged],
    ) -> BoxFuture<'a, Result<usize, BackendError>>;

    /// Live products with an id greater than `after`, by id, at most `limit` (for reindexing).
    fn page<'a>(
        &'a self,
        after: Option<&'a ProductId>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Product>, BackendError>>;

    /// Number of live products.
    fn count(&self) -> BoxFuture<'_, Result<u64, BackendError>>;

    /// Stores products without events (the demo catalog, loaded before its first reindex);
    /// one whose id or SKU is already stored is skipped.
    fn import<'a>(&'a self, products: &'a [Product]) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Up to `limit` unpublished events, oldest first (per product in write order).
    fn pending(&self, limit: u32) -> BoxFuture<'_, Result<Vec<PendingEvent>, BackendError>>;

    /// Marks an event as published (and drops a deleted product once nothing is pending).
    fn acknowledge<'a>(
        &'a self,
        event: &'a PendingEvent,
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// A protocol-level health check.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// What applying an event did to the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The index changed.
    Changed,
    /// The index already had this or a newer version (a replay): nothing changed.
    Stale,
}

/// The search index. It follows the catalog through events; versions make replays harmless.
/// Product versions and stock reports are ordered apart: an upsert keeps the stock the
/// document has, a stock report keeps the product, whatever order they come in.
pub trait SearchIndex: Send + Sync {
    /// Creates the index (and alias) when missing; true when it was created (so it is empty).
    fn ensure(&self) -> BoxFuture<'_, Result<bool, BackendError>>;

    /// Applies one catalog change if it is newer than what the index holds; visible to
    /// searches when this returns.
    fn apply<'a>(&'a self, event: &'a CatalogEvent)
    -> BoxFuture<'a, Result<Applied, BackendError>>;

    /// Applies stock reports, in order, each only if newer than the one the index holds for its
    /// product (whether or not the product is indexed yet: a later upsert keeps it), in one
    /// write; visible when this returns. `Changed` when any was applied.
    fn apply_stock<'a>(
        &'a self,
        reports: &'a [StockChanged],
    ) -> BoxFuture<'a, Result<Applied, BackendError>>;

    fn search<'a>(
        &'a self,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchResult, BackendError>>;

    fn suggest<'a>(
        &'a self,
        query: &'a SuggestQuery,
    ) -> BoxFuture<'a, Result<Vec<Suggestion>, BackendError>>;

    /// Rebuilds the whole index from the catalog and swaps it in without a gap: searches keep
    /// being answered from the old index until the new one is complete. Returns the count.
    fn reindex<'a>(
        &'a self,
        catalog: &'a dyn CatalogRepo,
    ) -> BoxFuture<'a, Result<u64, BackendError>>;

    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// A response cache with a catalog generation: every key embeds the generation, and bumping
/// it makes every older entry unreachable at once.
///
/// Methods never fail: a cache that is down behaves as an empty one (misses, lost writes),
/// answering within a short timeout.
pub trait Cache: Send + Sync {
    /// The current generation, `None` when the cache cannot be used right now.
    fn generation(&self) -> BoxFuture<'_, Option<u64>>;

    /// Makes every entry written under an older generation unreachable.
    fn bump(&self) -> BoxFuture<'_, ()>;

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;

    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> BoxFuture<'a, ()>;

    /// Health detail: `Ok` when the cache answers.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}
