//! The typed client other services (cart, order) use to read the catalog.

use storefront_kit::client::{ClientError, ClientSettings, RestClient};
use storefront_kit::context::RequestContext;

use crate::domain::{Product, ProductId};

/// Calls the search service: `SearchClient::product(&ctx, id)`.
#[derive(Clone, Debug)]
pub struct SearchClient {
    rest: RestClient,
}

impl SearchClient {
    /// A client for the search service at `base_url` (e.g. `http://127.0.0.1:8082`).
    pub fn new(base_url: &str, settings: ClientSettings) -> Result<Self, ClientError> {
        Ok(Self {
            rest: RestClient::new(crate::NAME, base_url, settings)?,
        })
    }

    /// One product as the catalog has it now (404 as `ClientError::Status`).
    pub async fn product(
        &self,
        ctx: &RequestContext,
        id: &ProductId,
    ) -> Result<Product, ClientError> {
        self.rest
            .get_json(ctx, &format!("v1/products/{}", id.as_str()))
            .await
    }
}
