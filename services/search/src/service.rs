//! What the API does, over the ports: catalog writes with their events, cached reads, the
//! outbox relay, the index follower and the stock follower.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use storefront_kit::auth::Verifier;
use storefront_kit::bus::{self, Bus, HandlerError, Received, Record};
use storefront_kit::context::RequestContext;
use storefront_kit::event::Envelope;
use storefront_kit::problem::{ApiError, FieldError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::event::ProductDeleted;
use crate::domain::{
    Availability, CatalogEvent, Product, ProductId, ProductInput, SearchQuery, SearchResult,
    StockChanged, SuggestQuery, Suggestion,
};
use crate::ports::{Applied, BackendError, Cache, CatalogRepo, SearchIndex, WriteError};

/// Which precondition a write was made under, for the status of a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match` header: a mismatch is 412.
    IfMatch(u64),
    /// `version` in the body: a mismatch is 409.
    Body(u64),
    /// None given (deletes only): the current version.
    None,
}

impl From<BackendError> for AppError {
    fn from(e: BackendError) -> Self {
        Self(ApiError::internal(e))
    }
}

/// An [`ApiError`] that backend errors convert into (opaque 500, cause logged).
#[derive(Debug)]
pub struct AppError(pub ApiError);

impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl axum::response::IntoResponse for AppError {
    fn into_response(self) -> axum::response::Response {
        self.0.into_response()
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// Everything the handlers and workers share.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<dyn CatalogRepo>,
    pub index: Arc<dyn SearchIndex>,
    pub cache: Arc<dyn Cache>,
    pub verifier: Verifier,
    pub cache_ttl: Duration,
    /// Wakes the outbox relay after a write.
    pub relay_wake: Arc<Notify>,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

fn conflict(pre: Precondition, current: u64) -> ApiError {
    match pre {
        Precondition::IfMatch(v) => ApiError::PreconditionFailed(format!(
            "If-Match names version {v}; the product is at version {current}."
        )),
        Precondition::Body(v) => ApiError::Conflict(format!(
            "The update was made against version {v}; the product is at version {current}."
        )),
        Precondition::None => ApiError::Conflict(format!(
            "The product changed meanwhile (now version {current}); retry."
        )),
    }
}

fn write_error(e: WriteError, pre: Precondition) -> AppError {
    match e {
        WriteError::NotFound(id) => AppError(ApiError::NotFound(format!("No product {id}."))),
        WriteError::VersionMismatch { current, .. } => AppError(conflict(pre, current)),
        WriteError::Exists(id) => {
            AppError(ApiError::Conflict(format!("Product {id} already exists.")))
        }
        WriteError::SkuTaken { sku, held_by } => AppError(ApiError::Taken(FieldError::new(
            "sku",
            match held_by {
                Some(other) => format!("{sku} is already product {other}'s."),
                None => format!("{sku} is already another product's."),
            },
        ))),
        WriteError::Backend(b) => b.into(),
    }
}

impl AppState {
    async fn cached<T, F, Fut>(&self, key: &str, load: F) -> AppResult<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = AppResult<T>>,
    {
        // Read the generation before loading: an entry filled from data older than a bump is
        // stored under the old generation, where nobody looks any more.
        let generation = self.cache.generation().await;
        self.cached_in(generation, key, load).await
    }

    /// [`AppState::cached`] under a generation read beforehand (`None`: no cache).
    async fn cached_in<T, F, Fut>(
        &self,
        generation: Option<u64>,
        key: &str,
        load: F,
    ) -> AppResult<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = AppResult<T>>,
    {
        let Some(generation) = generation else {
            return load().await;
        };
        let key = format!("g{generation}:{key}");
        if let Some(bytes) = self.cache.get(&key).await
            && let Ok(value) = serde_json::from_slice(&bytes)
        {
            metrics::counter!("search_cache_total", "result" => "hit").increment(1);
            return Ok(value);
        }
        metrics::counter!("search_cache_total", "result" => "miss").increment(1);
        let value = load().await?;
        if let Ok(bytes) = serde_json::to_vec(&value) {
            self.cache.put(&key, &bytes, self.cache_ttl).await;
        }
        Ok(value)
    }

    pub async fn search(&self, query: &SearchQuery) -> AppResult<SearchResult> {
        let key = format!("search:{}", query.canonical());
        let result = self
            .cached(&key, || async { Ok(self.index.search(query).await?) })
            .await?;
        if query.page > 1 && result.hits.is_empty() {
            let last = result.total.div_ceil(u64::from(query.page_size)).max(1);
            return Err(ApiError::Validation(vec![FieldError::new(
                "page",
                format!("is past the last page ({last})"),
            )])
            .into());
        }
        Ok(result)
    }

    pub async fn suggest(&self, query: &SuggestQuery) -> AppResult<Vec<Suggestion>> {
        let key = format!("suggest:{}", query.canonical());
        self.cached(&key, || async { Ok(self.index.suggest(query).await?) })
            .await
    }

    pub async fn product(&self, id: &ProductId) -> AppResult<Product> {
        let generation = self.cache.generation().await;
        self.product_in(generation, id).await
    }

    async fn product_in(&self, generation: Option<u64>, id: &ProductId) -> AppResult<Product> {
        let key = format!("product:{id}");
        self.cached_in(generation, &key, || async {
            self.catalog
                .get(id)
                .await?
                .ok_or_else(|| AppError(ApiError::NotFound(format!("No product {id}."))))
        })
        .await
    }

    /// The products of `ids` that exist, in that order; each through the cache as
    /// [`AppState::product`] reads it, under one read of the cache's generation.
    pub async fn products(&self, ids: &[ProductId]) -> AppResult<Vec<Product>> {
        let generation = self.cache.generation().await;
        let found =
            futures::future::join_all(ids.iter().map(|id| self.product_in(generation, id))).await;
        let mut products = Vec::with_capacity(found.len());
        for result in found {
            match result {
                Ok(product) => products.push(product),
                Err(AppError(ApiError::NotFound(_))) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(products)
    }

    async fn written(&self) {
        // Product responses must not be served stale once the write is acknowledged.
        self.cache.bump().await;
        self.relay_wake.notify_one();
    }

    pub async fn create(&self, ctx: &RequestContext, input: ProductInput) -> AppResult<Product> {
        if input.version.is_some() {
            return Err(ApiError::invalid("version", "must not be set on create").into());
        }
        let draft = input.validate().map_err(ApiError::Validation)?;
        let product = Product::create(ProductId::generate(), draft, Utc::now());
        let event = CatalogEvent::Upserted(Box::new(product.clone()))
            .envelope()
            .caused_by(ctx);
        self.catalog
            .create(&product, &event)
            .await
            .map_err(|e| write_error(e, Precondition::None))?;
        self.written().await;
        Ok(product)
    }

    pub async fn update(
        &self,
        ctx: &RequestContext,
        id: &ProductId,
        mut input: ProductInput,
        if_match: Option<u64>,
    ) -> AppResult<Product> {
        let pre = match (if_match, input.version.take()) {
            (Some(v), _) => Precondition::IfMatch(v),
            (None, Some(v)) => Precondition::Body(v),
            (None, None) => {
                return Err(ApiError::invalid(
                    "version",
                    "is required: send If-Match: \"<version>\" or a version field",
                )
                .into());
            }
        };
        let draft = input.validate().map_err(ApiError::Validation)?;
        let current = self
            .catalog
            .get(id)
            .await?
            .ok_or_else(|| AppError(ApiError::NotFound(format!("No product {id}."))))?;
        let expected = match pre {
            Precondition::IfMatch(v) | Precondition::Body(v) => v,
            Precondition::None => current.version,
        };
        if current.version != expected {
            return Err(conflict(pre, current.version).into());
        }
        let next = current.replaced(draft, Utc::now());
        let event = CatalogEvent::Upserted(Box::new(next.clone()))
            .envelope()
            .caused_by(ctx);
        self.catalog
            .update(&next, &event)
            .await
            .map_err(|e| write_error(e, pre))?;
        self.written().await;
        Ok(next)
    }

    pub async fn delete(
        &self,
        ctx: &RequestContext,
        id: &ProductId,
        if_match: Option<u64>,
    ) -> AppResult<()> {
        let current = self
            .catalog
            .get(id)
            .await?
            .ok_or_else(|| AppError(ApiError::NotFound(format!("No product {id}."))))?;
        let pre = if_match.map_or(Precondition::None, Precondition::IfMatch);
        if let Precondition::IfMatch(v) = pre
            && v != current.version
        {
            return Err(conflict(pre, current.version).into());
        }
        let event = CatalogEvent::Deleted(ProductDeleted {
            id: id.clone(),
            version: current.version + 1,
        })
        .envelope()
        .caused_by(ctx);
        self.catalog
            .delete(id, current.version, &event)
            .await
            .map_err(|e| write_error(e, pre))?;
        self.written().await;
        Ok(())
    }

    pub async fn reindex(&self) -> AppResult<u64> {
        let count = self.index.reindex(self.catalog.as_ref()).await?;
        self.cache.bump().await;
        Ok(count)
    }

    /// Applies one `catalog.v1` record to the index, then invalidates cached responses.
    pub async fn follow(&self, record: Received) -> Result<(), HandlerError> {
        let envelope = Envelope::from_json(&record.payload)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let mut event = CatalogEvent::from_envelope(envelope)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        if let CatalogEvent::Upserted(p) = &mut event {
            // The stock the catalog holds, in case the index missed it (a report that came
            // before the product while a reindex was running); the index keeps the newer.
            let held = self
                .catalog
                .get(&p.id)
                .await
                .map_err(|e| HandlerError::Transient(e.to_string()))?
                .and_then(|c| c.availability);
            p.availability = Availability::newest(held, p.availability.take());
        }
        match self.index.apply(&event).await {
            Ok(Applied::Changed) => {
                self.cache.bump().await;
                Ok(())
            }
            Ok(Applied::Stale) => Ok(()),
            Err(e) => Err(HandlerError::Transient(e.to_string())),
        }
    }
}

impl AppState {
    /// Applies a batch of `orders.v1` records, in order: every `StockChanged` is stored in the
    /// catalog and the index, each keeping a report only when it is newer than the one it
    /// holds (so a redelivery or an older report changes nothing), then cached responses are
    /// invalidated once. Other order events are skipped; a malformed record is logged and
    /// skipped. An `Err` (a backend is down) means: retry the whole batch.
    pub async fn follow_stock(&self, records: &[Received]) -> Result<(), BackendError> {
        let reports = bus::read_batch("search-stock", records, |record| {
            Envelope::from_json(&record.payload)
                .map_err(|e| e.to_string())
                .and_then(|e| StockChanged::from_envelope(&e).map_err(|e| e.to_string()))
        });
        self.apply_stock(&newest_per_product(reports)).await
    }

    /// Applies stock reports (see [`AppState::follow_stock`]).
    pub async fn apply_stock(&self, reports: &[StockChanged]) -> Result<(), BackendError> {
        if reports.is_empty() {
            return Ok(());
        }
        let stored = self.catalog.set_stock(reports).await?;
        // Applied to the index even when the catalog had them: a crash between the two writes
        // redelivers the events, and the index has its own ordering.
        let indexed = self.index.apply_stock(reports).await?;
        if stored > 0 || indexed == Applied::Changed {
            self.cache.bump().await;
        }
        metrics::counter!("search_stock_reports_total", "outcome" => "stored")
            .increment(stored as u64);
        metrics::counter!("search_stock_reports_total", "outcome" => "stale")
            .increment(reports.len().saturating_sub(stored) as u64);
        tracing::debug!(reports = reports.len(), stored, "stock reports applied");
        Ok(())
    }
}

/// The newest report per product, in first-seen order. Of equally new ones the later in the
/// batch wins: records of one product share a partition, so the later one is the later event.
pub fn newest_per_product(reports: Vec<StockChanged>) -> Vec<StockChanged> {
    let mut out: Vec<StockChanged> = Vec::with_capacity(reports.len());
    let mut at: std::collections::HashMap<ProductId, usize> = Default::default();
    for report in reports {
        match at.get(&report.product_id) {
            Some(&i) => {
                if !out[i].availability.supersedes(Some(&report.availability)) {
                    out[i] = report;
                }
            }
            None => {
                at.insert(report.product_id.clone(), out.len());
                out.push(report);
            }
        }
    }
    out
}

/// Publishes the outbox until `stop`: every pending event is published, then acknowledged
/// (at least once; consumers are idempotent by version).
pub async fn relay(state: AppState, bus: Bus, topic: String, stop: CancellationToken) {
    loop {
        if stop.is_cancelled() {
            return;
        }
        let published = relay_once(&state, &bus, &topic).await;
        let pause = match published {
            Ok(0) => Duration::from_millis(500),
            Ok(_) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay failed; retrying");
                Duration::from_secs(1)
            }
        };
        if pause.is_zero() {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = state.relay_wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Publishes one batch of the outbox; the number of events published.
pub async fn relay_once(state: &AppState, bus: &Bus, topic: &str) -> Result<usize, String> {
    let pending = state
        .catalog
        .pending(100)
        .await
        .map_err(|e| e.to_string())?;
    let mut published = 0;
    for event in &pending {
        let payload = event.envelope.to_json().map_err(|e| e.to_string())?;
        let record = Record {
            topic: topic.to_string(),
            key: event.envelope.subject.clone(),
            payload,
            headers: vec![("event-type".into(), event.envelope.event_type.clone())],
        };
        bus.publish(&record).await.map_err(|e| e.to_string())?;
        state
            .catalog
            .acknowledge(event)
            .await
            .map_err(|e| e.to_string())?;
        published += 1;
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn report(id: &str, available: i64, at: chrono::DateTime<Utc>) -> StockChanged {
        StockChanged {
            product_id: ProductId::parse(id).expect("id"),
            availability: Availability::new(available, at),
        }
    }

    #[test]
    fn a_batch_keeps_the_newest_report_per_product() {
        let t = Utc::now();
        let batch = vec![
            report("a", 5, t),
            report("b", 1, t),
            report("a", 9, t - Duration::seconds(1)),
            report("a", 4, t + Duration::seconds(1)),
            report("a", 7, t + Duration::seconds(1)),
        ];
        let kept: Vec<(String, i64)> = newest_per_product(batch)
            .into_iter()
            .map(|r| (r.product_id.to_string(), r.availability.available))
            .collect();
        assert_eq!(kept, [("a".to_string(), 7), ("b".to_string(), 1)]);
    }
}
