//! The search index in Elasticsearch (OpenSearch in the local stack) through the
//! `elasticsearch` crate.
//!
//! Searches and writes go through an alias (`<name>`) over one physical index
//! (`<name>-<millis>`), so a full reindex builds a new index and swaps the alias atomically.
//! Every write uses external versioning with the product version: a replayed or out-of-order
//! event is rejected by the engine (409) and counts as already applied.

use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::{JsonBody, NdBody};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, StatusCode, Url};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock};

use crate::domain::query::{FACET_ATTRIBUTES, FACET_BRANDS, FACET_CATEGORIES};
use crate::domain::{
    CatalogEvent, Facets, Highlights, Hit, Product, ProductId, SearchQuery, SearchResult, Sort,
    SuggestQuery, Suggestion,
};
use crate::ports::{Applied, BackendError, CatalogRepo, SearchIndex};

const NAME: &str = "elasticsearch";
const TIMEOUT: Duration = Duration::from_secs(10);
const BULK_BATCH: u32 = 500;

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(NAME, e)
}

/// Settings and mappings of every physical index.
pub fn index_definition() -> Value {
    json!({
        "settings": {
            "number_of_shards": 1,
            "number_of_replicas": 0,
            "analysis": {
                "filter": {
                    "autocomplete_edge": { "type": "edge_ngram", "min_gram": 1, "max_gram": 20 }
                },
                "analyzer": {
                    "autocomplete": {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": ["lowercase", "autocomplete_edge"]
                    }
                }
            }
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "id": { "type": "keyword" },
                "sku": { "type": "keyword" },
                "title": {
                    "type": "text",
                    "analyzer": "standard",
                    "fields": {
                        "suggest": {
                            "type": "text",
                            "analyzer": "autocomplete",
                            "search_analyzer": "standard"
                        },
                        "raw": { "type": "keyword" }
                    }
                },
                "description": { "type": "text", "analyzer": "standard" },
                "brand": { "type": "keyword", "fields": { "text": { "type": "text" } } },
                "category": { "type": "keyword" },
                "category_path": { "type": "keyword" },
                "attrs": { "type": "keyword" },
                "price_minor": { "type": "long" },
                "currency": { "type": "keyword" },
                "created_at": { "type": "date" },
                "product": { "type": "object", "enabled": false }
            }
        }
    })
}

/// The indexed form of a product: searchable fields plus the product itself.
pub fn source(p: &Product) -> Value {
    json!({
        "id": p.id.as_str(),
        "sku": p.sku.as_str(),
        "title": p.title,
        "description": p.description,
        "brand": p.brand,
        "category": p.category.as_str(),
        "category_path": p.category.ancestors(),
        "attrs": p.attributes.terms(),
        "price_minor": p.price.minor,
        "currency": p.price.currency.as_str(),
        "created_at": p.created_at.to_rfc3339(),
        "product": p,
    })
}

/// The search request body for `q`.
pub fn search_body(q: &SearchQuery) -> Value {
    let mut filter = Vec::new();
    if let Some(c) = &q.category {
        filter.push(json!({ "term": { "category_path": c.as_str() } }));
    }
    if !q.brands.is_empty() {
        filter.push(json!({ "terms": { "brand": q.brands } }));
    }
    if q.price_min.is_some() || q.price_max.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(min) = q.price_min {
            range.insert("gte".into(), json!(min));
        }
        if let Some(max) = q.price_max {
            range.insert("lte".into(), json!(max));
        }
        filter.push(json!({ "range": { "price_minor": range } }));
    }
    for a in &q.attributes {
        filter.push(json!({ "term": { "attrs": a } }));
    }
    let must = match &q.text {
        Some(text) => json!([{
            "multi_match": {
                "query": text,
                "fields": ["title^3", "brand.text^2", "description"],
                "fuzziness": "AUTO",
                "operator": "or"
            }
        }]),
        None => json!([{ "match_all": {} }]),
    };
    let sort = match q.sort {
        Sort::Relevance => json!(["_score", { "id": "asc" }]),
        Sort::PriceAsc => json!([{ "price_minor": "asc" }, { "id": "asc" }]),
        Sort::PriceDesc => json!([{ "price_minor": "desc" }, { "id": "asc" }]),
        Sort::Newest => json!([{ "created_at": "desc" }, { "id": "asc" }]),
    };
    let terms = |field: &str, size: usize| {
        json!({ "terms": {
            "field": field,
            "size": size,
            "order": [{ "_count": "desc" }, { "_key": "asc" }]
        }})
    };
    json!({
        "from": q.offset(),
        "size": q.page_size,
        "track_total_hits": true,
        "track_scores": true,
        "query": { "bool": { "must": must, "filter": filter } },
        "sort": sort,
        "_source": ["product"],
        "aggs": {
            "brand": terms("brand", FACET_BRANDS),
            "category": terms("category_path", FACET_CATEGORIES),
            "attrs": terms("attrs", FACET_ATTRIBUTES),
        },
        "highlight": {
            "pre_tags": ["<em>"],
            "post_tags": ["</em>"],
            "fields": {
                "title": { "number_of_fragments": 0 },
                "description": { "fragment_size": 160, "number_of_fragments": 1 }
            }
        }
    })
}

fn buckets(aggs: &Value, name: &str) -> Vec<(String, u64)> {
    aggs[name]["buckets"]
        .as_array()
        .map(|bs| {
            bs.iter()
                .filter_map(|b| Some((b["key"].as_str()?.to_string(), b["doc_count"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a search response.
pub fn parse_search(q: &SearchQuery, body: &Value) -> Result<SearchResult, BackendError> {
    let total = body["hits"]["total"]["value"]
        .as_u64()
        .ok_or_else(|| err(format!("search answer without hits.total: {body}")))?;
    let mut hits = Vec::new();
    for h in body["hits"]["hits"].as_array().into_iter().flatten() {
        let product: Product =
            serde_json::from_value(h["_source"]["product"].clone()).map_err(err)?;
        let first = |field: &str| h["highlight"][field][0].as_str().map(str::to_string);
        let highlights = Highlights {
            title: first("title"),
            description: first("description"),
        };
        let score = match q.sort {
            Sort::Relevance if q.text.is_some() => h["_score"].as_f64().map(|s| s as f32),
            _ => None,
        };
        hits.push(Hit::from_product(product, score, highlights));
    }
    let aggs = &body["aggregations"];
    Ok(SearchResult {
        total,
        page: q.page,
        page_size: q.page_size,
        sort: q.sort,
        hits,
        facets: Facets::from_counts(
            buckets(aggs, "brand"),
            buckets(aggs, "category"),
            buckets(aggs, "attrs"),
        ),
    })
}

pub struct ElasticIndex {
    client: Elasticsearch,
    alias: String,
    /// The index a running reindex is filling: events are applied to it too.
    building: RwLock<Option<String>>,
    reindexing: Mutex<()>,
}

impl ElasticIndex {
    /// A client for the engine at `url`, serving the alias `alias`.
    pub fn new(url: &str, alias: &str) -> Result<Self, BackendError> {
        let url = Url::parse(url).map_err(err)?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(TIMEOUT)
            .build()
            .map_err(err)?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            alias: alias.to_string(),
            building: RwLock::new(None),
            reindexing: Mutex::new(()),
        })
    }

    pub fn alias(&self) -> &str {
        &self.alias
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), BackendError> {
        let response = self
            .client
            .send(
                method,
                path,
                HeaderMap::new(),
                Some(query),
                body.map(JsonBody::new),
                None,
            )
            .await
            .map_err(err)?;
        let status = response.status_code();
        let text = response.text().await.map_err(err)?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, BackendError> {
        let (status, value) = self.call(method, path, query, body).await?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(err(format!("{path} answered {status}: {value}")))
        }
    }

    /// The physical indexes the alias points to.
    async fn aliased(&self) -> Result<Vec<String>, BackendError> {
        let (status, value) = self
            .call(Method::Get, &format!("/_alias/{}", self.alias), &[], None)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(err(format!("alias lookup answered {status}: {value}")));
        }
        Ok(value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn create_index(&self, with_alias: bool) -> Result<String, BackendError> {
        let name = format!(
            "{}-{}",
            self.alias,
            chrono::Utc::now().format("%Y%m%d%H%M%S%3f")
        );
        let mut body = index_definition();
        if with_alias {
            body["aliases"] = json!({ self.alias.clone(): {} });
        }
        self.expect_ok(Method::Put, &format!("/{name}"), &[], Some(body))
            .await?;
        Ok(name)
    }

    async fn write(&self, index: &str, event: &CatalogEvent) -> Result<Applied, BackendError> {
        let id = event.product_id().as_str();
        let query = [
            ("version", event.version().to_string()),
            ("version_type", "external".to_string()),
            ("refresh", "true".to_string()),
        ];
        let (status, value) = match event {
            CatalogEvent::Upserted(p) => {
                self.call(
                    Method::Put,
                    &format!("/{index}/_doc/{id}"),
                    &query,
                    Some(source(p)),
                )
                .await?
            }
            CatalogEvent::Deleted(_) => {
                self.call(Method::Delete, &format!("/{index}/_doc/{id}"), &query, None)
                    .await?
            }
        };
        match status {
            s if s.is_success() => Ok(Applied::Changed),
            StatusCode::CONFLICT => Ok(Applied::Stale),
            // A delete of a product the index never had still records its version.
            StatusCode::NOT_FOUND if matches!(event, CatalogEvent::Deleted(_)) => {
                Ok(Applied::Changed)
            }
            s => Err(err(format!("write to {index} answered {s}: {value}"))),
        }
    }

    async fn bulk(&self, index: &str, products: &[Product]) -> Result<(), BackendError> {
        let mut lines: Vec<JsonBody<Value>> = Vec::with_capacity(products.len() * 2);
        for p in products {
            lines.push(
                json!({ "index": {
                    "_index": index,
                    "_id": p.id.as_str(),
                    "version": p.version,
                    "version_type": "external"
                }})
                .into(),
            );
            lines.push(source(p).into());
        }
        let response = self
            .client
            .send(
                Method::Post,
                "/_bulk",
                HeaderMap::new(),
                Option::<&()>::None,
                Some(NdBody::new(lines)),
                None,
            )
            .await
            .map_err(err)?;
        let status = response.status_code();
        let value: Value = response.json().await.map_err(err)?;
        if !status.is_success() {
            return Err(err(format!("bulk answered {status}: {value}")));
        }
        if value["errors"].as_bool() == Some(true) {
            // Version conflicts mean the index already has a newer version: fine.
            for item in value["items"].as_array().into_iter().flatten() {
                let s = item["index"]["status"].as_u64().unwrap_or(0);
                if s >= 300 && s != 409 {
                    return Err(err(format!("bulk item failed: {item}")));
                }
            }
        }
        Ok(())
    }
}

impl SearchIndex for ElasticIndex {
    fn ensure(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        async move {
            if !self.aliased().await?.is_empty() {
                return Ok(false);
            }
            self.create_index(true).await?;
            Ok(true)
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        event: &'a CatalogEvent,
    ) -> BoxFuture<'a, Result<Applied, BackendError>> {
        async move {
            let building = self.building.read().await.clone();
            let mut applied = self.write(&self.alias, event).await?;
            if let Some(index) = building
                && self.write(&index, event).await? == Applied::Changed
            {
                applied = Applied::Changed;
            }
            Ok(applied)
        }
        .boxed()
    }

    fn search<'a>(
        &'a self,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchResult, BackendError>> {
        async move {
            let body = self
                .expect_ok(
                    Method::Post,
                    &format!("/{}/_search", self.alias),
                    &[],
                    Some(search_body(query)),
                )
                .await?;
            parse_search(query, &body)
        }
        .boxed()
    }

    fn suggest<'a>(
        &'a self,
        query: &'a SuggestQuery,
    ) -> BoxFuture<'a, Result<Vec<Suggestion>, BackendError>> {
        async move {
            let body = json!({
                "size": query.limit * 4,
                "_source": ["id", "title"],
                "query": { "match": { "title.suggest": {
                    "query": query.terms.join(" "),
                    "operator": "and"
                }}},
                "sort": ["_score", { "title.raw": "asc" }, { "id": "asc" }]
            });
            let value = self
                .expect_ok(
                    Method::Post,
                    &format!("/{}/_search", self.alias),
                    &[],
                    Some(body),
                )
                .await?;
            let mut out: Vec<Suggestion> = Vec::new();
            for h in value["hits"]["hits"].as_array().into_iter().flatten() {
                let (Some(title), Some(id)) =
                    (h["_source"]["title"].as_str(), h["_source"]["id"].as_str())
                else {
                    continue;
                };
                if out.iter().any(|s| s.text == title) {
                    continue;
                }
                out.push(Suggestion {
                    text: title.to_string(),
                    product_id: ProductId::parse(id).map_err(err)?,
                });
                if out.len() >= usize::try_from(query.limit).unwrap_or(usize::MAX) {
                    break;
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn reindex<'a>(
        &'a self,
        catalog: &'a dyn CatalogRepo,
    ) -> BoxFuture<'a, Result<u64, BackendError>> {
        async move {
            let _one_at_a_time = self.reindexing.lock().await;
            let new = self.create_index(false).await?;
            *self.building.write().await = Some(new.clone());
            let outcome = async {
                let mut count = 0u64;
                let mut after: Option<ProductId> = None;
                loop {
                    let page = catalog.page(after.as_ref(), BULK_BATCH).await?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.id.clone());
                    self.bulk(&new, &page).await?;
                    count += page.len() as u64;
                }
                self.expect_ok(Method::Post, &format!("/{new}/_refresh"), &[], None)
                    .await?;
                let old = self.aliased().await?;
                let mut actions: Vec<Value> = old
                    .iter()
                    .map(|i| json!({ "remove": { "index": i, "alias": self.alias } }))
                    .collect();
                actions.push(json!({ "add": { "index": new, "alias": self.alias } }));
                self.expect_ok(
                    Method::Post,
                    "/_aliases",
                    &[],
                    Some(json!({ "actions": actions })),
                )
                .await?;
                Ok::<_, BackendError>((count, old))
            }
            .await;
            *self.building.write().await = None;
            match outcome {
                Ok((count, old)) => {
                    for index in old {
                        if let Err(e) = self
                            .expect_ok(Method::Delete, &format!("/{index}"), &[], None)
                            .await
                        {
                            tracing::warn!(error = %e, index, "old index not deleted");
                        }
                    }
                    Ok(count)
                }
                Err(e) => {
                    let _ = self
                        .call(Method::Delete, &format!("/{new}"), &[], None)
                        .await;
                    Err(e)
                }
            }
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            let value = self
                .expect_ok(Method::Get, "/_cluster/health", &[], None)
                .await
                .map_err(|e| e.to_string())?;
            match value["status"].as_str() {
                Some("green" | "yellow") => Ok(()),
                other => Err(format!("cluster health is {other:?}")),
            }
        }
        .boxed()
    }
}

/// Deletes the alias and every index behind it (tests clean up with it).
pub async fn drop_all(index: &ElasticIndex) -> Result<(), BackendError> {
    for name in index.aliased().await? {
        index
            .expect_ok(Method::Delete, &format!("/{name}"), &[], None)
            .await?;
    }
    Ok(())
}
