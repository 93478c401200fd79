//! Search and suggestion queries (validated) and their results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storefront_kit::problem::FieldError;
use utoipa::{IntoParams, ToSchema};

use super::product::{Availability, CategoryPath, Money, Product, ProductId, Sku};
use super::text;

pub const MAX_Q_CHARS: usize = 200;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
/// Deepest result reachable by paging (Elasticsearch's `max_result_window`).
pub const MAX_WINDOW: u64 = 10_000;
pub const MAX_SUGGEST_CHARS: usize = 100;
pub const MAX_SUGGESTIONS: u32 = 20;

/// `GET /v1/search` parameters as received.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Free text; typos are tolerated (fuzzy matching). At most 200 characters.
    pub q: Option<String>,
    /// Category path; matches the category and everything below it.
    pub category: Option<String>,
    /// Brands, comma-separated (any of them).
    pub brand: Option<String>,
    /// Lowest price in minor units, inclusive.
    #[param(minimum = 0)]
    pub price_min: Option<i64>,
    /// Highest price in minor units, inclusive.
    #[param(minimum = 0)]
    pub price_max: Option<i64>,
    /// Attribute filters `key:value`, comma-separated (all of them), e.g. `colour:black,size:m`.
    pub attr: Option<String>,
    /// `true`: only products the order service reports in stock; `false` or absent: all.
    pub in_stock: Option<bool>,
    /// `relevance` (default, also when empty), `price_asc`, `price_desc` or `newest`.
    #[param(pattern = "^(|relevance|price_asc|price_desc|newest)$")]
    pub sort: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Results per page, 1 or more; more than 100 is taken as 100.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 4294967295.0)]
    pub page_size: Option<u32>,
}

/// How results are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

impl Sort {
    pub const NAMES: [&'static str; 4] = ["relevance", "price_asc", "price_desc", "newest"];

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "relevance" => Some(Self::Relevance),
            "price_asc" => Some(Self::PriceAsc),
            "price_desc" => Some(Self::PriceDesc),
            "newest" => Some(Self::Newest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relevance => "relevance",
            Self::PriceAsc => "price_asc",
            Self::PriceDesc => "price_desc",
            Self::Newest => "newest",
        }
    }
}

/// A validated search.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    /// Trimmed free text, `None` when blank.
    pub text: Option<String>,
    pub category: Option<CategoryPath>,
    /// Brands as given (exact match).
    pub brands: Vec<String>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    /// `key=value` terms; a product must have all.
    pub attributes: Vec<String>,
    /// Only products in stock.
    pub in_stock: bool,
    pub sort: Sort,
    pub page: u32,
    pub page_size: u32,
}

impl Default for SearchQuery {
    fn default() -> Self {
        Self {
            text: None,
            category: None,
            brands: Vec::new(),
            price_min: None,
            price_max: None,
            attributes: Vec::new(),
            in_stock: false,
            sort: Sort::Relevance,
            page: 1,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

fn list(raw: &Option<String>) -> Vec<String> {
    raw.as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl SearchParams {
    /// Validates every parameter, naming each bad one.
    pub fn validate(self) -> Result<SearchQuery, Vec<FieldError>> {
        let mut errors = Vec::new();
        let text = self
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_string);
        if text
            .as_ref()
            .is_some_and(|q| q.chars().count() > MAX_Q_CHARS)
        {
            errors.push(FieldError::new(
                "q",
                format!("must be at most {MAX_Q_CHARS} characters"),
            ));
        }
        let category = match self.category.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => CategoryPath::parse(c)
                .map_err(|m| errors.push(FieldError::new("category", m)))
                .ok(),
        };
        let brands = list(&self.brand);
        if brands.len() > 20 || brands.iter().any(|b| b.chars().count() > 80) {
            errors.push(FieldError::new(
                "brand",
                "at most 20 brands of at most 80 characters",
            ));
        }
        for (field, value) in [("price_min", self.price_min), ("price_max", self.price_max)] {
            if value.is_some_and(|v| v < 0) {
                errors.push(FieldError::new(field, "must not be negative"));
            }
        }
        if let (Some(min), Some(max)) = (self.price_min, self.price_max)
            && min >= 0
            && max >= 0
            && min > max
        {
            errors.push(FieldError::new(
                "price_max",
                "must be greater than or equal to price_min",
            ));
        }
        let mut attributes = Vec::new();
        for pair in list(&self.attr) {
            match pair.split_once(':') {
                Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                    attributes.push(format!("{}={}", k.trim(), v.trim()));
                }
                _ => errors.push(FieldError::new(
                    "attr",
                    format!("`{pair}` is not of the form key:value"),
                )),
            }
        }
        if attributes.len() > 20 {
            errors.push(FieldError::new("attr", "at most 20 attribute filters"));
        }
        let sort = match self.sort.as_deref() {
            None | Some("") => Sort::Relevance,
            Some(s) => Sort::parse(s).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "sort",
                    format!("unknown sort `{s}`; one of {}", Sort::NAMES.join(", ")),
                ));
                Sort::Relevance
            }),
        };
        let page = self.page.unwrap_or(1);
        if page == 0 {
            errors.push(FieldError::new("page", "starts at 1"));
        }
        let page_size = match self.page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(0) => {
                errors.push(FieldError::new("page_size", "must be at least 1"));
                DEFAULT_PAGE_SIZE
            }
            Some(n) => n.min(MAX_PAGE_SIZE),
        };
        if u64::from(page) * u64::from(page_size) > MAX_WINDOW {
            errors.push(FieldError::new(
                "page",
                format!("page * page_size must be at most {MAX_WINDOW}; narrow the search"),
            ));
        }
        if errors.is_empty() {
            Ok(SearchQuery {
                text,
                category,
                brands,
                price_min: self.price_min,
                price_max: self.price_max,
                attributes,
                in_stock: self.in_stock.unwrap_or(false),
                sort,
                page,
                page_size,
            })
        } else {
            Err(errors)
        }
    }
}

impl SearchQuery {
    /// Offset of the first hit of the page.
    pub fn offset(&self) -> usize {
        usize::try_from((u64::from(self.page) - 1) * u64::from(self.page_size)).unwrap_or(0)
    }

    /// Lower-cased query terms.
    pub fn terms(&self) -> Vec<String> {
        self.text.as_deref().map(text::tokens).unwrap_or_default()
    }

    /// A canonical form: equal queries give equal keys (used for cache keys).
    pub fn canonical(&self) -> String {
        let mut brands = self.brands.clone();
        brands.sort();
        let mut attributes = self.attributes.clone();
        attributes.sort();
        serde_json::json!([
            self.text,
            self.category.as_ref().map(CategoryPath::as_str),
            brands,
            self.price_min,
            self.price_max,
            attributes,
            self.in_stock,
            self.sort.as_str(),
            self.page,
            self.page_size,
        ])
        .to_string()
    }
}

/// `GET /v1/suggest` parameters as received.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuggestParams {
    /// What the shopper typed so far (1 to 100 characters).
    pub q: Option<String>,
    /// How many suggestions, 1 to 20 (default 8).
    #[param(minimum = 1, maximum = 20)]
    pub limit: Option<u32>,
}

/// A validated suggestion query.
#[derive(Clone, Debug, PartialEq)]
pub struct SuggestQuery {
    /// Lower-cased words of the prefix; the last one may be incomplete.
    pub terms: Vec<String>,
    pub limit: u32,
}

impl SuggestParams {
    pub fn validate(self) -> Result<SuggestQuery, Vec<FieldError>> {
        let mut errors = Vec::new();
        let q = self.q.unwrap_or_default();
        let terms = text::tokens(&q);
        if terms.is_empty() {
            errors.push(FieldError::new("q", "is required"));
        } else if q.chars().count() > MAX_SUGGEST_CHARS {
            errors.push(FieldError::new(
                "q",
                format!("must be at most {MAX_SUGGEST_CHARS} characters"),
            ));
        }
        let limit = self.limit.unwrap_or(8);
        if limit == 0 || limit > MAX_SUGGESTIONS {
            errors.push(FieldError::new(
                "limit",
                format!("must be 1 to {MAX_SUGGESTIONS}"),
            ));
        }
        if errors.is_empty() {
            Ok(SuggestQuery {
                terms: terms.into_iter().take(10).collect(),
                limit,
            })
        } else {
            Err(errors)
        }
    }
}

/// Most products one `GET /v1/products?ids=` asks for.
pub const MAX_PRODUCT_IDS: usize = 100;

/// `GET /v1/products` parameters as received: several products by id, in one call (what a
/// cart of many lines needs to show current prices).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProductsParams {
    /// Product ids, comma-separated, 1 to 100 (repeats count once).
    #[param(value_type = String, required = true)]
    pub ids: Option<String>,
}

impl ProductsParams {
    /// The distinct ids in the order given; every bad one is named.
    pub fn validate(self) -> Result<Vec<ProductId>, Vec<FieldError>> {
        let raw = self.ids.unwrap_or_default();
        if raw.trim().is_empty() {
            return Err(vec![FieldError::new("ids", "is required")]);
        }
        let mut errors = Vec::new();
        let mut ids: Vec<ProductId> = Vec::new();
        for part in raw.split(',') {
            match ProductId::parse(part.trim()) {
                Ok(id) if !ids.contains(&id) => ids.push(id),
                Ok(_) => {}
                Err(m) => errors.push(FieldError::new("ids", format!("'{part}' {m}"))),
            }
        }
        if ids.len() > MAX_PRODUCT_IDS {
            errors.push(FieldError::new(
                "ids",
                format!("must name at most {MAX_PRODUCT_IDS} products"),
            ));
        }
        if errors.is_empty() {
            Ok(ids)
        } else {
            Err(errors)
        }
    }
}

/// Several products: those of the ids asked for that exist, in the order asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductList {
    pub items: Vec<Product>,
}

impl SuggestQuery {
    pub fn canonical(&self) -> String {
        format!("{}|{}", self.terms.join(" "), self.limit)
    }
}

/// One completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Suggestion {
    /// The product title that completes the prefix.
    pub text: String,
    pub product_id: ProductId,
}

/// One facet value and how many matching products have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// Counts over every product matching the search (not only the page).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Facets {
    pub brand: Vec<FacetCount>,
    /// Category paths at every level (`electronics`, `electronics/audio`, ...).
    pub category: Vec<FacetCount>,
    /// Per attribute key, its values.
    pub attributes: BTreeMap<String, Vec<FacetCount>>,
}

/// Sizes of the facet lists.
pub const FACET_BRANDS: usize = 50;
pub const FACET_CATEGORIES: usize = 100;
pub const FACET_ATTRIBUTES: usize = 200;

impl Facets {
    /// Builds facets from raw `(value, count)` lists, attributes as `key=value`.
    pub fn from_counts(
        brand: Vec<(String, u64)>,
        category: Vec<(String, u64)>,
        attributes: Vec<(String, u64)>,
    ) -> Self {
        let to = |v: Vec<(String, u64)>| {
            v.into_iter()
                .map(|(value, count)| FacetCount { value, count })
                .collect()
        };
        let mut attrs: BTreeMap<String, Vec<FacetCount>> = BTreeMap::new();
        for (term, count) in attributes {
            if let Some((k, v)) = term.split_once('=') {
                attrs.entry(k.to_string()).or_default().push(FacetCount {
                    value: v.to_string(),
                    count,
                });
            }
        }
        Self {
            brand: to(brand),
            category: to(category),
            attributes: attrs,
        }
    }
}

/// Sorts counts as the facets are served: by count descending, then value; keeps `top`.
pub fn top_counts(counts: BTreeMap<String, u64>, top: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(top);
    v
}

/// Highlighted fragments (`<em>` around matches).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Highlights {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One search hit: the product's listing fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Hit {
    pub id: ProductId,
    pub sku: Sku,
    pub title: String,
    pub brand: String,
    pub category: CategoryPath,
    pub price: Money,
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub version: u64,
    /// The stock the order service last reported; `null` until it reported one.
    pub availability: Option<Availability>,
    /// Relevance score when sorted by relevance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    pub highlights: Highlights,
}

impl Hit {
    pub fn from_product(p: Product, score: Option<f32>, highlights: Highlights) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            title: p.title,
            brand: p.brand,
            category: p.category,
            price: p.price,
            attributes: p.attributes.into(),
            image: p.images.into_iter().next(),
            version: p.version,
            availability: p.availability,
            score,
            highlights,
        }
    }
}

/// A page of results with facet counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResult {
    /// Every matching product (exact).
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
    pub sort: Sort,
    pub hits: Vec<Hit>,
    pub facets: Facets,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(p: SearchParams) -> Vec<String> {
        p.validate()
            .expect_err("invalid")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn product_ids_are_distinct_in_order_and_each_bad_one_named() {
        let ids = |raw: &str| {
            ProductsParams {
                ids: Some(raw.into()),
            }
            .validate()
        };
        let got = ids("b, a,b,c").expect("valid");
        let got: Vec<&str> = got.iter().map(ProductId::as_str).collect();
        assert_eq!(got, ["b", "a", "c"]);
        let errors = ids("a,bad id,,c").expect_err("invalid");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.field == "ids"));
        assert!(errors[0].message.contains("'bad id'"), "{errors:?}");
        assert!(ProductsParams::default().validate().is_err());
        assert!(ids(" ").is_err());
        let many: Vec<String> = (0..=MAX_PRODUCT_IDS).map(|i| format!("p{i}")).collect();
        assert!(ids(&many.join(",")).is_err());
        assert_eq!(
            ids(&many[..MAX_PRODUCT_IDS].join(","))
                .expect("valid")
                .len(),
            MAX_PRODUCT_IDS
        );
    }

    #[test]
    fn defaults_and_caps() {
        let q = SearchParams {
            q: Some("  headphones ".into()),
            page_size: Some(5000),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        assert_eq!(q.text.as_deref(), Some("headphones"));
        assert_eq!(q.page_size, MAX_PAGE_SIZE);
        assert_eq!(q.sort, Sort::Relevance);
        assert_eq!(q.offset(), 0);
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(
            fields(SearchParams {
                q: Some("x".repeat(201)),
                ..Default::default()
            }),
            ["q"]
        );
        assert_eq!(
            fields(SearchParams {
                price_min: Some(500),
                price_max: Some(100),
                ..Default::default()
            }),
            ["price_max"]
        );
        assert_eq!(
            fields(SearchParams {
                price_min: Some(-1),
                ..Default::default()
            }),
            ["price_min"]
        );
        assert_eq!(
            fields(SearchParams {
                sort: Some("cheapest".into()),
                ..Default::default()
            }),
            ["sort"]
        );
        assert_eq!(
            fields(SearchParams {
                page: Some(10_000),
                ..Default::default()
            }),
            ["page"]
        );
        assert_eq!(
            fields(SearchParams {
                attr: Some("colour".into()),
                ..Default::default()
            }),
            ["attr"]
        );
    }

    #[test]
    fn canonical_form_ignores_filter_order() {
        let a = SearchParams {
            brand: Some("B,A".into()),
            attr: Some("size:m,colour:black".into()),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let b = SearchParams {
            brand: Some("A, B".into()),
            attr: Some("colour:black,size:m".into()),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.attributes, ["size=m", "colour=black"]);
    }

    #[test]
    fn in_stock_filter_is_part_of_the_cache_key() {
        let all = SearchParams::default().validate().expect("valid");
        assert!(!all.in_stock);
        let stocked = SearchParams {
            in_stock: Some(true),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        assert!(stocked.in_stock);
        assert_ne!(all.canonical(), stocked.canonical());
        let explicit_false = SearchParams {
            in_stock: Some(false),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        assert_eq!(all.canonical(), explicit_false.canonical());
    }

    #[test]
    fn suggest_needs_a_prefix() {
        assert!(SuggestParams::default().validate().is_err());
        let s = SuggestParams {
            q: Some("Blue He".into()),
            limit: None,
        }
        .validate()
        .expect("valid");
        assert_eq!(s.terms, ["blue", "he"]);
    }
}
