//! The catalog is the search service, reached through its typed client.

use futures::FutureExt;
use futures::future::BoxFuture;
use http::StatusCode;
use storefront_kit::client::{ClientError, ClientSettings, RestClient};
use storefront_kit::context::RequestContext;
use storefront_search::SearchClient;
use storefront_search::domain::{Product, ProductId};

use crate::ports::{BackendError, Catalog, CatalogUnavailable};

pub struct SearchCatalog {
    client: SearchClient,
    /// For the readiness probe (`/healthz` of search, no retries).
    probe: RestClient,
}

impl SearchCatalog {
    pub fn new(base_url: &str, settings: ClientSettings) -> Result<Self, BackendError> {
        let err = |e: ClientError| BackendError::new("search", e);
        let probe_settings = ClientSettings {
            max_retries: 0,
            ..settings.clone()
        };
        Ok(Self {
            client: SearchClient::new(base_url, settings).map_err(err)?,
            probe: RestClient::new(storefront_search::NAME, base_url, probe_settings)
                .map_err(err)?,
        })
    }
}

impl Catalog for SearchCatalog {
    fn product<'a>(
        &'a self,
        ctx: &'a RequestContext,
        id: &'a ProductId,
    ) -> BoxFuture<'a, Result<Option<Product>, CatalogUnavailable>> {
        async move {
            match self.client.product(ctx, id).await {
                Ok(p) => Ok(Some(p)),
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
                Err(e) => Err(CatalogUnavailable(e.to_string())),
            }
        }
        .boxed()
    }

    fn products<'a>(
        &'a self,
        ctx: &'a RequestContext,
        ids: &'a [ProductId],
    ) -> BoxFuture<'a, Result<Vec<Product>, CatalogUnavailable>> {
        async move {
            self.client
                .products(ctx, ids)
                .await
                .map_err(|e| CatalogUnavailable(e.to_string()))
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            self.probe
                .get_json::<serde_json::Value>(&RequestContext::new_root(), "healthz")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}
