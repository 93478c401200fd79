//! The typed client other services (cart, order) use to read the catalog.

use storefront_kit::client::{ClientError, ClientSettings, RestClient};
use storefront_kit::context::RequestContext;

use crate::domain::{MAX_PRODUCT_IDS, Product, ProductId, ProductList};

/// Calls the search service: `SearchClient::product(&ctx, id)`, `products(&ctx, ids)`.
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

    /// The products of `ids` that exist, in that order (one call per 100 ids).
    pub async fn products(
        &self,
        ctx: &RequestContext,
        ids: &[ProductId],
    ) -> Result<Vec<Product>, ClientError> {
        let mut products = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_PRODUCT_IDS) {
            // Ids are of `A-Z a-z 0-9 - _`: nothing in them needs escaping in a query.
            let ids: Vec<&str> = chunk.iter().map(ProductId::as_str).collect();
            let list: ProductList = self
                .rest
                .get_json(ctx, &format!("v1/products?ids={}", ids.join(",")))
                .await?;
            products.extend(list.items);
        }
        Ok(products)
    }
}
