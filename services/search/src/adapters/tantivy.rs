//! The search index in Tantivy for `storefront up`, with the same query features as the
//! Elasticsearch adapter: fuzzy terms (`AUTO` fuzziness), filters, exact facet counts, sorts,
//! highlights and prefix suggestions (per-word edge n-grams, as the Elasticsearch mapping).
//!
//! Versions work as Elasticsearch's external versioning: a change older than or equal to the
//! indexed version is ignored, and deletes leave a tombstone document (`live = 0`) that keeps
//! the deleted version, so replays are harmless across restarts too.
//! A reindex replaces every document in one commit: searches see the old index until then.

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
    CatalogEvent, Facets, Highlights, Hit, Product, ProductId, SearchQuery, SearchResult, Sort,
    SuggestQuery, Suggestion,
};
use crate::ports::{Applied, BackendError, CatalogRepo, SearchIndex};

const NAME: &str = "tantivy";
const WRITER_HEAP: usize = 50_000_000;
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

struct Writer {
    writer: IndexWriter,
    /// Indexed version per product id, tombstones included.
    versions: HashMap<String, (u64, bool)>,
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
    fn product_doc(&self, p: &Product) -> Result<TantivyDocument, BackendError> {
        let f = self.fields;
        let mut doc = TantivyDocument::default();
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

    fn tombstone(&self, id: &str, version: u64) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_text(self.fields.id, id);
        doc.add_u64(self.fields.live, 0);
        doc.add_u64(self.fields.version, version);
        doc
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

    fn apply(&self, event: &CatalogEvent) -> Result<Applied, BackendError> {
        let mut w = self.writer.blocking_lock();
        let id = event.product_id().as_str();
        if w.versions
            .get(id)
            .is_some_and(|(v, _)| *v >= event.version())
        {
            return Ok(Applied::Stale);
        }
        w.writer
            .delete_term(Term::from_field_text(self.fields.id, id));
        let (doc, live) = match event {
            CatalogEvent::Upserted(p) => (self.product_doc(p)?, true),
            CatalogEvent::Deleted(d) => (self.tombstone(id, d.version), false),
        };
        w.writer.add_document(doc).map_err(err)?;
        w.writer.commit().map_err(err)?;
        w.versions.insert(id.to_string(), (event.version(), live));
        drop(w);
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
        let exists = dir.join("meta.json").exists();
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
        let writer = index.writer(WRITER_HEAP).map_err(err)?;
        let inner = Inner {
            path: dir.to_path_buf(),
            fields,
            reader,
            writer: Arc::new(Mutex::new(Writer {
                writer,
                versions: HashMap::new(),
            })),
            created: !exists,
        };
        // Load the indexed versions (tombstones included).
        let searcher = inner.reader.searcher();
        let all = searcher
            .search(
                &AllQuery,
                &TopDocs::with_limit(searcher.num_docs().max(1) as usize),
            )
            .map_err(err)?;
        let mut versions = HashMap::new();
        for (_, addr) in all {
            let doc: TantivyDocument = searcher.doc(addr).map_err(err)?;
            let id = doc.get_first(fields.id).and_then(|v| v.as_str());
            let version = doc.get_first(fields.version).and_then(|v| v.as_u64());
            let live = doc.get_first(fields.product).is_some();
            if let (Some(id), Some(version)) = (id, version) {
                versions.insert(id.to_string(), (version, live));
            }
        }
        inner.writer.blocking_lock().versions = versions;
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
                let mut versions: HashMap<String, (u64, bool)> = w
                    .versions
                    .iter()
                    .filter(|(_, (_, live))| !live)
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                let rebuilt = (|| {
                    w.writer.delete_all_documents().map_err(err)?;
                    for p in &products {
                        w.writer.add_document(inner.product_doc(p)?).map_err(err)?;
                        versions.insert(p.id.as_str().to_string(), (p.version, true));
                    }
                    for (id, (version, live)) in &versions {
                        if !live {
                            w.writer
                                .add_document(inner.tombstone(id, *version))
                                .map_err(err)?;
                        }
                    }
                    w.writer.commit().map_err(err)?;
                    Ok::<_, BackendError>(())
                })();
                if let Err(e) = rebuilt {
                    let _ = w.writer.rollback();
                    return Err(e);
                }
                w.versions = versions;
                Ok(())
            })
            .await
            .map_err(err)??;
            self.inner.reader.reload().map_err(err)?;
            Ok(count)
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
