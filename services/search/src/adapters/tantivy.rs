//! The search index in Tantivy for `storefront up`, with the same query features as the
//! Elasticsearch adapter: fuzzy terms (`AUTO` fuzziness), filters, exact facet counts, sorts,
//! highlights and prefix suggestions (per-word edge n-grams, as the Elasticsearch mapping).
//!
//! Versions work as Elasticsearch's external versioning: a change older than or equal to the
//! indexed version is ignored, and deletes leave a tombstone document (`live = 0`) that keeps
//! the deleted version, so replays are harmless across restarts too.
//! A reindex replaces every document in one commit: searches see the old index until then.
//!
//! The reported stock is ordered by its own time, apart from the product version: a stock
//! report rewrites the product's document with the new stock (or, before the product is
//! indexed, a stub document `live = 0` that only holds it), and an upsert keeps the stock.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, Value,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use tokio::sync::Mutex;

use crate::domain::query::{
    FACET_ATTRIBUTES, FACET_BRANDS, FACET_CATEGORIES, MAX_WINDOW, top_counts,
};
use crate::domain::text::{self, auto_fuzziness};
use crate::domain::{
    Availability, CatalogEvent, Facets, Highlights, Hit, Product, ProductId, SearchQuery,
    SearchResult, Sort, StockChanged, SuggestQuery, Suggestion,
};
use crate::ports::{Applied, BackendError, CatalogRepo, SearchIndex};

const NAME: &str = "tantivy";
/// One indexing thread with tantivy's smallest budget. Every commit starts a new segment per
/// indexing thread, and each new segment allocates (and the kernel zeroes) its term table
/// and arenas up front, sized by the thread's budget: with the default of one thread per
/// core and 25 MB each, the stock follower's small commits cost the search process more CPU
/// in page zeroing than in indexing. A catalog is small; one thread indexes it fast enough.
const WRITER_THREADS: usize = 1;
const WRITER_HEAP: usize = 15_000_000;
const MAX_PREFIX: usize = 20;

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(NAME, e)
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    live: Field,
    version: Field,
    title: Field,
    description: Field,
    brand: Field,
    brand_text: Field,
    category_path: Field,
    attrs: Field,
    price: Field,
    created: Field,
    suggest: Field,
    product: Field,
    available: Field,
    in_stock: Field,
    stock_at: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        live: b.add_u64_field("live", INDEXED),
        version: b.add_u64_field("version", STORED),
        title: b.add_text_field("title", TEXT),
        description: b.add_text_field("description", TEXT),
        brand: b.add_text_field("brand", STRING),
        brand_text: b.add_text_field("brand_text", TEXT),
        category_path: b.add_text_field("category_path", STRING),
        attrs: b.add_text_field("attrs", STRING),
        price: b.add_i64_field("price", INDEXED | FAST),
        created: b.add_i64_field("created", INDEXED | FAST),
        suggest: b.add_text_field("suggest", STRING),
        product: b.add_text_field("product", STORED),
        available: b.add_i64_field("available", STORED),
        in_stock: b.add_u64_field("in_stock", INDEXED),
        stock_at: b.add_i64_field("stock_at", STORED),
    };
    (b.build(), fields)
}

/// Lower-cased prefixes (1 to 20 characters) of every word: the edge n-grams of the title.
fn prefixes(title: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text::tokens(title) {
        let chars: Vec<char> = word.chars().collect();
        for n in 1..=chars.len().min(MAX_PREFIX) {
            out.push(chars[..n].iter().collect());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What the index holds for one product id.
#[derive(Clone, Debug, Default)]
struct Held {
    /// The product version (of the tombstone after a delete; 0 for a stock-only stub).
    version: u64,
    live: bool,
    stock: Option<Availability>,
}

struct Writer {
    writer: IndexWriter,
    /// Per product id, tombstones and stubs included.
    held: HashMap<String, Held>,
}

struct Inner {
    path: PathBuf,
    fields: Fields,
    reader: IndexReader,
    writer: Arc<Mutex<Writer>>,
    created: bool,
}

pub struct TantivyIndex {
    inner: Arc<Inner>,
}

impl Inner {
    fn add_stock(&self, doc: &mut TantivyDocument, stock: Option<&Availability>) {
        let f = self.fields;
        doc.add_u64(f.in_stock, u64::from(stock.is_some_and(|a| a.in_stock)));
        if let Some(a) = stock {
            doc.add_i64(f.available, a.available);
            doc.add_i64(f.stock_at, a.stamp());
        }
    }

    /// The document of `p`, with `p.availability` as its stock.
    fn product_doc(&self, p: &Product) -> Result<TantivyDocument, BackendError> {
        let f = self.fields;
        let mut doc = TantivyDocument::default();
        self.add_stock(&mut doc, p.availability.as_ref());
        doc.add_text(f.id, p.id.as_str());
        doc.add_u64(f.live, 1);
        doc.add_u64(f.version, p.version);
        doc.add_text(f.title, &p.title);
        doc.add_text(f.description, &p.description);
        doc.add_text(f.brand, &p.brand);
        doc.add_text(f.brand_text, &p.brand);
        for c in p.category.ancestors() {
            doc.add_text(f.category_path, c);
        }
        for a in p.attributes.terms() {
            doc.add_text(f.attrs, a);
        }
        doc.add_i64(f.price, p.price.minor);
        doc.add_i64(f.created, p.created_at.timestamp_millis());
        for prefix in prefixes(&p.title) {
            doc.add_text(f.suggest, prefix);
        }
        doc.add_text(f.product, serde_json::to_string(p).map_err(err)?);
        Ok(doc)
    }

    /// A deleted (or not yet indexed) product: its version and stock, nothing searchable.
    fn tombstone(&self, id: &str, held: &Held) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_text(self.fields.id, id);
        doc.add_u64(self.fields.live, 0);
        doc.add_u64(self.fields.version, held.version);
        self.add_stock(&mut doc, held.stock.as_ref());
        doc
    }

    /// The indexed product `id` (the reader is current: writers reload before unlocking).
    fn find_product(&self, id: &str) -> Result<Option<Product>, BackendError> {
        let searcher = self.reader.searcher();
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.id, id),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (Occur::Must, self.live()),
        ]);
        let top = searcher
            .search(&query, &TopDocs::with_limit(1))
            .map_err(err)?;
        top.first()
            .map(|(_, addr)| self.load_product(&searcher, *addr))
            .transpose()
    }

    fn load_product(
        &self,
        searcher: &tantivy::Searcher,
        addr: DocAddress,
    ) -> Result<Product, BackendError> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(err)?;
        let json = doc
            .get_first(self.fields.product)
            .and_then(|v| v.as_str())
            .ok_or_else(|| err("document without product"))?;
        serde_json::from_str(json).map_err(err)
    }

    fn live(&self) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_u64(self.fields.live, 1),
            IndexRecordOption::Basic,
        ))
    }

    fn text_query(&self, terms: &[String]) -> Box<dyn Query> {
        let f = self.fields;
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for t in terms {
            let distance = auto_fuzziness(t);
            for (field, boost) in [(f.title, 3.0), (f.brand_text, 2.0), (f.description, 1.0)] {
                let term = Term::from_field_text(field, t);
                let exact: Box<dyn Query> =
                    Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs));
                should.push((Occur::Should, Box::new(BoostQuery::new(exact, boost))));
                if distance > 0 {
                    let fuzzy: Box<dyn Query> = Box::new(FuzzyTermQuery::new(term, distance, true));
                    should.push((Occur::Should, Box::new(BoostQuery::new(fuzzy, boost))));
                }
            }
        }
        Box::new(BooleanQuery::new(should))
    }

    fn filters(&self, q: &SearchQuery) -> Vec<(Occur, Box<dyn Query>)> {
        let f = self.fields;
        let term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, self.live())];
        if let Some(c) = &q.category {
            must.push((Occur::Must, term(f.category_path, c.as_str())));
        }
        if !q.brands.is_empty() {
            let any: Vec<(Occur, Box<dyn Query>)> = q
                .brands
                .iter()
                .map(|b| (Occur::Should, term(f.brand, b)))
                .collect();
            must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        if q.price_min.is_some() || q.price_max.is_some() {
            let lower = q.price_min.map_or(Bound::Unbounded, |v| {
                Bound::Included(Term::from_field_i64(f.price, v))
            });
            let upper = q.price_max.map_or(Bound::Unbounded, |v| {
                Bound::Included(Term::from_field_i64(f.price, v))
            });
            must.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        for a in &q.attributes {
            must.push((Occur::Must, term(f.attrs, a)));
        }
        if q.in_stock {
            must.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.in_stock, 1),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        must
    }

    fn search(&self, q: &SearchQuery) -> Result<SearchResult, BackendError> {
        let searcher = self.reader.searcher();
        let terms = q.terms();
        let mut clauses = self.filters(q);
        if !terms.is_empty() {
            clauses.push((Occur::Must, self.text_query(&terms)));
        }
        let query = BooleanQuery::new(clauses);
        let limit = usize::try_from(MAX_WINDOW).unwrap_or(10_000);
        let (top, total) = searcher
            .search(&query, &(TopDocs::with_limit(limit), Count))
            .map_err(err)?;
        let mut hits: Vec<(f32, Product)> = Vec::with_capacity(top.len());
        for (score, addr) in top {
            hits.push((score, self.load_product(&searcher, addr)?));
        }
        let mut brand = BTreeMap::new();
        let mut category = BTreeMap::new();
        let mut attrs = BTreeMap::new();
        for (_, p) in &hits {
            *brand.entry(p.brand.clone()).or_insert(0u64) += 1;
            for c in p.category.ancestors() {
                *category.entry(c).or_insert(0u64) += 1;
            }
            for a in p.attributes.terms() {
                *attrs.entry(a).or_insert(0u64) += 1;
            }
        }
        let by_id = |a: &Product, b: &Product| a.id.cmp(&b.id);
        match (q.sort, terms.is_empty()) {
            (Sort::Relevance, false) => {
                hits.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| by_id(&a.1, &b.1)))
            }
            (Sort::Relevance, true) => hits.sort_by(|a, b| by_id(&a.1, &b.1)),
            (Sort::PriceAsc, _) => hits.sort_by(|a, b| {
                a.1.price
                    .minor
                    .cmp(&b.1.price.minor)
                    .then_with(|| by_id(&a.1, &b.1))
            }),
            (Sort::PriceDesc, _) => hits.sort_by(|a, b| {
                b.1.price
                    .minor
                    .cmp(&a.1.price.minor)
                    .then_with(|| by_id(&a.1, &b.1))
            }),
            (Sort::Newest, _) => hits.sort_by(|a, b| {
                b.1.created_at
                    .timestamp_millis()
                    .cmp(&a.1.created_at.timestamp_millis())
                    .then_with(|| by_id(&a.1, &b.1))
            }),
        }
        let page = hits
            .into_iter()
            .skip(q.offset())
            .take(usize::try_from(q.page_size).unwrap_or(0))
            .map(|(score, p)| {
                let highlights = Highlights {
                    title: text::highlight(&p.title, &terms),
                    description: text::highlight(&p.description, &terms),
                };
                let score = (q.sort == Sort::Relevance && !terms.is_empty()).then_some(score);
                Hit::from_product(p, score, highlights)
            })
            .collect();
        Ok(SearchResult {
            total: total as u64,
            page: q.page,
            page_size: q.page_size,
            sort: q.sort,
            hits: page,
            facets: Facets::from_counts(
                top_counts(brand, FACET_BRANDS),
                top_counts(category, FACET_CATEGORIES),
                top_counts(attrs, FACET_ATTRIBUTES),
            ),
        })
    }

    fn suggest(&self, q: &SuggestQuery) -> Result<Vec<Suggestion>, BackendError> {
        let searcher = self.reader.searcher();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, self.live())];
        for t in &q.terms {
            let t: String = t.chars().take(MAX_PREFIX).collect();
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.suggest, &t),
                    IndexRecordOption::WithFreqs,
                )),
            ));
        }
        let limit = usize::try_from(q.limit).unwrap_or(8);
        let top = searcher
            .search(
                &BooleanQuery::new(clauses),
                &TopDocs::with_limit(limit * 50),
            )
            .map_err(err)?;
        let mut found: Vec<(f32, Product)> = Vec::new();
        for (score, addr) in top {
            found.push((score, self.load_product(&searcher, addr)?));
        }
        found.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.title.cmp(&b.1.title))
                .then_with(|| a.1.id.cmp(&b.1.id))
        });
        let mut out: Vec<Suggestion> = Vec::new();
        for (_, p) in found {
            if out.iter().any(|s| s.text == p.title) {
                continue;
            }
            out.push(Suggestion {
                text: p.title,
                product_id: p.id,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Replaces the document of `id` by `doc` and makes it visible (before the writer is
    /// released, so the next writer reads the current index).
    fn replace(
        &self,
        w: &mut Writer,
        id: &str,
        doc: TantivyDocument,
        held: Held,
    ) -> Result<Applied, BackendError> {
        w.writer
            .delete_term(Term::from_field_text(self.fields.id, id));
        w.writer.add_document(doc).map_err(err)?;
        w.writer.commit().map_err(err)?;
        w.held.insert(id.to_string(), held);
        self.reader.reload().map_err(err)?;
        Ok(Applied::Changed)
    }

    fn apply(&self, event: &CatalogEvent) -> Result<Applied, BackendError> {
        let mut w = self.writer.blocking_lock();
        let id = event.product_id().as_str();
        let before = w.held.get(id).cloned().unwrap_or_default();
        if before.version >= event.version() {
            return Ok(Applied::Stale);
        }
        let (doc, held) = match event {
            CatalogEvent::Upserted(p) => {
                let mut p = p.as_ref().clone();
                p.availability = Availability::newest(before.stock, p.availability.take());
                let held = Held {
                    version: p.version,
                    live: true,
                    stock: p.availability.clone(),
                };
                (self.product_doc(&p)?, held)
            }
            CatalogEvent::Deleted(d) => {
                let held = Held {
                    version: d.version,
                    live: false,
                    stock: before.stock,
                };
                (self.tombstone(id, &held), held)
            }
        };
        self.replace(&mut w, id, doc, held)
    }

    /// Applies stock reports in one commit (see [`SearchIndex::apply_stock`]).
    fn apply_stock(&self, reports: &[StockChanged]) -> Result<Applied, BackendError> {
        let mut w = self.writer.blocking_lock();
        // What this batch changed, applied to `held` once committed.
        let mut staged: HashMap<String, Held> = HashMap::new();
        let outcome = (|| {
            for report in reports {
                let id = report.product_id.as_str();
                let before = staged
                    .get(id)
                    .or_else(|| w.held.get(id))
                    .cloned()
                    .unwrap_or_default();
                if !report.availability.supersedes(before.stock.as_ref()) {
                    continue;
                }
                let product = if before.live {
                    self.find_product(id)?
                } else {
                    None
                };
                let held = Held {
                    stock: Some(report.availability.clone()),
                    live: product.is_some(),
                    ..before
                };
                let doc = match product {
                    Some(mut p) => {
                        p.availability = held.stock.clone();
                        self.product_doc(&p)?
                    }
                    None => self.tombstone(id, &held),
                };
                w.writer
                    .delete_term(Term::from_field_text(self.fields.id, id));
                w.writer.add_document(doc).map_err(err)?;
                staged.insert(id.to_string(), held);
            }
            if !staged.is_empty() {
                w.writer.commit().map_err(err)?;
            }
            Ok::<_, BackendError>(())
        })();
        if let Err(e) = outcome {
            let _ = w.writer.rollback();
            return Err(e);
        }
        if staged.is_empty() {
            return Ok(Applied::Stale);
        }
        w.held.extend(staged);
        self.reader.reload().map_err(err)?;
        Ok(Applied::Changed)
    }
}

impl TantivyIndex {
    /// Opens the index in `dir`, creating it when missing.
    pub async fn open(dir: &Path) -> Result<Self, BackendError> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir))
            .await
            .map_err(err)?
    }

    fn open_blocking(dir: &Path) -> Result<Self, BackendError> {
        std::fs::create_dir_all(dir).map_err(err)?;
        let (schema, fields) = schema();
        let mut exists = dir.join("meta.json").exists();
        if exists
            && Index::open_in_dir(dir)
                .map_err(err)?
                .schema()
                .get_field("stock_at")
                .is_err()
        {
            // An index of an older schema (without stock): start afresh; the follower rebuilds
            // it from the catalog.
            tracing::info!(path = %dir.display(), "index schema changed; rebuilding the index");
            std::fs::remove_dir_all(dir).map_err(err)?;
            std::fs::create_dir_all(dir).map_err(err)?;
            exists = false;
        }
        let index = if exists {
            Index::open_in_dir(dir).map_err(err)?
        } else {
            Index::create_in_dir(dir, schema).map_err(err)?
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        let writer = index
            .writer_with_num_threads(WRITER_THREADS, WRITER_HEAP)
            .map_err(err)?;
        let inner = Inner {
            path: dir.to_path_buf(),
            fields,
            reader,
            writer: Arc::new(Mutex::new(Writer {
                writer,
                held: HashMap::new(),
            })),
            created: !exists,
        };
        // Load what is held per product (tombstones and stubs included).
        let searcher = inner.reader.searcher();
        let all = searcher
            .search(
                &AllQuery,
                &TopDocs::with_limit(searcher.num_docs().max(1) as usize),
            )
            .map_err(err)?;
        let mut held = HashMap::new();
        for (_, addr) in all {
            let doc: TantivyDocument = searcher.doc(addr).map_err(err)?;
            let id = doc.get_first(fields.id).and_then(|v| v.as_str());
            let version = doc.get_first(fields.version).and_then(|v| v.as_u64());
            let live = doc.get_first(fields.product).is_some();
            let stock = match (
                doc.get_first(fields.available).and_then(|v| v.as_i64()),
                doc.get_first(fields.stock_at).and_then(|v| v.as_i64()),
            ) {
                (Some(available), Some(at)) => Some(Availability::from_stamp(available, at)),
                _ => None,
            };
            if let (Some(id), Some(version)) = (id, version) {
                held.insert(
                    id.to_string(),
                    Held {
                        version,
                        live,
                        stock,
                    },
                );
            }
        }
        inner.writer.blocking_lock().held = held;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, BackendError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(err)?
    }
}

impl SearchIndex for TantivyIndex {
    fn ensure(&self) -> BoxFuture<'_, Result<bool, BackendError>> {
        let empty = self.inner.reader.searcher().num_docs() == 0;
        futures::future::ready(Ok(self.inner.created || empty)).boxed()
    }

    fn apply<'a>(
        &'a self,
        event: &'a CatalogEvent,
    ) -> BoxFuture<'a, Result<Applied, BackendError>> {
        let event = event.clone();
        async move { self.blocking(move |inner| inner.apply(&event)).await }.boxed()
    }

    fn search<'a>(
        &'a self,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchResult, BackendError>> {
        let query = query.clone();
        async move { self.blocking(move |inner| inner.search(&query)).await }.boxed()
    }

    fn suggest<'a>(
        &'a self,
        query: &'a SuggestQuery,
    ) -> BoxFuture<'a, Result<Vec<Suggestion>, BackendError>> {
        let query = query.clone();
        async move { self.blocking(move |inner| inner.suggest(&query)).await }.boxed()
    }

    fn reindex<'a>(
        &'a self,
        catalog: &'a dyn CatalogRepo,
    ) -> BoxFuture<'a, Result<u64, BackendError>> {
        async move {
            // Hold the writer for the whole rebuild: events wait and are applied after it.
            let mut w = self.inner.writer.clone().lock_owned().await;
            let mut products = Vec::new();
            let mut after: Option<ProductId> = None;
            loop {
                let page = catalog.page(after.as_ref(), 500).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                products.extend(page);
            }
            let inner = self.inner.clone();
            let count = products.len() as u64;
            tokio::task::spawn_blocking(move || -> Result<(), BackendError> {
                // Tombstones and stubs stay; the stock is the newer of the index's and the
                // catalog's.
                let mut held: HashMap<String, Held> = w
                    .held
                    .iter()
                    .filter(|(_, h)| !h.live)
                    .map(|(k, h)| (k.clone(), h.clone()))
                    .collect();
                let rebuilt = (|| {
                    w.writer.delete_all_documents().map_err(err)?;
                    for mut p in products {
                        let before = w.held.get(p.id.as_str()).and_then(|h| h.stock.clone());
                        p.availability = Availability::newest(before, p.availability.take());
                        w.writer.add_document(inner.product_doc(&p)?).map_err(err)?;
                        held.insert(
                            p.id.as_str().to_string(),
                            Held {
                                version: p.version,
                                live: true,
                                stock: p.availability,
                            },
                        );
                    }
                    for (id, h) in &held {
                        if !h.live {
                            w.writer.add_document(inner.tombstone(id, h)).map_err(err)?;
                        }
                    }
                    w.writer.commit().map_err(err)?;
                    Ok::<_, BackendError>(())
                })();
                if let Err(e) = rebuilt {
                    let _ = w.writer.rollback();
                    return Err(e);
                }
                w.held = held;
                // Visible before the writer is released (the next writer reads the index).
                inner.reader.reload().map_err(err)
            })
            .await
            .map_err(err)??;
            Ok(count)
        }
        .boxed()
    }

    fn apply_stock<'a>(
        &'a self,
        reports: &'a [StockChanged],
    ) -> BoxFuture<'a, Result<Applied, BackendError>> {
        let reports = reports.to_vec();
        async move {
            self.blocking(move |inner| inner.apply_stock(&reports))
                .await
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        let path = self.inner.path.clone();
        async move {
            let meta = tokio::fs::metadata(path.join("meta.json"))
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if meta.is_file() {
                Ok(())
            } else {
                Err(format!("{} is not an index", path.display()))
            }
        }
        .boxed()
    }
}
