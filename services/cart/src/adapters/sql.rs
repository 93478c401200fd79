//! The one SQL implementation of [`CartRepo`](crate::ports::CartRepo), instantiated for
//! MySQL/MariaDB and SQLite: the statements are portable (`?` placeholders, no upserts), so
//! the two adapters differ only in how they connect and in how [`CartRepo::clear`] learns
//! the version it wrote.
//!
//! A cart is one row: its lines are a JSON array in `lines_json` (the domain's own serde
//! form, validated again when read), because a cart is always read and written whole. A save
//! is then one statement, which compares and bumps `version` and replaces the lines at once:
//! atomic without a transaction, one database round trip instead of a transaction's four or
//! more.

/// Implements `CartRepo` for `$repo`, a struct with a `pool: $pool` field and an inherent
/// `clear_lines(&self, user_id, at_millis) -> Result<Option<u64>, sqlx::Error>`.
macro_rules! sql_cart_repo {
    ($repo:ty, $backend:expr) => {
        use chrono::{DateTime, Utc};
        use futures::FutureExt as _;
        use futures::future::BoxFuture;

        use crate::domain::{Cart, CartLine};
        use crate::ports::{BackendError, CartRepo, Result, SaveError};

        fn err(e: impl std::fmt::Display + 'static) -> BackendError {
            BackendError::new($backend, e)
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
                    let row: Option<(i64, i64, String)> = sqlx::query_as(
                        "SELECT version, updated_at, lines_json FROM carts WHERE user_id = ?",
                    )
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?;
                    let Some((version, updated_at, lines)) = row else {
                        return Ok(None);
                    };
                    // The types validate as they deserialize: a row edited by hand into
                    // something the domain refuses is an error, never a cart.
                    let lines: Vec<CartLine> = serde_json::from_str(&lines)
                        .map_err(|e| err(format!("cart of {user_id}: bad lines_json: {e}")))?;
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
                    let next = version_to_db(cart.version + 1)?;
                    let lines = serde_json::to_string(&cart.lines).map_err(err)?;
                    let at = cart.updated_at.timestamp_millis();
                    let claimed = if cart.version == 0 {
                        let inserted = sqlx::query(
                            "INSERT INTO carts (user_id, version, updated_at, lines_json) \
                             VALUES (?, ?, ?, ?)",
                        )
                        .bind(&cart.user_id)
                        .bind(next)
                        .bind(at)
                        .bind(&lines)
                        .execute(&self.pool)
                        .await;
                        match inserted {
                            Ok(_) => true,
                            // Another request created the cart first.
                            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => false,
                            Err(e) => return Err(save_error(e)),
                        }
                    } else {
                        sqlx::query(
                            "UPDATE carts SET version = ?, updated_at = ?, lines_json = ? \
                             WHERE user_id = ? AND version = ?",
                        )
                        .bind(next)
                        .bind(at)
                        .bind(&lines)
                        .bind(&cart.user_id)
                        .bind(version_to_db(cart.version)?)
                        .execute(&self.pool)
                        .await
                        .map_err(save_error)?
                        .rows_affected()
                            == 1
                    };
                    if !claimed {
                        return Err(SaveError::Conflict);
                    }
                    Ok(cart.version + 1)
                }
                .boxed()
            }

            fn clear<'a>(
                &'a self,
                user_id: &'a str,
                at: DateTime<Utc>,
            ) -> BoxFuture<'a, Result<Option<u64>>> {
                async move {
                    let version = self
                        .clear_lines(user_id, at.timestamp_millis())
                        .await
                        .map_err(err)?;
                    Ok(version)
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
