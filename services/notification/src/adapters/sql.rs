//! The one SQL implementation of [`NotificationStore`](crate::ports::NotificationStore),
//! instantiated for MySQL/MariaDB and SQLite (portable statements, no upserts).

/// Implements `NotificationStore` for `$store`, a struct with a `pool` field.
macro_rules! sql_notification_store {
    ($store:ty, $row:ty, $backend:expr) => {
        use std::sync::Arc;

        use chrono::{DateTime, Utc};
        use futures::FutureExt as _;
        use futures::future::BoxFuture;
        use sqlx::Row as _;
        use storefront_kit::bus::Bus;
        use storefront_kit::event::Envelope;
        use storefront_kit::outbox::{self, Relay};
        use tokio::sync::Notify;
        use tokio_util::sync::CancellationToken;
        use uuid::Uuid;

        use crate::domain::OrderSnapshot;
        use crate::ports::{BackendError, NotificationStore, Result, SendStatus, SentEntry};

        fn err(e: impl std::fmt::Display + 'static) -> BackendError {
            BackendError::new($backend, e)
        }

        const ENTRY_COLUMNS: &str = "event_id, event_type, template, order_id, recipient, \
            subject, status, attempts, error, at";
        const INSERT_ENTRY: &str = "INSERT INTO sent_log (event_id, event_type, template, \
            order_id, recipient, subject, status, attempts, error, at) \
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

        fn entry_from_row(row: &$row) -> Result<SentEntry> {
            let id: String = row.try_get("event_id").map_err(err)?;
            let status: String = row.try_get("status").map_err(err)?;
            Ok(SentEntry {
                event_id: Uuid::parse_str(&id).map_err(err)?,
                event_type: row.try_get("event_type").map_err(err)?,
                template: row.try_get("template").map_err(err)?,
                order_id: row.try_get("order_id").map_err(err)?,
                recipient: row.try_get("recipient").map_err(err)?,
                subject: row.try_get("subject").map_err(err)?,
                status: if status == "sent" { SendStatus::Sent } else { SendStatus::Failed },
                attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(err)?)
                    .unwrap_or(0),
                error: row.try_get("error").map_err(err)?,
                at: DateTime::from_timestamp_millis(row.try_get("at").map_err(err)?)
                    .unwrap_or_default(),
            })
        }

        fn truncate(s: &str, max: usize) -> String {
            s.chars().take(max).collect()
        }

        macro_rules! bind_entry {
            ($q:expr, $e:expr) => {
                $q.bind($e.event_id.to_string())
                    .bind(truncate(&$e.event_type, 100))
                    .bind(truncate(&$e.template, 50))
                    .bind(truncate(&$e.order_id, 64))
                    .bind(truncate(&$e.recipient, 254))
                    .bind(truncate(&$e.subject, 500))
                    .bind($e.status.as_str())
                    .bind(i64::from($e.attempts))
                    .bind($e.error.as_deref().map(|e| truncate(e, 2000)))
                    .bind($e.at.timestamp_millis())
            };
        }

        impl NotificationStore for $store {
            fn check(&self) -> BoxFuture<'_, Result<()>> {
                async move {
                    sqlx::query("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(err)?;
                    Ok(())
                }
                .boxed()
            }

            fn remember_order<'a>(&'a self, order: &'a OrderSnapshot) -> BoxFuture<'a, Result<()>> {
                async move {
                    let snapshot = serde_json::to_string(order).map_err(err)?;
                    let now = Utc::now().timestamp_millis();
                    for _ in 0..2 {
                        let updated = sqlx::query(
                            "UPDATE known_orders SET snapshot = ?, updated_at = ? WHERE order_id = ?",
                        )
                        .bind(&snapshot)
                        .bind(now)
                        .bind(&order.order_id)
                        .execute(&self.pool)
                        .await
                        .map_err(err)?;
                        if updated.rows_affected() > 0 {
                            return Ok(());
                        }
                        let inserted = sqlx::query(
                            "INSERT INTO known_orders (order_id, snapshot, updated_at) VALUES (?, ?, ?)",
                        )
                        .bind(&order.order_id)
                        .bind(&snapshot)
                        .bind(now)
                        .execute(&self.pool)
                        .await;
                        match inserted {
                            Ok(_) => return Ok(()),
                            // Inserted concurrently: update it on the next round.
                            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {}
                            Err(e) => return Err(err(e)),
                        }
                    }
                    Ok(())
                }
                .boxed()
            }

            fn order<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<Option<OrderSnapshot>>> {
                async move {
                    let row = sqlx::query("SELECT snapshot FROM known_orders WHERE order_id = ?")
                        .bind(order_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(err)?;
                    match row {
                        Some(r) => {
                            let s: String = r.try_get("snapshot").map_err(err)?;
                            Ok(Some(serde_json::from_str(&s).map_err(err)?))
                        }
                        None => Ok(None),
                    }
                }
                .boxed()
            }

            fn logged(&self, event_id: Uuid) -> BoxFuture<'_, Result<Option<SentEntry>>> {
                async move {
                    let q = format!("SELECT {ENTRY_COLUMNS} FROM sent_log WHERE event_id = ?");
                    sqlx::query(sqlx::AssertSqlSafe(q))
                        .bind(event_id.to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(err)?
                        .as_ref()
                        .map(entry_from_row)
                        .transpose()
                }
                .boxed()
            }

            fn record_sent<'a>(&'a self, entry: &'a SentEntry) -> BoxFuture<'a, Result<()>> {
                async move {
                    match bind_entry!(sqlx::query(INSERT_ENTRY), entry)
                        .execute(&self.pool)
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(()),
                        Err(e) => Err(err(e)),
                    }
                }
                .boxed()
            }

            fn record_failed<'a>(
                &'a self,
                entry: &'a SentEntry,
                topic: &'a str,
                dead_letter: &'a Envelope,
            ) -> BoxFuture<'a, Result<()>> {
                async move {
                    let mut tx = self.pool.begin().await.map_err(err)?;
                    match bind_entry!(sqlx::query(INSERT_ENTRY), entry)
                        .execute(&mut *tx)
                        .await
                    {
                        Ok(_) => {}
                        // Logged before: its dead letter was written then.
                        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => return Ok(()),
                        Err(e) => return Err(err(e)),
                    }
                    outbox::enqueue(&mut tx, topic, dead_letter).await.map_err(err)?;
                    tx.commit().await.map_err(err)
                }
                .boxed()
            }

            fn recent(&self, limit: u32) -> BoxFuture<'_, Result<Vec<SentEntry>>> {
                async move {
                    let q = format!(
                        "SELECT {ENTRY_COLUMNS} FROM sent_log ORDER BY at DESC, event_id DESC LIMIT ?"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(q))
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(err)?;
                    rows.iter().map(entry_from_row).collect()
                }
                .boxed()
            }

            fn relay(
                &self,
                bus: Bus,
                wake: Arc<Notify>,
                stop: CancellationToken,
            ) -> BoxFuture<'static, ()> {
                Relay::new(self.pool.clone(), bus)
                    .with_wake(wake)
                    .run(stop)
                    .boxed()
            }
        }
    };
}

pub(crate) use sql_notification_store;
