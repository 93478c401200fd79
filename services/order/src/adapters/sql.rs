//! The one SQL implementation of [`OrderRepo`](crate::ports::OrderRepo), instantiated for
//! MySQL/MariaDB and SQLite: the statements are portable (`?` placeholders; "insert when
//! missing" is the one dialect difference, passed in), so the two adapters differ only in how
//! they connect.
//!
//! Concurrency: stock is reserved by a conditional `UPDATE ... WHERE available >= ?` whose
//! affected-row count says whether the reservation held, products in a fixed order (by id) so
//! two orders never lock them crosswise; status changes are conditional on the status read.
//! Deadlocks and lock timeouts (MariaDB 1213/1205, SQLite busy) retry the whole transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How often a transaction is retried after a deadlock, lock timeout or lost race.
pub const MAX_ATTEMPTS: u32 = 8;

/// Whether a transaction failed for a reason that a retry can fix.
pub fn retryable(e: &sqlx::Error) -> bool {
    // Not PoolTimedOut: an unreachable database answers 503 at once instead of holding the
    // request through every attempt.
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1213 | 1205);
    }
    // SQLite: BUSY (5) and its extended codes, LOCKED (6).
    matches!(
        db.code().as_deref(),
        Some("5" | "6" | "261" | "517" | "262")
    )
}

/// A short randomised pause before retry `attempt`.
pub fn retry_pause(attempt: u32) -> Duration {
    let jitter = u64::from(rand_jitter()) % 10;
    Duration::from_millis(5 * u64::from(attempt.min(6)) + jitter)
}

fn rand_jitter() -> u32 {
    // Low bits of a fresh v4 uuid: no extra dependency for a pause.
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from(b[0]) | (u32::from(b[1]) << 8)
}

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Implements `OrderRepo` for `$repo`, a struct with `pool: Pool<$db>` and `topic: String`.
macro_rules! sql_order_repo {
    ($repo:ty, $db:ty, $row:ty, $backend:expr, $insert_ignore:literal, $for_update:literal) => {
        use futures::FutureExt as _;
        use futures::future::BoxFuture;
        use sqlx::Row as _;
        use storefront_kit::event::Envelope;
        use storefront_kit::outbox::{self, OutboxError};
        use uuid::Uuid;

        use crate::adapters::sql::{
            MAX_ATTEMPTS, from_millis, millis, retry_pause, retryable,
        };
        use crate::domain::events;
        use crate::domain::{Currency, Money, Order, OrderLine, OrderStatus, Plan, plan};
        use crate::ports::{
            BackendError, IdempotencyRecord, OrderRepo, PlaceError, Result, StatusChange,
            Transition,
        };

        type Conn = <$db as sqlx::Database>::Connection;

        fn err(e: impl std::fmt::Display + 'static) -> BackendError {
            BackendError::new($backend, e)
        }

        /// Failures inside a transaction attempt.
        enum TxError {
            Sql(sqlx::Error),
            OutOfStock(Vec<String>),
            KeyTaken,
            /// The row changed between read and conditional write: run again.
            Raced,
        }

        impl From<sqlx::Error> for TxError {
            fn from(e: sqlx::Error) -> Self {
                Self::Sql(e)
            }
        }

        impl From<OutboxError> for TxError {
            fn from(e: OutboxError) -> Self {
                match e {
                    OutboxError::Sql(s) => Self::Sql(s),
                    other => Self::Sql(sqlx::Error::Protocol(other.to_string())),
                }
            }
        }

        /// Runs `attempt` until it succeeds, fails for good or runs out of attempts.
        async fn with_retry<T, F, Fut>(mut attempt: F) -> std::result::Result<T, TxError>
        where
            F: FnMut() -> Fut,
            Fut: std::future::Future<Output = std::result::Result<T, TxError>>,
        {
            let mut n = 0;
            loop {
                n += 1;
                match attempt().await {
                    Err(TxError::Sql(e)) if n < MAX_ATTEMPTS && retryable(&e) => {
                        metrics::counter!("order_tx_retries_total", "reason" => "lock")
                            .increment(1);
                        tokio::time::sleep(retry_pause(n)).await;
                    }
                    Err(TxError::Raced) if n < MAX_ATTEMPTS => {
                        metrics::counter!("order_tx_retries_total", "reason" => "race")
                            .increment(1);
                    }
                    Err(TxError::Raced) => {
                        return Err(TxError::Sql(sqlx::Error::Protocol(
                            "status kept changing".into(),
                        )));
                    }
                    other => return other,
                }
            }
        }

        fn tx_backend(e: TxError) -> BackendError {
            match e {
                TxError::Sql(e) => err(e),
                TxError::OutOfStock(p) => err(format!("out of stock {p:?}")),
                TxError::KeyTaken => err("idempotency key taken"),
                TxError::Raced => err("raced"),
            }
        }

        fn json_col<T: serde::de::DeserializeOwned>(
            row: &$row,
            col: &str,
        ) -> std::result::Result<T, sqlx::Error> {
            let text: String = row.try_get(col)?;
            serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        }

        fn money(minor: i64, currency: &str) -> std::result::Result<Money, sqlx::Error> {
            let currency = Currency::parse(currency)
                .map_err(|e| sqlx::Error::Decode(e.into()))?;
            Ok(Money { minor, currency })
        }

        const ORDER_COLUMNS: &str = "id, user_id, status, customer, shipping, partner, \
            item_count, total_minor, currency, placed_at, updated_at";

        async fn load_lines(
            conn: &mut Conn,
            order_id: &str,
        ) -> std::result::Result<Vec<OrderLine>, sqlx::Error> {
            let rows = sqlx::query(
                "SELECT product_id, sku, title, quantity, unit_minor, line_minor, currency \
                 FROM order_lines WHERE order_id = ? ORDER BY line_no",
            )
            .bind(order_id)
            .fetch_all(&mut *conn)
            .await?;
            rows.iter()
                .map(|r| {
                    let currency: String = r.try_get("currency")?;
                    Ok(OrderLine {
                        product_id: r.try_get("product_id")?,
                        sku: r.try_get("sku")?,
                        title: r.try_get("title")?,
                        quantity: u32::try_from(r.try_get::<i64, _>("quantity")?)
                            .unwrap_or_default(),
                        unit_price: money(r.try_get("unit_minor")?, &currency)?,
                        line_total: money(r.try_get("line_minor")?, &currency)?,
                    })
                })
                .collect()
        }

        async fn order_from_row(
            conn: &mut Conn,
            row: &$row,
        ) -> std::result::Result<Order, sqlx::Error> {
            let id: String = row.try_get("id")?;
            let status: String = row.try_get("status")?;
            let currency: String = row.try_get("currency")?;
            let partner: Option<String> = row.try_get("partner")?;
            let lines = load_lines(conn, &id).await?;
            Ok(Order {
                user_id: row.try_get("user_id")?,
                status: OrderStatus::parse(&status).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown status {status}").into())
                })?,
                customer: json_col(row, "customer")?,
                shipping: json_col(row, "shipping")?,
                partner: partner
                    .map(|p| serde_json::from_str(&p))
                    .transpose()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                lines,
                item_count: u32::try_from(row.try_get::<i64, _>("item_count")?)
                    .unwrap_or_default(),
                total: money(row.try_get("total_minor")?, &currency)?,
                placed_at: from_millis(row.try_get("placed_at")?),
                updated_at: from_millis(row.try_get("updated_at")?),
                id,
            })
        }

        async fn load_order(
            conn: &mut Conn,
            id: &str,
        ) -> std::result::Result<Option<Order>, sqlx::Error> {
            let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            match row {
                Some(r) => Ok(Some(order_from_row(conn, &r).await?)),
                None => Ok(None),
            }
        }

        async fn available(
            conn: &mut Conn,
            product_id: &str,
        ) -> std::result::Result<i64, sqlx::Error> {
            sqlx::query_scalar("SELECT available FROM stock WHERE product_id = ?")
                .bind(product_id)
                .fetch_one(&mut *conn)
                .await
        }

        impl $repo {
            async fn place_once(
                &self,
                order: &Order,
                idem: &IdempotencyRecord,
                events: &[Envelope],
            ) -> std::result::Result<(), TxError> {
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (user_id, idem_key, request_hash, status, \
                     response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(&idem.user_id)
                .bind(&idem.key)
                .bind(&idem.request_hash)
                .bind(i64::from(idem.status))
                .bind(&idem.response)
                .bind(millis(order.placed_at))
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        return Err(TxError::KeyTaken);
                    }
                    Err(e) => return Err(e.into()),
                }
                sqlx::query(
                    "INSERT INTO orders (id, user_id, status, customer, shipping, partner, \
                     item_count, total_minor, currency, placed_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                )
                .bind(&order.id)
                .bind(&order.user_id)
                .bind(order.status.as_str())
                .bind(serde_json::to_string(&order.customer).unwrap_or_default())
                .bind(serde_json::to_string(&order.shipping).unwrap_or_default())
                .bind(i64::from(order.item_count))
                .bind(order.total.minor)
                .bind(order.total.currency.as_str())
                .bind(millis(order.placed_at))
                .bind(millis(order.updated_at))
                .execute(&mut *tx)
                .await?;
                // All lines with one statement.
                let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; order.lines.len()].join(", ");
                let sql = format!(
                    "INSERT INTO order_lines (order_id, line_no, product_id, sku, title, \
                     quantity, unit_minor, line_minor, currency) VALUES {values}"
                );
                let mut lines = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (n, l) in order.lines.iter().enumerate() {
                    lines = lines
                        .bind(&order.id)
                        .bind(i64::try_from(n).unwrap_or_default())
                        .bind(&l.product_id)
                        .bind(&l.sku)
                        .bind(&l.title)
                        .bind(i64::from(l.quantity))
                        .bind(l.unit_price.minor)
                        .bind(l.line_total.minor)
                        .bind(l.unit_price.currency.as_str());
                }
                lines.execute(&mut *tx).await?;
                // Reserve last: the hot stock rows stay locked only for the three statements
                // from here to the commit. The locking read takes them in product order (no
                // crosswise waits), tells what is short, and gives the counts left.
                let mut wanted: std::collections::BTreeMap<&str, i64> = Default::default();
                for l in &order.lines {
                    *wanted.entry(l.product_id.as_str()).or_default() += i64::from(l.quantity);
                }
                let marks = vec!["?"; wanted.len()].join(", ");
                let sql = format!(
                    "SELECT product_id, available FROM stock WHERE product_id IN ({marks}) \
                     ORDER BY product_id{}",
                    $for_update
                );
                let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
                for product in wanted.keys() {
                    q = q.bind(*product);
                }
                let have: std::collections::BTreeMap<String, i64> =
                    q.fetch_all(&mut *tx).await?.into_iter().collect();
                let short: Vec<String> = wanted
                    .iter()
                    .filter(|(p, n)| have.get(**p).is_none_or(|a| a < *n))
                    .map(|(p, _)| (*p).to_string())
                    .collect();
                if !short.is_empty() {
                    return Err(TxError::OutOfStock(short));
                }
                let cases = vec!["WHEN ? THEN ?"; wanted.len()].join(" ");
                let sql = format!(
                    "UPDATE stock SET available = available - CASE product_id {cases} END, \
                     updated_at = ? WHERE product_id IN ({marks})"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (product, quantity) in &wanted {
                    q = q.bind(*product).bind(*quantity);
                }
                q = q.bind(millis(order.placed_at));
                for product in wanted.keys() {
                    q = q.bind(*product);
                }
                q.execute(&mut *tx).await?;
                // The order's events and the new stock counts, with one statement.
                let mut all: Vec<Envelope> = events.to_vec();
                for (product, quantity) in &wanted {
                    let left = have.get(*product).copied().unwrap_or_default() - quantity;
                    all.push(events::stock_changed(product, left));
                }
                outbox::enqueue_all(&mut tx, &self.topic, &all).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn change_once(
                &self,
                c: &StatusChange,
            ) -> std::result::Result<Transition, TxError> {
                let mut tx = self.pool.begin().await?;
                if let Some(id) = c.event_id
                    && !outbox::mark_processed(&mut tx, id).await?
                {
                    return Ok(Transition::Duplicate);
                }
                let Some(before) = load_order(&mut *tx, &c.order_id).await? else {
                    tx.commit().await?;
                    return Ok(Transition::NotFound);
                };
                if c.owner.as_ref().is_some_and(|o| *o != before.user_id) {
                    return Ok(Transition::NotFound);
                }
                match plan(before.status, c.to, c.lenient) {
                    Plan::Noop => {
                        tx.commit().await?;
                        return Ok(Transition::Noop(before));
                    }
                    Plan::Illegal => {
                        tx.commit().await?;
                        return Ok(Transition::Illegal(before));
                    }
                    Plan::Apply => {}
                }
                let now = chrono::Utc::now();
                let partner = c.partner.clone().or_else(|| before.partner.clone());
                let done = sqlx::query(
                    "UPDATE orders SET status = ?, partner = ?, updated_at = ? \
                     WHERE id = ? AND status = ?",
                )
                .bind(c.to.as_str())
                .bind(
                    partner
                        .as_ref()
                        .map(|p| serde_json::to_string(p).unwrap_or_default()),
                )
                .bind(millis(now))
                .bind(&before.id)
                .bind(before.status.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(TxError::Raced);
                }
                let event = events::status_event(
                    &before,
                    c.to,
                    c.actor,
                    c.partner.as_ref(),
                    c.reason.as_deref(),
                );
                outbox::enqueue(&mut tx, &self.topic, &event).await?;
                if c.to == OrderStatus::Cancelled {
                    let mut back: std::collections::BTreeMap<&str, i64> = Default::default();
                    for l in &before.lines {
                        *back.entry(l.product_id.as_str()).or_default() +=
                            i64::from(l.quantity);
                    }
                    for (product, quantity) in &back {
                        sqlx::query(
                            "UPDATE stock SET available = available + ?, updated_at = ? \
                             WHERE product_id = ?",
                        )
                        .bind(*quantity)
                        .bind(millis(now))
                        .bind(*product)
                        .execute(&mut *tx)
                        .await?;
                        if let Ok(left) = available(&mut *tx, product).await {
                            outbox::enqueue(
                                &mut tx,
                                &self.topic,
                                &events::stock_changed(product, left),
                            )
                            .await?;
                        }
                    }
                }
                tx.commit().await?;
                let mut after = before;
                after.status = c.to;
                after.partner = partner;
                after.updated_at = from_millis(millis(now));
                Ok(Transition::Applied(after))
            }

            async fn set_stock_once(
                &self,
                product_id: &str,
                available_now: i64,
            ) -> std::result::Result<(), TxError> {
                let now = millis(chrono::Utc::now());
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(concat!(
                    $insert_ignore,
                    " INTO stock (product_id, available, updated_at) VALUES (?, ?, ?)"
                ))
                .bind(product_id)
                .bind(available_now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    sqlx::query(
                        "UPDATE stock SET available = ?, updated_at = ? WHERE product_id = ?",
                    )
                    .bind(available_now)
                    .bind(now)
                    .bind(product_id)
                    .execute(&mut *tx)
                    .await?;
                }
                outbox::enqueue(
                    &mut tx,
                    &self.topic,
                    &events::stock_changed(product_id, available_now),
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn init_stock_once(
                &self,
                event_id: Uuid,
                product_id: &str,
                initial: i64,
            ) -> std::result::Result<bool, TxError> {
                let mut tx = self.pool.begin().await?;
                if !outbox::mark_processed(&mut tx, event_id).await? {
                    return Ok(false);
                }
                let inserted = sqlx::query(concat!(
                    $insert_ignore,
                    " INTO stock (product_id, available, updated_at) VALUES (?, ?, ?)"
                ))
                .bind(product_id)
                .bind(initial)
                .bind(millis(chrono::Utc::now()))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    outbox::enqueue(
                        &mut tx,
                        &self.topic,
                        &events::stock_changed(product_id, initial),
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(inserted)
            }
        }

        impl OrderRepo for $repo {
            fn check(&self) -> BoxFuture<'_, Result<()>> {
                async move {
                    sqlx::query("SELECT COUNT(*) FROM stock WHERE product_id = ''")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(err)?;
                    Ok(())
                }
                .boxed()
            }

            fn idempotency<'a>(
                &'a self,
                user_id: &'a str,
                key: &'a str,
            ) -> BoxFuture<'a, Result<Option<IdempotencyRecord>>> {
                async move {
                    let row = sqlx::query(
                        "SELECT request_hash, status, response FROM idempotency_keys \
                         WHERE user_id = ? AND idem_key = ?",
                    )
                    .bind(user_id)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?;
                    let Some(r) = row else { return Ok(None) };
                    Ok(Some(IdempotencyRecord {
                        user_id: user_id.to_string(),
                        key: key.to_string(),
                        request_hash: r.try_get("request_hash").map_err(err)?,
                        status: u16::try_from(r.try_get::<i64, _>("status").map_err(err)?)
                            .unwrap_or(500),
                        response: r.try_get("response").map_err(err)?,
                    }))
                }
                .boxed()
            }

            fn place<'a>(
                &'a self,
                order: &'a Order,
                idem: &'a IdempotencyRecord,
                events: &'a [Envelope],
            ) -> BoxFuture<'a, Result<(), PlaceError>> {
                async move {
                    match with_retry(|| self.place_once(order, idem, events)).await {
                        Ok(()) => Ok(()),
                        Err(TxError::OutOfStock(p)) => Err(PlaceError::OutOfStock(p)),
                        Err(TxError::KeyTaken) => Err(PlaceError::KeyTaken),
                        Err(e) => Err(PlaceError::Backend(tx_backend(e))),
                    }
                }
                .boxed()
            }

            fn order<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Order>>> {
                async move {
                    let mut conn = self.pool.acquire().await.map_err(err)?;
                    load_order(&mut *conn, id).await.map_err(err)
                }
                .boxed()
            }

            fn orders_of<'a>(
                &'a self,
                user_id: &'a str,
                before: Option<&'a str>,
                limit: u32,
            ) -> BoxFuture<'a, Result<Vec<Order>>> {
                async move {
                    let mut conn = self.pool.acquire().await.map_err(err)?;
                    let sql = format!(
                        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ? AND id < ? \
                         ORDER BY id DESC LIMIT ?"
                    );
                    // UUIDv7 ids sort by time; the largest UUID sorts after every id.
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(user_id)
                        .bind(before.unwrap_or("ffffffff-ffff-ffff-ffff-ffffffffffff"))
                        .bind(i64::from(limit))
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(err)?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in &rows {
                        out.push(order_from_row(&mut *conn, r).await.map_err(err)?);
                    }
                    Ok(out)
                }
                .boxed()
            }

            fn change_status<'a>(
                &'a self,
                change: &'a StatusChange,
            ) -> BoxFuture<'a, Result<Transition>> {
                async move {
                    with_retry(|| self.change_once(change))
                        .await
                        .map_err(tx_backend)
                }
                .boxed()
            }

            fn stock<'a>(&'a self, product_id: &'a str) -> BoxFuture<'a, Result<Option<i64>>> {
                async move {
                    sqlx::query_scalar("SELECT available FROM stock WHERE product_id = ?")
                        .bind(product_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(err)
                }
                .boxed()
            }

            fn set_stock<'a>(
                &'a self,
                product_id: &'a str,
                available: i64,
            ) -> BoxFuture<'a, Result<()>> {
                async move {
                    with_retry(|| self.set_stock_once(product_id, available))
                        .await
                        .map_err(tx_backend)
                }
                .boxed()
            }

            fn init_stock<'a>(
                &'a self,
                event_id: Uuid,
                product_id: &'a str,
                available: i64,
            ) -> BoxFuture<'a, Result<bool>> {
                async move {
                    with_retry(|| self.init_stock_once(event_id, product_id, available))
                        .await
                        .map_err(tx_backend)
                }
                .boxed()
            }
        }
    };
}

pub(crate) use sql_order_repo;
