//! The catalog in MongoDB (FerretDB in the local stack, which has no multi-document
//! transactions). The outbox lives inside each product document: a write and its pending
//! event are one single-document update, so they are atomic without a transaction.
//!
//! Document layout (collection `products`):
//! `{ _id, product: {...}, sku, version, deleted, has_pending, pending_events: [{id, envelope}] }`.
//! `sku` (the product's, on live documents only) is under a sparse unique index, so a SKU
//! names one live product. A delete leaves a tombstone (`deleted: true`, no `sku`) until its
//! event is published; the relay then removes it.
//!
//! The stock the order service reports is in collection `stock`:
//! `{ _id: product id, available, as_of }` (`as_of` in microseconds); only a newer report
//! replaces one, in a single conditional upsert.

use futures::FutureExt;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use storefront_kit::event::Envelope;

use crate::domain::{Availability, Product, ProductId, StockChanged};
use crate::ports::{BackendError, CatalogRepo, PendingEvent, WriteError};

const NAME: &str = "mongodb";
/// Database used when the URL names none.
pub const DEFAULT_DATABASE: &str = "storefront";

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(NAME, e)
}

pub struct MongoCatalog {
    db: Database,
    products: Collection<Document>,
    stock: Collection<Document>,
    /// Serializes this process's writes to product documents. MongoDB updates one document
    /// atomically, but FerretDB 1.x (SQLite backend) applies an update by reading the document,
    /// changing it in memory and writing it back whole, so two concurrent updates of one
    /// document (an admin write and the relay's acknowledgement) can lose one of them.
    writes: tokio::sync::Mutex<()>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn product_doc(p: &Product) -> Result<Document, BackendError> {
    let json = serde_json::to_value(p).map_err(err)?;
    match bson::to_bson(&json).map_err(err)? {
        Bson::Document(d) => Ok(d),
        other => Err(err(format!("product is not a document: {other}"))),
    }
}

fn product_from(doc: &Document) -> Result<Product, BackendError> {
    let inner = doc.get_document("product").map_err(err)?;
    let json = Bson::Document(inner.clone()).into_relaxed_extjson();
    serde_json::from_value(json).map_err(err)
}

fn pending_entry(event: &Envelope) -> Result<Document, BackendError> {
    Ok(doc! {
        "id": event.id.to_string(),
        "envelope": serde_json::to_string(event).map_err(err)?,
    })
}

impl MongoCatalog {
    /// Connects (lazily: the driver connects on first use) to the database the URL names, or
    /// [`DEFAULT_DATABASE`].
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let mut options = ClientOptions::parse(url).await.map_err(err)?;
        options.app_name = Some("storefront-search".into());
        options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
        options.connect_timeout = Some(std::time::Duration::from_secs(3));
        let name = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let client = Client::with_options(options).map_err(err)?;
        let db = client.database(&name);
        let products = db.collection::<Document>("products");
        let stock = db.collection::<Document>("stock");
        Ok(Self {
            db,
            products,
            stock,
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// Creates the index the relay scans with and the SKU's unique index, and gives live
    /// documents stored before the SKU had a field of its own theirs (idempotent). A document
    /// whose SKU another already has (possible before the index) is left without the field
    /// and logged; nothing is dropped.
    pub async fn migrate(&self) -> Result<(), BackendError> {
        let pending = mongodb::IndexModel::builder()
            .keys(doc! { "has_pending": 1 })
            .build();
        self.products.create_index(pending).await.map_err(err)?;
        let sku = mongodb::IndexModel::builder()
            .keys(doc! { "sku": 1 })
            .options(
                mongodb::options::IndexOptions::builder()
                    .name("sku_unique".to_string())
                    .unique(true)
                    .sparse(true)
                    .build(),
            )
            .build();
        self.products.create_index(sku).await.map_err(err)?;
        let unset: Vec<Document> = self
            .products
            .find(doc! { "deleted": false, "sku": { "$exists": false } })
            .await
            .map_err(err)?
            .try_collect()
            .await
            .map_err(err)?;
        for old in &unset {
            let (Ok(id), Ok(sku)) = (
                old.get_str("_id"),
                old.get_document("product").and_then(|p| p.get_str("sku")),
            ) else {
                continue;
            };
            match self
                .products
                .update_one(doc! { "_id": id }, doc! { "$set": { "sku": sku } })
                .await
            {
                Ok(_) => {}
                Err(e) if breaks_unique(&e) => tracing::warn!(
                    product = id,
                    sku,
                    "another product has this SKU; this one stays out of the SKU index until \
                     a write gives it a SKU of its own"
                ),
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    /// [`WriteError::SkuTaken`] for `product`'s SKU, naming the live product that holds it.
    async fn sku_taken(&self, product: &Product) -> WriteError {
        let held_by = self
            .products
            .find_one(doc! {
                "sku": product.sku.as_str(),
                "_id": { "$ne": product.id.as_str() },
                "deleted": false,
            })
            .await
            .ok()
            .flatten()
            .and_then(|d| {
                d.get_str("_id")
                    .ok()
                    .and_then(|id| ProductId::parse(id).ok())
            });
        WriteError::SkuTaken {
            sku: product.sku.as_str().to_string(),
            held_by,
        }
    }

    /// `products` with the stock held for them.
    async fn with_stock(&self, mut products: Vec<Product>) -> Result<Vec<Product>, BackendError> {
        if products.is_empty() {
            return Ok(products);
        }
        let ids: Vec<&str> = products.iter().map(|p| p.id.as_str()).collect();
        let rows: Vec<Document> = self
            .stock
            .find(doc! { "_id": { "$in": ids } })
            .await
            .map_err(err)?
            .try_collect()
            .await
            .map_err(err)?;
        let mut held = std::collections::HashMap::new();
        for row in &rows {
            if let (Ok(id), Ok(available), Ok(as_of)) = (
                row.get_str("_id"),
                row.get_i64("available"),
                row.get_i64("as_of"),
            ) {
                held.insert(id.to_string(), Availability::from_stamp(available, as_of));
            }
        }
        for p in &mut products {
            p.availability = held.remove(p.id.as_str());
        }
        Ok(products)
    }

    async fn mismatch(&self, id: &ProductId, expected: u64) -> WriteError {
        match self
            .products
            .find_one(doc! { "_id": id.as_str(), "deleted": false })
            .await
        {
            Ok(Some(d)) => WriteError::VersionMismatch {
                id: id.clone(),
                expected,
                current: u64::try_from(d.get_i64("version").unwrap_or(0)).unwrap_or(0),
            },
            Ok(None) => WriteError::NotFound(id.clone()),
            Err(e) => WriteError::Backend(err(e)),
        }
    }
}

/// Whether a write broke a unique index. MongoDB says so with code 11000; FerretDB 1.x does
/// for inserts, but fails an update that would break one with code 1 and SQLite's own words.
fn breaks_unique(e: &mongodb::error::Error) -> bool {
    is_duplicate(e) || e.to_string().contains("UNIQUE constraint failed")
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|es| es.iter().all(|w| w.code == 11000)),
        _ => false,
    }
}

impl CatalogRepo for MongoCatalog {
    fn create<'a>(
        &'a self,
        product: &'a Product,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        async move {
            let _serialized = self.writes.lock().await;
            let doc = doc! {
                "_id": product.id.as_str(),
                "product": product_doc(product)?,
                "sku": product.sku.as_str(),
                "version": to_i64(product.version),
                "deleted": false,
                "has_pending": true,
                "pending_events": [pending_entry(event)?],
            };
            match self.products.insert_one(doc).await {
                Ok(_) => Ok(()),
                // The id or the SKU: FerretDB does not say which index, so look.
                Err(e) if breaks_unique(&e) => {
                    let by_id = self
                        .products
                        .find_one(doc! { "_id": product.id.as_str() })
                        .await
                        .map_err(err)?;
                    Err(match by_id {
                        Some(_) => WriteError::Exists(product.id.clone()),
                        None => self.sku_taken(product).await,
                    })
                }
                Err(e) => Err(WriteError::Backend(err(e))),
            }
        }
        .boxed()
    }

    fn update<'a>(
        &'a self,
        product: &'a Product,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        async move {
            let _serialized = self.writes.lock().await;
            let expected = product.version.saturating_sub(1);
            let result = self
                .products
                .update_one(
                    doc! { "_id": product.id.as_str(), "version": to_i64(expected), "deleted": false },
                    doc! {
                        "$set": {
                            "product": product_doc(product)?,
                            "sku": product.sku.as_str(),
                            "version": to_i64(product.version),
                            "has_pending": true,
                        },
                        "$push": { "pending_events": pending_entry(event)? },
                    },
                )
                .await;
            let result = match result {
                Ok(done) => done,
                // The id cannot change, so the index broken is the SKU's.
                Err(e) if breaks_unique(&e) => return Err(self.sku_taken(product).await),
                Err(e) => return Err(WriteError::Backend(err(e))),
            };
            if result.matched_count == 0 {
                return Err(self.mismatch(&product.id, expected).await);
            }
            Ok(())
        }
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        id: &'a ProductId,
        version: u64,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        async move {
            let _serialized = self.writes.lock().await;
            let result = self
                .products
                .update_one(
                    doc! { "_id": id.as_str(), "version": to_i64(version), "deleted": false },
                    doc! {
                        "$set": {
                            "deleted": true,
                            "version": to_i64(version + 1),
                            "has_pending": true,
                        },
                        // The SKU is free again at once, not when the relay removes this.
                        "$unset": { "sku": "" },
                        "$push": { "pending_events": pending_entry(event)? },
                    },
                )
                .await
                .map_err(err)?;
            if result.matched_count == 0 {
                return Err(self.mismatch(id, version).await);
            }
            Ok(())
        }
        .boxed()
    }

    fn get<'a>(
        &'a self,
        id: &'a ProductId,
    ) -> BoxFuture<'a, Result<Option<Product>, BackendError>> {
        async move {
            let found = self
                .products
                .find_one(doc! { "_id": id.as_str(), "deleted": false })
                .await
                .map_err(err)?;
            let Some(product) = found.as_ref().map(product_from).transpose()? else {
                return Ok(None);
            };
            Ok(self.with_stock(vec![product]).await?.pop())
        }
        .boxed()
    }

    fn set_stock<'a>(
        &'a self,
        reports: &'a [StockChanged],
    ) -> BoxFuture<'a, Result<usize, BackendError>> {
        async move {
            // One read for the whole batch; then the products with no row yet get theirs in
            // one insert, and the others one conditional update each.
            let ids: Vec<&str> = reports.iter().map(|r| r.product_id.as_str()).collect();
            let held: std::collections::HashMap<String, i64> = self
                .stock
                .find(doc! { "_id": { "$in": ids } })
                .await
                .map_err(err)?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(err)?
                .iter()
                .filter_map(|d| {
                    Some((d.get_str("_id").ok()?.to_string(), d.get_i64("as_of").ok()?))
                })
                .collect();
            let mut fresh: Vec<&StockChanged> = Vec::new();
            let mut updates: Vec<&StockChanged> = Vec::new();
            for report in reports {
                let id = report.product_id.as_str();
                match held.get(id) {
                    Some(&at) if at >= report.availability.stamp() => {}
                    Some(_) => updates.push(report),
                    None => match fresh.iter().position(|f| f.product_id == report.product_id) {
                        // Twice in one batch: the first one goes in, the other is an update.
                        Some(_) => updates.push(report),
                        None => fresh.push(report),
                    },
                }
            }
            let mut stored = 0;
            if !fresh.is_empty() {
                let docs: Vec<Document> = fresh
                    .iter()
                    .map(|r| {
                        doc! {
                            "_id": r.product_id.as_str(),
                            "available": r.availability.available,
                            "as_of": r.availability.stamp(),
                        }
                    })
                    .collect();
                match self.stock.insert_many(docs).ordered(false).await {
                    Ok(r) => stored += r.inserted_ids.len(),
                    // Some rows appeared meanwhile: those go the conditional way.
                    Err(e) if is_duplicate(&e) => {
                        let failed: Vec<usize> = match e.kind.as_ref() {
                            ErrorKind::InsertMany(m) => {
                                m.write_errors.iter().flatten().map(|w| w.index).collect()
                            }
                            _ => (0..fresh.len()).collect(),
                        };
                        stored += fresh.len().saturating_sub(failed.len());
                        updates.extend(failed.iter().filter_map(|&i| fresh.get(i)).copied());
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            for report in updates {
                let stamp = report.availability.stamp();
                // Matches only an older row; with none, the upsert inserts one. A row as new
                // or newer makes the upsert's insert collide with its `_id`: not stored.
                let result = self
                    .stock
                    .update_one(
                        doc! { "_id": report.product_id.as_str(), "as_of": { "$lt": stamp } },
                        doc! { "$set": {
                            "available": report.availability.available,
                            "as_of": stamp,
                        } },
                    )
                    .upsert(true)
                    .await;
                match result {
                    Ok(r) if r.matched_count > 0 || r.upserted_id.is_some() => stored += 1,
                    Ok(_) => {}
                    Err(e) if is_duplicate(&e) => {}
                    Err(e) => return Err(err(e)),
                }
            }
            Ok(stored)
        }
        .boxed()
    }

    fn page<'a>(
        &'a self,
        after: Option<&'a ProductId>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Product>, BackendError>> {
        async move {
            let filter = match after {
                Some(a) => doc! { "deleted": false, "_id": { "$gt": a.as_str() } },
                None => doc! { "deleted": false },
            };
            let docs: Vec<Document> = self
                .products
                .find(filter)
                .sort(doc! { "_id": 1 })
                .limit(i64::from(limit))
                .await
                .map_err(err)?
                .try_collect()
                .await
                .map_err(err)?;
            let products = docs
                .iter()
                .map(product_from)
                .collect::<Result<Vec<_>, _>>()?;
            self.with_stock(products).await
        }
        .boxed()
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, BackendError>> {
        async move {
            self.products
                .count_documents(doc! { "deleted": false })
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn import<'a>(&'a self, products: &'a [Product]) -> BoxFuture<'a, Result<(), BackendError>> {
        async move {
            for chunk in products.chunks(500) {
                let docs = chunk
                    .iter()
                    .map(|p| {
                        Ok(doc! {
                            "_id": p.id.as_str(),
                            "product": product_doc(p)?,
                            "sku": p.sku.as_str(),
                            "version": to_i64(p.version),
                            "deleted": false,
                            "has_pending": false,
                            "pending_events": [],
                        })
                    })
                    .collect::<Result<Vec<_>, BackendError>>()?;
                match self.products.insert_many(docs).ordered(false).await {
                    Ok(_) => {}
                    Err(e) if is_duplicate(&e) => {}
                    Err(e) => return Err(err(e)),
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn pending(&self, limit: u32) -> BoxFuture<'_, Result<Vec<PendingEvent>, BackendError>> {
        async move {
            let docs: Vec<Document> = self
                .products
                .find(doc! { "has_pending": true })
                .limit(i64::from(limit))
                .await
                .map_err(err)?
                .try_collect()
                .await
                .map_err(err)?;
            let mut out = Vec::new();
            for d in docs {
                let id = ProductId::parse(d.get_str("_id").map_err(err)?).map_err(err)?;
                let Ok(events) = d.get_array("pending_events") else {
                    continue;
                };
                for e in events {
                    let Some(entry) = e.as_document() else {
                        continue;
                    };
                    let raw = entry.get_str("envelope").map_err(err)?;
                    out.push(PendingEvent {
                        product_id: id.clone(),
                        envelope: serde_json::from_str(raw).map_err(err)?,
                        receipt: raw.to_string(),
                    });
                }
                if out.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
                    break;
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn acknowledge<'a>(
        &'a self,
        event: &'a PendingEvent,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        async move {
            let _serialized = self.writes.lock().await;
            let id = event.product_id.as_str();
            self.products
                .update_one(
                    doc! { "_id": id },
                    // The whole entry, exactly as stored (FerretDB pulls by equality).
                    doc! { "$pull": { "pending_events": {
                        "id": event.envelope.id.to_string(),
                        "envelope": &event.receipt,
                    } } },
                )
                .await
                .map_err(err)?;
            // Only when nothing was pushed meanwhile (the filter is checked atomically).
            self.products
                .update_one(
                    doc! { "_id": id, "pending_events": { "$size": 0 } },
                    doc! { "$set": { "has_pending": false } },
                )
                .await
                .map_err(err)?;
            self.products
                .delete_one(doc! { "_id": id, "deleted": true, "has_pending": false })
                .await
                .map_err(err)?;
            Ok(())
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            self.db
                .run_command(doc! { "ping": 1 })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}
