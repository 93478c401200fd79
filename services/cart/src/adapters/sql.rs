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

        use crate::domain::{Cart, CartLine, PlacedOrder};
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

        fn version_from_db(v: i64) -> Result<u64> {
            u64::try_from(v).map_err(err)
        }

        /// Attempts of taking one order out of a cart that keeps changing meanwhile.
        const TAKE_OUT_ATTEMPTS: u32 = 12;

        impl $repo {
            /// Takes one order out of its cart as it is now (a cart changed since the order
            /// read it): read, take out, write if the version is still the one read.
            /// The version written, `None` when there was nothing to do.
            async fn take_out_one(&self, order: &PlacedOrder, at: i64) -> Result<Option<u64>> {
                for _ in 0..TAKE_OUT_ATTEMPTS {
                    let row: Option<(i64, i64, String)> = sqlx::query_as(
                        "SELECT version, ordered_through, lines_json FROM carts WHERE user_id = ?",
                    )
                    .bind(&order.user_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?;
                    let Some((version, through, lines)) = row else {
                        return Ok(None);
                    };
                    if version_from_db(through)? >= order.cart_version {
                        return Ok(None);
                    }
                    let lines: Vec<CartLine> = serde_json::from_str(&lines).map_err(|e| {
                        err(format!("cart of {}: bad lines_json: {e}", order.user_id))
                    })?;
                    let mut cart = Cart {
                        user_id: order.user_id.clone(),
                        lines,
                        version: version_from_db(version)?,
                        updated_at: millis_to_time(at)?,
                    };
                    cart.take_out(&order.lines);
                    let written = sqlx::query(
                        "UPDATE carts SET version = ?, ordered_through = ?, lines_json = ?, \
                         updated_at = ? WHERE user_id = ? AND version = ?",
                    )
                    .bind(version + 1)
                    .bind(version_to_db(order.cart_version)?)
                    .bind(serde_json::to_string(&cart.lines).map_err(err)?)
                    .bind(at)
                    .bind(&order.user_id)
                    .bind(version)
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
                    if written.rows_affected() == 1 {
                        return Ok(Some(cart.version + 1));
                    }
                }
                Err(err(format!(
                    "cart of {} kept changing while an order was taken out",
                    order.user_id
                )))
            }
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
                        version: version_from_db(version)?,
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

            fn take_out<'a>(
                &'a self,
                orders: &'a [PlacedOrder],
                at: DateTime<Utc>,
            ) -> BoxFuture<'a, Result<Vec<(String, u64)>>> {
                async move {
                    if orders.is_empty() {
                        return Ok(Vec::new());
                    }
                    let at = at.timestamp_millis();
                    let mut users: Vec<&str> = orders.iter().map(|o| o.user_id.as_str()).collect();
                    users.sort_unstable();
                    users.dedup();
                    let in_users = vec!["?"; users.len()].join(", ");
                    // The common case, every cart still at the version its order read, is
                    // one statement for the whole batch. `ordered_through` is assigned before
                    // `version`, so both engines give it the version the order read.
                    let pairs = vec!["(user_id = ? AND version = ?)"; orders.len()].join(" OR ");
                    let sql = format!(
                        "UPDATE carts SET ordered_through = version, version = version + 1, \
                         lines_json = '[]', updated_at = ? \
                         WHERE user_id IN ({in_users}) AND ({pairs})"
                    );
                    let mut emptied = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(at);
                    for user in &users {
                        emptied = emptied.bind(*user);
                    }
                    for o in orders {
                        emptied = emptied
                            .bind(o.user_id.as_str())
                            .bind(version_to_db(o.cart_version)?);
                    }
                    emptied.execute(&self.pool).await.map_err(err)?;

                    let sql = format!(
                        "SELECT user_id, version, ordered_through FROM carts \
                         WHERE user_id IN ({in_users})"
                    );
                    let mut now = sqlx::query_as::<_, (String, i64, i64)>(sqlx::AssertSqlSafe(sql));
                    for user in &users {
                        now = now.bind(*user);
                    }
                    let mut carts = std::collections::HashMap::new();
                    for (user, version, through) in now.fetch_all(&self.pool).await.map_err(err)? {
                        carts.insert(user, (version_from_db(version)?, version_from_db(through)?));
                    }
                    // Per user, the orders in the order they were placed.
                    let mut sorted: Vec<&PlacedOrder> = orders.iter().collect();
                    sorted.sort_by(|a, b| {
                        (a.user_id.as_str(), a.cart_version)
                            .cmp(&(b.user_id.as_str(), b.cart_version))
                    });
                    let mut changed: Vec<(String, u64)> = Vec::new();
                    for order in sorted {
                        let Some(&(version, through)) = carts.get(&order.user_id) else {
                            continue;
                        };
                        let written = if through < order.cart_version {
                            // The cart changed after the order read it.
                            self.take_out_one(order, at).await?
                        } else {
                            // Emptied above (or already by an earlier delivery of the event:
                            // dropping its cached copy again is harmless).
                            (through == order.cart_version).then_some(version)
                        };
                        if let Some(v) = written {
                            match changed.iter_mut().find(|(u, _)| u == &order.user_id) {
                                Some(entry) => entry.1 = entry.1.max(v),
                                None => changed.push((order.user_id.clone(), v)),
                            }
                        }
                    }
                    Ok(changed)
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
