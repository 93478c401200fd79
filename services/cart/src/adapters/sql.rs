//! The one SQL implementation of [`CartRepo`](crate::ports::CartRepo), instantiated for
//! MySQL/MariaDB and SQLite: the statements are portable (`?` placeholders, no upserts), so
//! the two adapters differ only in how they connect.
//!
//! Saving is optimistic: the cart row's `version` is compared and bumped in the same
//! statement, then the lines are replaced, all in one transaction. Loading is one `LEFT JOIN`
//! statement, so it sees a consistent cart without a transaction.

/// Implements `CartRepo` for `$repo`, a struct with a `pool: $pool` field.
macro_rules! sql_cart_repo {
    ($repo:ty, $row:ty, $backend:expr) => {
        use chrono::{DateTime, Utc};
        use futures::FutureExt as _;
        use futures::future::BoxFuture;
        use sqlx::Row as _;
        use storefront_search::domain::{Currency, Money, ProductId, Sku};

        use crate::domain::{Cart, CartLine, Quantity};
        use crate::ports::{BackendError, CartRepo, Result, SaveError};

        fn err(e: impl std::fmt::Display + 'static) -> BackendError {
            BackendError::new($backend, e)
        }

        fn line_from_row(row: &$row) -> Result<CartLine> {
            let product_id: String = row.try_get("product_id").map_err(err)?;
            let sku: String = row.try_get("sku").map_err(err)?;
            let currency: String = row.try_get("currency").map_err(err)?;
            let quantity: i64 = row.try_get("quantity").map_err(err)?;
            Ok(CartLine {
                product_id: ProductId::parse(&product_id).map_err(err)?,
                sku: Sku::parse(&sku).map_err(err)?,
                title: row.try_get("title").map_err(err)?,
                unit_price: Money {
                    minor: row.try_get("unit_price_minor").map_err(err)?,
                    currency: Currency::parse(&currency).map_err(err)?,
                },
                quantity: Quantity::parse(quantity).map_err(err)?,
            })
        }

        fn millis_to_time(ms: i64) -> Result<DateTime<Utc>> {
            DateTime::<Utc>::from_timestamp_millis(ms)
                .ok_or_else(|| err(format!("bad timestamp {ms}")))
        }

        /// A deadlock or serialization failure (SQLSTATE 40001) is a conflict: the caller
        /// reloads and retries.
        fn save_error(e: sqlx::Error) -> SaveError {
            match &e {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("40001") => {
                    SaveError::Conflict
                }
                _ => SaveError::Backend(err(e)),
            }
        }

        fn version_to_db(v: u64) -> Result<i64> {
            i64::try_from(v).map_err(err)
        }

        impl CartRepo for $repo {
            fn load<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<Option<Cart>>> {
                async move {
                    let rows = sqlx::query(
                        "SELECT c.version, c.updated_at, l.product_id, l.sku, l.title, \
                         l.unit_price_minor, l.currency, l.quantity \
                         FROM carts c LEFT JOIN cart_lines l ON l.user_id = c.user_id \
                         WHERE c.user_id = ? ORDER BY l.line_no",
                    )
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(err)?;
                    let Some(first) = rows.first() else {
                        return Ok(None);
                    };
                    let version: i64 = first.try_get("version").map_err(err)?;
                    let updated_at: i64 = first.try_get("updated_at").map_err(err)?;
                    let mut lines = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let product: Option<String> = row.try_get("product_id").map_err(err)?;
                        if product.is_some() {
                            lines.push(line_from_row(row)?);
                        }
                    }
                    Ok(Some(Cart {
                        user_id: user_id.to_string(),
                        lines,
                        version: u64::try_from(version).map_err(err)?,
                        updated_at: millis_to_time(updated_at)?,
                    }))
                }
                .boxed()
            }

            fn save<'a>(&'a self, cart: &'a Cart) -> BoxFuture<'a, Result<u64, SaveError>> {
                async move {
                    let next = cart.version + 1;
                    let mut tx = self.pool.begin().await.map_err(err)?;
                    let claimed = if cart.version == 0 {
                        let inserted = sqlx::query(
                            "INSERT INTO carts (user_id, version, updated_at) VALUES (?, ?, ?)",
                        )
                        .bind(&cart.user_id)
                        .bind(version_to_db(next)?)
                        .bind(cart.updated_at.timestamp_millis())
                        .execute(&mut *tx)
                        .await;
                        match inserted {
                            Ok(_) => true,
                            // Another request created the cart first.
                            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => false,
                            Err(e) => return Err(save_error(e)),
                        }
                    } else {
                        sqlx::query(
                            "UPDATE carts SET version = ?, updated_at = ? \
                             WHERE user_id = ? AND version = ?",
                        )
                        .bind(version_to_db(next)?)
                        .bind(cart.updated_at.timestamp_millis())
                        .bind(&cart.user_id)
                        .bind(version_to_db(cart.version)?)
                        .execute(&mut *tx)
                        .await
                        .map_err(save_error)?
                        .rows_affected()
                            == 1
                    };
                    if !claimed {
                        return Err(SaveError::Conflict);
                    }
                    sqlx::query("DELETE FROM cart_lines WHERE user_id = ?")
                        .bind(&cart.user_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(save_error)?;
                    for (i, line) in cart.lines.iter().enumerate() {
                        sqlx::query(
                            "INSERT INTO cart_lines (user_id, product_id, line_no, sku, title, \
                             unit_price_minor, currency, quantity) \
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        )
                        .bind(&cart.user_id)
                        .bind(line.product_id.as_str())
                        .bind(i64::try_from(i).map_err(err)?)
                        .bind(line.sku.as_str())
                        .bind(&line.title)
                        .bind(line.unit_price.minor)
                        .bind(line.unit_price.currency.as_str())
                        .bind(i64::from(line.quantity.get()))
                        .execute(&mut *tx)
                        .await
                        .map_err(save_error)?;
                    }
                    tx.commit().await.map_err(save_error)?;
                    Ok(next)
                }
                .boxed()
            }

            fn check(&self) -> BoxFuture<'_, Result<()>> {
                async move {
                    sqlx::query("SELECT COUNT(*) FROM carts WHERE user_id = ''")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(err)?;
                    Ok(())
                }
                .boxed()
            }
        }
    };
}

pub(crate) use sql_cart_repo;
