//! The typed client other services (order) use to read the caller's cart.
//!
//! The cart is always the one of the JWT subject whose credentials the [`RequestContext`]
//! carries; [`RestClient`] propagates them with the request id and a child `traceparent`.

use storefront_kit::client::{ClientError, ClientSettings, RestClient};
use storefront_kit::context::RequestContext;

pub use crate::domain::{CartLineView, CartView};
pub use storefront_search::domain::{Currency, Money, ProductId, Sku};

/// Calls the cart service: `CartClient::get(&ctx)`. (A placed order leaves its cart through
/// its `OrderPlaced` event, not through a call.)
#[derive(Clone, Debug)]
pub struct CartClient {
    rest: RestClient,
}

impl CartClient {
    /// A client for the cart service at `base_url` (e.g. `http://127.0.0.1:8083`).
    pub fn new(base_url: &str, settings: ClientSettings) -> Result<Self, ClientError> {
        Ok(Self {
            rest: RestClient::new(crate::NAME, base_url, settings)?,
        })
    }

    /// The caller's cart, priced as the catalog has it now (`GET /v1/cart`).
    pub async fn get(&self, ctx: &RequestContext) -> Result<CartView, ClientError> {
        self.rest.get_json(ctx, "v1/cart").await
    }
}
