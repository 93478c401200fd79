//! The search index in Elasticsearch (OpenSearch in the local stack) through the
//! `elasticsearch` crate.
//!
//! Searches and writes go through an alias (`<name>`) over one physical index
//! (`<name>-<millis>`), so a full reindex builds a new index and swaps the alias atomically.
//!
//! A document holds two things ordered apart: the product (by its version) and the stock the
//! order service reports (by its time, `stock_at`). Every write is one scripted upsert
//! ([`WRITE_SCRIPT`]) that the engine applies atomically per document: the product part only
//! replaces an older version and keeps the stock, the stock part only replaces an older
//! report and keeps the product. A replayed or out-of-order event is a `noop` (already
//! applied), in whatever order the two streams arrive. A delete leaves a tombstone
//! (`live: false`) that keeps the deleted version; a report for a product not indexed yet
//! leaves a stub (no `id`) that only holds the stock. Searches see neither.

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
    Availability, CatalogEvent, Facets, Highlights, Hit, Product, ProductId, SearchQuery,
    SearchResult, Sort, StockChanged, SuggestQuery, Suggestion,
};
use crate::ports::{Applied, BackendError, CatalogRepo, SearchIndex};

const NAME: &str = "elasticsearch";
const TIMEOUT: Duration = Duration::from_secs(10);
const BULK_BATCH: u32 = 500;

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(NAME, e)
}

/// The fields of the stock part of a document.
const STOCK_FIELDS: [&str; 3] = ["available", "in_stock", "stock_at"];

/// Applies `params.doc` (the product part, with its `version`) and/or `params.stock` (the
/// stock part, with its `stock_at`), each only when newer than what the document has; a
/// `noop` when neither is.
pub const WRITE_SCRIPT: &str = r#"
def s = ctx._source;
boolean changed = false;
if (params.doc != null && (s.version == null || s.version < params.doc.version)) {
  def kept = [:];
  for (def k : params.stock_fields) { if (s.containsKey(k)) { kept.put(k, s.get(k)); } }
  s.clear();
  s.putAll(params.doc);
  s.putAll(kept);
  changed = true;
}
if (params.stock != null && (s.stock_at == null || s.stock_at < params.stock.stock_at)) {
  s.putAll(params.stock);
  changed = true;
}
if (!changed) { ctx.op = 'noop'; }
"#;

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
                "product": { "type": "object", "enabled": false },
                "live": { "type": "boolean" },
                "version": { "type": "long" },
                "available": { "type": "long" },
                "in_stock": { "type": "boolean" },
                "stock_at": { "type": "long" }
            }
        }
    })
}

/// The product part of a document: searchable fields plus the product itself (its stock is
/// in the stock part, see [`stock_source`]).
pub fn source(p: &Product) -> Value {
    let mut product = serde_json::to_value(p).unwrap_or_default();
    product["availability"] = Value::Null;
    json!({
        "live": true,
        "version": p.version,
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
        "product": product,
    })
}

/// The stock part of a document.
pub fn stock_source(a: &Availability) -> Value {
    json!({
        "available": a.available,
        "in_stock": a.in_stock,
        "stock_at": a.stamp(),
    })
}

/// The body of a scripted upsert of a product part and/or a stock part.
pub fn write_body(doc: Option<Value>, stock: Option<&Availability>) -> Value {
    json!({
        "scripted_upsert": true,
        "upsert": {},
        "script": {
            "lang": "painless",
            "source": WRITE_SCRIPT,
            "params": {
                "doc": doc,
                "stock": stock.map(stock_source),
                "stock_fields": STOCK_FIELDS,
            }
        }
    })
}

/// The stock part of a document's source, when it has one.
fn stock_of(source: &Value) -> Option<Availability> {
    Some(Availability::from_stamp(
        source["available"].as_i64()?,
        source["stock_at"].as_i64()?,
    ))
}

/// Products that are there: not tombstones (`live: false`), not stock-only stubs (no `id`).
/// Documents indexed before `live` existed count as live, so searches keep answering while
/// such an index is rebuilt.
fn live_filter() -> Value {
    json!({ "bool": {
        "filter": { "exists": { "field": "id" } },
        "must_not": { "term": { "live": false } }
    }})
}

/// The search request body for `q`.
pub fn search_body(q: &SearchQuery) -> Value {
    let mut filter = vec![live_filter()];
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
    if q.in_stock {
        filter.push(json!({ "term": { "in_stock": true } }));
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
        "_source": ["product", "available", "stock_at"],
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
        let mut product: Product =
            serde_json::from_value(h["_source"]["product"].clone()).map_err(err)?;
        product.availability = stock_of(&h["_source"]);
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

    /// One scripted upsert (see [`WRITE_SCRIPT`]), visible when it returns.
    async fn write(
        &self,
        index: &str,
        id: &ProductId,
        body: Value,
    ) -> Result<Applied, BackendError> {
        let query = [
            ("refresh", "true".to_string()),
            ("retry_on_conflict", "5".to_string()),
        ];
        let (status, value) = self
            .call(
                Method::Post,
                &format!("/{index}/_update/{}", id.as_str()),
                &query,
                Some(body),
            )
            .await?;
        if !status.is_success() {
            return Err(err(format!("write to {index} answered {status}: {value}")));
        }
        Ok(if value["result"] == "noop" {
            Applied::Stale
        } else {
            Applied::Changed
        })
    }

    /// Writes `body` through the alias and, during a reindex, to the index being built.
    async fn write_everywhere(&self, id: &ProductId, body: Value) -> Result<Applied, BackendError> {
        let building = self.building.read().await.clone();
        let mut applied = self.write(&self.alias, id, body.clone()).await?;
        if let Some(index) = building
            && self.write(&index, id, body).await? == Applied::Changed
        {
            applied = Applied::Changed;
        }
        Ok(applied)
    }

    /// Scripted upserts (`(id, body)`, see [`write_body`]) in one request, in order; with
    /// `refresh`, visible when it returns. `Changed` when any was not a `noop`.
    async fn bulk(
        &self,
        index: &str,
        writes: Vec<(&ProductId, Value)>,
        refresh: bool,
    ) -> Result<Applied, BackendError> {
        if writes.is_empty() {
            return Ok(Applied::Stale);
        }
        let mut lines: Vec<JsonBody<Value>> = Vec::with_capacity(writes.len() * 2);
        for (id, body) in writes {
            lines.push(
                json!({ "update": {
                    "_index": index,
                    "_id": id.as_str(),
                    "retry_on_conflict": 5
                }})
                .into(),
            );
            lines.push(body.into());
        }
        let query = [("refresh", refresh.to_string())];
        let response = self
            .client
            .send(
                Method::Post,
                "/_bulk",
                HeaderMap::new(),
                Some(&query),
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
        let mut applied = Applied::Stale;
        for item in value["items"].as_array().into_iter().flatten() {
            if item["update"]["status"].as_u64().unwrap_or(0) >= 300 {
                return Err(err(format!("bulk item failed: {item}")));
            }
            if item["update"]["result"] != "noop" {
                applied = Applied::Changed;
            }
        }
        Ok(applied)
    }
}

impl SearchIndex for ElasticIndex {
    fn ensure(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        async move {
            let aliased = self.aliased().await?;
            if aliased.is_empty() {
                self.create_index(true).await?;
                return Ok(true);
            }
            // An index of an older mapping (before stock): add the new fields so writes work,
            // and report it as new so the follower rebuilds it (its documents lack the version
            // the writes compare).
            let mut outdated = false;
            let properties = index_definition()["mappings"]["properties"].clone();
            for index in aliased {
                let mapping = self
                    .expect_ok(Method::Get, &format!("/{index}/_mapping"), &[], None)
                    .await?;
                if mapping[&index]["mappings"]["properties"]["live"].is_null() {
                    tracing::info!(index, "index mapping predates stock; rebuilding the index");
                    self.expect_ok(
                        Method::Put,
                        &format!("/{index}/_mapping"),
                        &[],
                        Some(json!({ "properties": properties })),
                    )
                    .await?;
                    outdated = true;
                }
            }
            Ok(outdated)
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        event: &'a CatalogEvent,
    ) -> BoxFuture<'a, Result<Applied, BackendError>> {
        async move {
            let doc = match event {
                CatalogEvent::Upserted(p) => source(p),
                CatalogEvent::Deleted(d) => {
                    json!({ "id": d.id.as_str(), "live": false, "version": d.version })
                }
            };
            let stock = match event {
                CatalogEvent::Upserted(p) => p.availability.as_ref(),
                CatalogEvent::Deleted(_) => None,
            };
            self.write_everywhere(event.product_id(), write_body(Some(doc), stock))
                .await
        }
        .boxed()
    }

    fn apply_stock<'a>(
        &'a self,
        reports: &'a [StockChanged],
    ) -> BoxFuture<'a, Result<Applied, BackendError>> {
        async move {
            let writes = || {
                reports
                    .iter()
                    .map(|r| (&r.product_id, write_body(None, Some(&r.availability))))
                    .collect::<Vec<_>>()
            };
            let building = self.building.read().await.clone();
            let mut applied = self.bulk(&self.alias, writes(), true).await?;
            if let Some(index) = building
                && self.bulk(&index, writes(), true).await? == Applied::Changed
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
                "query": { "bool": {
                    "must": { "match": { "title.suggest": {
                        "query": query.terms.join(" "),
                        "operator": "and"
                    }}},
                    "filter": live_filter()
                }},
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
                    let writes = page
                        .iter()
                        .map(|p| (&p.id, write_body(Some(source(p)), p.availability.as_ref())))
                        .collect();
                    self.bulk(&new, writes, false).await?;
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
