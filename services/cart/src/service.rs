//! What the API does, over the ports: read-through cached reads priced by the catalog, and
//! optimistic, retried writes that invalidate the cache after they commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use chrono::{SubsecRound as _, Utc};
use rand::Rng as _;
use serde::Deserialize;
use storefront_kit::auth::{Identity, Verifier};
use storefront_kit::bus::{self, Received};
use storefront_kit::context::RequestContext;
use storefront_kit::problem::{ApiError, FieldError};
use storefront_search::domain::{Currency, Product, ProductId};
use utoipa::ToSchema;

use crate::domain::{Cart, CartError, CartView, PlacedOrder, PriceOverflow, Quantity};
use crate::ports::{BackendError, CartCache, CartRepo, Catalog, SaveError};

/// Attempts of a write that keeps meeting concurrent writes to the same cart.
const WRITE_ATTEMPTS: u32 = 12;
/// Cap of the jittered pause between two attempts.
const WRITE_BACKOFF_MAX_MS: u64 = 40;
/// The consumer that takes placed orders out of carts, in logs and metrics.
pub const CHECKOUT_CONSUMER: &str = "cart-checkout";
/// Longest accepted user id (the `sub` claim); the database column holds this many.
const MAX_USER_ID: usize = 255;

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        ApiError::backend(e.unavailable, e)
    }
}

impl From<CartError> for ApiError {
    fn from(e: CartError) -> Self {
        match e {
            CartError::Invalid(errors) => ApiError::Validation(errors),
            CartError::NotInCart => ApiError::NotFound("This product is not in your cart.".into()),
        }
    }
}

impl From<PriceOverflow> for ApiError {
    fn from(e: PriceOverflow) -> Self {
        ApiError::internal(e)
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub repo: Arc<dyn CartRepo>,
    pub cache: Arc<dyn CartCache>,
    pub catalog: Arc<dyn Catalog>,
    pub verifier: Verifier,
    /// Currency of an empty cart's total.
    pub currency: Currency,
    /// How long a read waits for current prices.
    pub price_timeout: Duration,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The body of `POST /v1/cart/items`, as received.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemInput {
    /// A product of the catalog.
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub product_id: Option<String>,
    /// How many to add, 1 ..= 99 (1 when absent); added to the line if the product is
    /// already in the cart, which then holds at most 99.
    #[schema(minimum = 1, maximum = 99)]
    pub quantity: Option<i64>,
}

/// The body of `PATCH /v1/cart/items/{product}`, as received.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantityInput {
    /// The new quantity, 0 ..= 99; 0 removes the line.
    #[schema(value_type = i64, required = true, minimum = 0, maximum = 99)]
    pub quantity: Option<i64>,
}

impl AddItemInput {
    /// Validates every field, reporting all invalid ones at once.
    pub fn validate(self) -> Result<(ProductId, Quantity), ApiError> {
        let mut errors = Vec::new();
        let id = match self.product_id {
            None => {
                errors.push(FieldError::new("product_id", "is required"));
                None
            }
            Some(raw) => ProductId::parse(&raw)
                .map_err(|m| errors.push(FieldError::new("product_id", m)))
                .ok(),
        };
        let quantity = Quantity::parse(self.quantity.unwrap_or(1))
            .map_err(|m| errors.push(FieldError::new("quantity", m)))
            .ok();
        match (id, quantity) {
            (Some(id), Some(q)) if errors.is_empty() => Ok((id, q)),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

impl SetQuantityInput {
    /// The new quantity; `None` removes the line.
    pub fn validate(self) -> Result<Option<Quantity>, ApiError> {
        match self.quantity {
            None => Err(ApiError::invalid("quantity", "is required")),
            Some(0) => Ok(None),
            Some(q) => Quantity::parse(q)
                .map(Some)
                .map_err(|_| ApiError::invalid("quantity", "must be between 0 and 99")),
        }
    }
}

/// The caller's user id: the token's subject.
pub fn user_of(identity: &Identity) -> Result<&str, ApiError> {
    let sub = identity.subject.as_str();
    if sub.is_empty() || sub.len() > MAX_USER_ID {
        return Err(ApiError::Unauthorized("Invalid or expired token.".into()));
    }
    Ok(sub)
}

/// A product id from the path.
pub fn product_param(raw: &str) -> Result<ProductId, ApiError> {
    ProductId::parse(raw).map_err(|m| ApiError::invalid("product", m))
}

impl AppState {
    /// The stored cart, through the cache: a miss reads the database and fills the cache.
    async fn stored(&self, user: &str) -> Result<Cart, ApiError> {
        if let Some(cart) = self.cache.get(user).await {
            metrics::counter!("cart_cache_requests_total", "outcome" => "hit").increment(1);
            return Ok(cart);
        }
        metrics::counter!("cart_cache_requests_total", "outcome" => "miss").increment(1);
        let cart = self.repo.load(user).await?;
        match cart {
            Some(cart) => {
                self.cache.put(&cart).await;
                Ok(cart)
            }
            None => Ok(Cart::empty(user, Utc::now())),
        }
    }

    /// The cart as the API shows it.
    ///
    /// Prices: a line keeps the price captured when it was added, but the view shows the
    /// catalog's current price (and SKU and title) whenever search answers within
    /// `price_timeout`, so the shopper sees what the order will cost; when search is down,
    /// slow, no longer has the product or now prices it in another currency, the captured
    /// price is shown. The order service reprices at checkout anyway.
    pub async fn view(&self, ctx: &RequestContext, cart: &Cart) -> Result<CartView, ApiError> {
        let ids: Vec<ProductId> = cart.lines.iter().map(|l| l.product_id.clone()).collect();
        let current: HashMap<ProductId, Product> = if ids.is_empty() {
            HashMap::new()
        } else {
            match tokio::time::timeout(self.price_timeout, self.catalog.products(ctx, &ids)).await {
                Ok(Ok(products)) => products.into_iter().map(|p| (p.id.clone(), p)).collect(),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "captured prices shown");
                    HashMap::new()
                }
                Err(_) => {
                    tracing::debug!("catalog too slow; captured prices shown");
                    HashMap::new()
                }
            }
        };
        let shown = cart
            .lines
            .iter()
            .filter(|l| current.contains_key(&l.product_id))
            .count();
        if shown < cart.lines.len() {
            metrics::counter!("cart_captured_prices_shown_total")
                .increment((cart.lines.len() - shown) as u64);
        }
        Ok(cart.view(|id| current.get(id).cloned(), &self.currency)?)
    }

    /// `GET /v1/cart`.
    pub async fn get(&self, ctx: &RequestContext, user: &str) -> Result<CartView, ApiError> {
        let cart = self.stored(user).await?;
        self.view(ctx, &cart).await
    }

    /// Applies `change` to the user's cart as stored now (never the cached copy), saves it,
    /// retrying on concurrent writes, and invalidates the cached cart after the commit.
    /// Returns the cart as saved.
    async fn write(
        &self,
        user: &str,
        change: impl Fn(&mut Cart) -> Result<(), CartError>,
    ) -> Result<Cart, ApiError> {
        for attempt in 0..WRITE_ATTEMPTS {
            let mut cart = self
                .repo
                .load(user)
                .await?
                .unwrap_or_else(|| Cart::empty(user, Utc::now()));
            change(&mut cart)?;
            // Stored in milliseconds: answer what a later read will show.
            cart.updated_at = Utc::now().trunc_subsecs(3);
            match self.repo.save(&cart).await {
                Ok(version) => {
                    cart.version = version;
                    self.cache.invalidate(user, version).await;
                    return Ok(cart);
                }
                Err(SaveError::Conflict) => {
                    metrics::counter!("cart_write_conflicts_total").increment(1);
                    // Full jitter, so writers that collided do not collide again.
                    let cap = (2u64 << attempt.min(8)).min(WRITE_BACKOFF_MAX_MS);
                    let pause = rand::rng().random_range(0..=cap);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(SaveError::Backend(e)) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict(
            "The cart is being changed by other requests; try again.".into(),
        ))
    }

    /// `POST /v1/cart/items`: the product must exist in the catalog, whose current price is
    /// captured on the line.
    pub async fn add(
        &self,
        ctx: &RequestContext,
        user: &str,
        input: AddItemInput,
    ) -> Result<CartView, ApiError> {
        let (id, quantity) = input.validate()?;
        let product = self
            .catalog
            .product(ctx, &id)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "catalog unavailable");
                ApiError::Unavailable(
                    "The catalog is unavailable; the cart cannot be changed right now.".into(),
                )
            })?
            .ok_or_else(|| ApiError::invalid("product_id", "no such product in the catalog"))?;
        let cart = self
            .write(user, |cart| cart.add(&product, quantity))
            .await?;
        self.view(ctx, &cart).await
    }

    /// `PATCH /v1/cart/items/{product}`.
    pub async fn set_quantity(
        &self,
        ctx: &RequestContext,
        user: &str,
        id: &ProductId,
        input: SetQuantityInput,
    ) -> Result<CartView, ApiError> {
        let quantity = input.validate()?;
        let cart = self
            .write(user, |cart| cart.set_quantity(id, quantity))
            .await?;
        self.view(ctx, &cart).await
    }

    /// `DELETE /v1/cart/items/{product}`.
    pub async fn remove(&self, user: &str, id: &ProductId) -> Result<(), ApiError> {
        self.write(user, |cart| cart.remove(id)).await.map(drop)
    }

    /// `DELETE /v1/cart`: empties the cart (a cart that is already empty is left alone), in
    /// one statement: no load, no version to race with.
    pub async fn clear(&self, user: &str) -> Result<(), ApiError> {
        let at = Utc::now().trunc_subsecs(3);
        if let Some(version) = self.repo.clear(user, at).await? {
            self.cache.invalidate(user, version).await;
        }
        Ok(())
    }

    /// Follows a batch of `orders.v1` records: every placed order is taken out of the cart it
    /// was placed from ([`CartRepo::take_out`]), and the carts changed leave the cache. An
    /// error leaves the batch to be retried whole, which changes nothing twice.
    pub async fn follow_orders(&self, records: &[Received]) -> Result<(), BackendError> {
        let orders = bus::read_batch(CHECKOUT_CONSUMER, records, |r| {
            PlacedOrder::from_record(&r.payload)
        });
        if orders.is_empty() {
            return Ok(());
        }
        let changed = self
            .repo
            .take_out(&orders, Utc::now().trunc_subsecs(3))
            .await?;
        futures::future::join_all(
            changed
                .iter()
                .map(|(user, version)| self.cache.invalidate(user, *version)),
        )
        .await;
        // Every `OrderPlaced` read, including those passed over as already taken out.
        metrics::counter!("cart_placed_orders_handled_total").increment(orders.len() as u64);
        tracing::debug!(
            orders = orders.len(),
            carts = changed.len(),
            "placed orders taken out of their carts"
        );
        Ok(())
    }
}
