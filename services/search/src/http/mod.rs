//! HTTP API of the search service: one router per resource, merged here.

pub mod admin;
pub mod products;
pub mod search;

use axum::Router;
use storefront_kit::problem::{FieldError, Problem};

use crate::domain::product::PriceInput;
use crate::domain::{
    Attributes, Availability, CategoryPath, Currency, FacetCount, Facets, Highlights, Hit, Money,
    Product, ProductId, ProductInput, ProductList, SearchResult, Sku, Sort, Suggestion,
};
use crate::service::AppState;

/// The service's OpenAPI document, served at `/openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Storefront search API",
        description = "Product catalog, full-text search and suggestions."
    ),
    paths(
        search::search,
        search::suggest,
        products::get_product,
        products::list_products,
        products::create_product,
        products::update_product,
        products::delete_product,
        admin::reindex,
    ),
    components(schemas(
        Product, ProductList, ProductInput, PriceInput, ProductId, Sku, Money, Currency, CategoryPath, Availability,
        Attributes, SearchResult, Hit, Highlights, Facets, FacetCount, Sort, Suggestion,
        search::Suggestions, admin::Reindexed, Problem, FieldError,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The `/v1` routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(search::router())
        .merge(products::router())
        .merge(admin::router())
        .with_state(state)
}
