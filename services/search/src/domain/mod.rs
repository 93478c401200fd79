//! Domain types of the search service: they validate on construction and do no I/O.

pub mod event;
pub mod product;
pub mod query;
pub mod text;

pub use event::{CatalogEvent, StockChanged};
pub use product::{
    Attributes, Availability, CategoryPath, Currency, Money, Product, ProductDraft, ProductId,
    ProductInput, Sku,
};
pub use query::{
    FacetCount, Facets, Highlights, Hit, MAX_PRODUCT_IDS, ProductList, ProductsParams,
    SearchParams, SearchQuery, SearchResult, Sort, SuggestParams, SuggestQuery, Suggestion,
};
