//! The catalog in SQLite for `storefront up`: products as JSON documents, the outbox table
//! written in the same transaction as the change, and the reported stock (joined on reads).

use std::path::Path;

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::{Row, SqlitePool};
use storefront_kit::event::Envelope;

use crate::domain::{Availability, Product, ProductId, StockChanged};
use crate::ports::{BackendError, CatalogRepo, PendingEvent, WriteError};

const NAME: &str = "sqlite";

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(NAME, e)
}

pub struct SqliteCatalog {
    pool: SqlitePool,
}

impl SqliteCatalog {
    /// Opens (creating when missing) the catalog file and applies the migrations.
    pub async fn open(path: &Path) -> Result<Self, BackendError> {
        let pool = storefront_kit::sql::open_sqlite(path, |o| o)
            .await
            .map_err(err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(err)?;
        Ok(Self { pool })
    }

    async fn current_version(&self, id: &ProductId) -> Result<Option<u64>, BackendError> {
        let row = sqlx::query("SELECT version FROM products WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.map(|r| u64::try_from(r.get::<i64, _>(0)).unwrap_or(0)))
    }

    /// The write error for a statement that failed: [`WriteError::SkuTaken`] (naming the
    /// product holding the SKU) when it broke the SKU's uniqueness, else a backend error.
    async fn write_failed(&self, e: sqlx::Error, product: &Product) -> WriteError {
        let taken = e
            .as_database_error()
            .is_some_and(|d| d.is_unique_violation() && d.message().contains("products.sku"));
        if !taken {
            return WriteError::Backend(err(e));
        }
        let held_by = sqlx::query("SELECT id FROM products WHERE sku = ? AND id <> ?")
            .bind(product.sku.as_str())
            .bind(product.id.as_str())
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten()
            .and_then(|r| ProductId::parse(r.get::<&str, _>(0)).ok());
        WriteError::SkuTaken {
            sku: product.sku.as_str().to_string(),
            held_by,
        }
    }

    async fn mismatch(&self, id: &ProductId, expected: u64) -> WriteError {
        match self.current_version(id).await {
            Ok(Some(current)) => WriteError::VersionMismatch {
                id: id.clone(),
                expected,
                current,
            },
            Ok(None) => WriteError::NotFound(id.clone()),
            Err(e) => WriteError::Backend(e),
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Products are read as `doc, available, as_of` (the stock columns of a `LEFT JOIN stock`).
macro_rules! select_products {
    ($tail:literal) => {
        concat!(
            "SELECT p.doc, s.available, s.as_of FROM products p ",
            "LEFT JOIN stock s ON s.product_id = p.id ",
            $tail
        )
    };
}

fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<Product, BackendError> {
    let mut product: Product = serde_json::from_str(row.get::<&str, _>(0)).map_err(err)?;
    product.availability = match (row.get::<Option<i64>, _>(1), row.get::<Option<i64>, _>(2)) {
        (Some(available), Some(as_of)) => Some(Availability::from_stamp(available, as_of)),
        _ => None,
    };
    Ok(product)
}

impl CatalogRepo for SqliteCatalog {
    fn create<'a>(
        &'a self,
        product: &'a Product,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        async move {
            let doc = serde_json::to_string(product).map_err(err)?;
            let envelope = serde_json::to_string(event).map_err(err)?;
            let mut tx = self.pool.begin().await.map_err(err)?;
            let inserted = sqlx::query(
                "INSERT INTO products (id, version, doc, sku) VALUES (?, ?, ?, ?) \
                 ON CONFLICT(id) DO NOTHING",
            )
            .bind(product.id.as_str())
            .bind(to_i64(product.version))
            .bind(doc)
            .bind(product.sku.as_str())
            .execute(&mut *tx)
            .await;
            let inserted = match inserted {
                Ok(done) => done,
                Err(e) => {
                    drop(tx);
                    return Err(self.write_failed(e, product).await);
                }
            };
            if inserted.rows_affected() == 0 {
                return Err(WriteError::Exists(product.id.clone()));
            }
            sqlx::query("INSERT INTO outbox (product_id, event_id, envelope) VALUES (?, ?, ?)")
                .bind(product.id.as_str())
                .bind(event.id.to_string())
                .bind(envelope)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            Ok(())
        }
        .boxed()
    }

    fn update<'a>(
        &'a self,
        product: &'a Product,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        async move {
            let expected = product.version.saturating_sub(1);
            let doc = serde_json::to_string(product).map_err(err)?;
            let envelope = serde_json::to_string(event).map_err(err)?;
            let mut tx = self.pool.begin().await.map_err(err)?;
            let updated = sqlx::query(
                "UPDATE products SET version = ?, doc = ?, sku = ? WHERE id = ? AND version = ?",
            )
            .bind(to_i64(product.version))
            .bind(doc)
            .bind(product.sku.as_str())
            .bind(product.id.as_str())
            .bind(to_i64(expected))
            .execute(&mut *tx)
            .await;
            let updated = match updated {
                Ok(done) => done,
                Err(e) => {
                    drop(tx);
                    return Err(self.write_failed(e, product).await);
                }
            };
            if updated.rows_affected() == 0 {
                drop(tx);
                return Err(self.mismatch(&product.id, expected).await);
            }
            sqlx::query("INSERT INTO outbox (product_id, event_id, envelope) VALUES (?, ?, ?)")
                .bind(product.id.as_str())
                .bind(event.id.to_string())
                .bind(envelope)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
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
            let envelope = serde_json::to_string(event).map_err(err)?;
            let mut tx = self.pool.begin().await.map_err(err)?;
            let deleted = sqlx::query("DELETE FROM products WHERE id = ? AND version = ?")
                .bind(id.as_str())
                .bind(to_i64(version))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            if deleted.rows_affected() == 0 {
                drop(tx);
                return Err(self.mismatch(id, version).await);
            }
            sqlx::query("INSERT INTO outbox (product_id, event_id, envelope) VALUES (?, ?, ?)")
                .bind(id.as_str())
                .bind(event.id.to_string())
                .bind(envelope)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            Ok(())
        }
        .boxed()
    }

    fn get<'a>(
        &'a self,
        id: &'a ProductId,
    ) -> BoxFuture<'a, Result<Option<Product>, BackendError>> {
        async move {
            let row = sqlx::query(select_products!("WHERE p.id = ?"))
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
            row.as_ref().map(decode).transpose()
        }
        .boxed()
    }

    fn set_stock<'a>(
        &'a self,
        reports: &'a [StockChanged],
    ) -> BoxFuture<'a, Result<usize, BackendError>> {
        async move {
            let mut tx = self.pool.begin().await.map_err(err)?;
            let mut stored = 0;
            for report in reports {
                stored += sqlx::query(
                    "INSERT INTO stock (product_id, available, as_of) VALUES (?, ?, ?) \
                 ON CONFLICT(product_id) DO UPDATE \
                 SET available = excluded.available, as_of = excluded.as_of \
                 WHERE excluded.as_of > stock.as_of",
                )
                .bind(report.product_id.as_str())
                .bind(report.availability.available)
                .bind(report.availability.stamp())
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected();
            }
            tx.commit().await.map_err(err)?;
            Ok(usize::try_from(stored).unwrap_or(usize::MAX))
        }
        .boxed()
    }

    fn page<'a>(
        &'a self,
        after: Option<&'a ProductId>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Product>, BackendError>> {
        async move {
            let rows = sqlx::query(select_products!("WHERE p.id > ? ORDER BY p.id LIMIT ?"))
                .bind(after.map_or("", ProductId::as_str))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
            rows.iter().map(decode).collect()
        }
        .boxed()
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, BackendError>> {
        async move {
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM products")
                .fetch_one(&self.pool)
                .await
                .map_err(err)?
                .get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        }
        .boxed()
    }

    fn import<'a>(&'a self, products: &'a [Product]) -> BoxFuture<'a, Result<(), BackendError>> {
        async move {
            let mut tx = self.pool.begin().await.map_err(err)?;
            for p in products {
                sqlx::query(
                    "INSERT INTO products (id, version, doc, sku) VALUES (?, ?, ?, ?) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(p.id.as_str())
                .bind(to_i64(p.version))
                .bind(serde_json::to_string(p).map_err(err)?)
                .bind(p.sku.as_str())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            }
            tx.commit().await.map_err(err)
        }
        .boxed()
    }

    fn pending(&self, limit: u32) -> BoxFuture<'_, Result<Vec<PendingEvent>, BackendError>> {
        async move {
            let rows = sqlx::query("SELECT product_id, envelope FROM outbox ORDER BY seq LIMIT ?")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
            rows.iter()
                .map(|r| {
                    Ok(PendingEvent {
                        product_id: ProductId::parse(r.get::<&str, _>(0)).map_err(err)?,
                        envelope: serde_json::from_str(r.get::<&str, _>(1)).map_err(err)?,
                        receipt: String::new(),
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn acknowledge<'a>(
        &'a self,
        event: &'a PendingEvent,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        async move {
            sqlx::query("DELETE FROM outbox WHERE event_id = ?")
                .bind(event.envelope.id.to_string())
                .execute(&self.pool)
                .await
                .map_err(err)?;
            Ok(())
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            sqlx::query("SELECT 1")
                .fetch_one(&self.pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}
