//! Traits the cart domain needs from the outside world: where carts are stored
//! ([`CartRepo`]), where they are cached ([`CartCache`]) and where products and their
//! current prices come from ([`Catalog`]).

use futures::future::BoxFuture;
use storefront_kit::context::RequestContext;
use storefront_search::domain::{Product, ProductId};

use crate::domain::{Cart, PlacedOrder};

/// A backend failed; the message is logged, never returned to callers.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub message: String,
    /// The backend could not be reached (no connection in time, refused, broken): callers
    /// get 503, not 500.
    pub unavailable: bool,
}

impl BackendError {
    pub fn new(backend: &'static str, err: impl std::fmt::Display + 'static) -> Self {
        Self {
            backend,
            message: err.to_string(),
            unavailable: storefront_kit::sql::is_unavailable_any(&err),
        }
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Why a save did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Someone else saved the cart since it was loaded: load it again and retry.
    #[error("the cart changed concurrently")]
    Conflict,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Carts, one per user.
pub trait CartRepo: Send + Sync {
    /// The user's cart; `None` when they never saved one.
    fn load<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<Option<Cart>>>;

    /// Replaces the stored cart by `cart` if its stored version is still `cart.version`
    /// (0: not stored yet); the stored version becomes `cart.version + 1`, which is returned.
    fn save<'a>(&'a self, cart: &'a Cart) -> BoxFuture<'a, Result<u64, SaveError>>;

    /// Empties the user's cart in one step if it has lines, stamping it `at`; returns the
    /// version that wrote, or `None` when there was no cart or it was already empty.
    fn clear<'a>(
        &'a self,
        user_id: &'a str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<Option<u64>>>;

    /// Takes placed orders out of their carts, idempotently. A cart still at the version an
    /// order was placed from is emptied; one changed since loses only what the order bought
    /// ([`Cart::take_out`]). Each cart keeps the newest version an order was placed from,
    /// and an order from that version or an older one is passed over: a redelivered event,
    /// or one arriving after a later order's, changes nothing. Returns the carts changed,
    /// each with the version that wrote it (for the cache).
    fn take_out<'a>(
        &'a self,
        orders: &'a [PlacedOrder],
        at: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<Vec<(String, u64)>>>;

    /// A cheap query proving the database answers.
    fn check(&self) -> BoxFuture<'_, Result<()>>;
}

/// A read-through cache of stored carts. It never fails: a cache that is down behaves as an
/// empty one, so carts are then read from the database.
pub trait CartCache: Send + Sync {
    /// The cached cart of a user, if any.
    fn get<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Option<Cart>>;

    /// Caches a cart just read from the database, unless a newer version has been
    /// invalidated meanwhile (so a slow reader cannot put back a stale cart).
    fn put<'a>(&'a self, cart: &'a Cart) -> BoxFuture<'a, ()>;

    /// Drops the cached cart after a write committed `version`.
    fn invalidate<'a>(&'a self, user_id: &'a str, version: u64) -> BoxFuture<'a, ()>;

    /// Whether the cache answers (for the `cart_cache_up` gauge and the logs).
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// Why the catalog could not say.
#[derive(Debug, thiserror::Error)]
#[error("the catalog is unavailable: {0}")]
pub struct CatalogUnavailable(pub String);

/// The product catalog (the search service).
pub trait Catalog: Send + Sync {
    /// The product as the catalog has it now; `None` when there is no such product.
    fn product<'a>(
        &'a self,
        ctx: &'a RequestContext,
        id: &'a ProductId,
    ) -> BoxFuture<'a, Result<Option<Product>, CatalogUnavailable>>;

    /// The products of `ids` as the catalog has them now, those that exist (in one call to
    /// the catalog where it can).
    fn products<'a>(
        &'a self,
        ctx: &'a RequestContext,
        ids: &'a [ProductId],
    ) -> BoxFuture<'a, Result<Vec<Product>, CatalogUnavailable>>;

    /// Whether the catalog answers.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}
