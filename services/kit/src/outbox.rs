//! The transactional outbox: write a state change and the events it causes in ONE SQL
//! transaction, publish them afterwards; plus consumer-side dedupe.
//!
//! Works on MySQL/MariaDB ([`sqlx::MySql`]) and SQLite ([`sqlx::Sqlite`]), publishing through
//! [`Bus`] (Kafka or the in-process bus). Delivery is at-least-once: a row is marked sent only
//! after the bus acknowledged it, so a crash between commit and publish loses nothing (the
//! next relay publishes the row), and a crash between publish and mark publishes it twice —
//! consumers dedupe on the envelope id with [`mark_processed`].
//!
//! # Use
//!
//! ```ignore
//! use storefront_kit::outbox::{self, Relay};
//!
//! // Writer: state change + event in one transaction, then wake the relay.
//! let mut tx = pool.begin().await?;
//! sqlx::query("UPDATE orders SET status = ? WHERE id = ?").bind(..).execute(&mut *tx).await?;
//! outbox::enqueue(&mut tx, "orders.v1", &envelope).await?;
//! tx.commit().await?;
//! wake.notify_one();
//!
//! // Relay: one per service, spawned as a tracked worker.
//! let relay = Relay::new(pool.clone(), bus.clone()).with_wake(wake.clone());
//! platform.shutdown.spawn(relay.run(platform.shutdown.token()));
//!
//! // Consumer: effect + dedupe row in one transaction.
//! let mut tx = pool.begin().await?;
//! if outbox::mark_processed(&mut tx, envelope.id).await? {
//!     /* apply the effect in `tx` */
//! }
//! tx.commit().await?;
//! ```
//!
//! # Order
//!
//! Rows are handed to the bus in insertion order (`seq`), a batch at a time, and marked sent
//! once the bus acknowledged them (the Kafka producer is idempotent, so one partition keeps the
//! order it was given). Two transactions that touch the same
//! aggregate are serialised by the aggregate's row lock, so one aggregate's events keep their
//! order; events of unrelated aggregates may interleave. On MySQL only one relay per database
//! publishes at a time (a `GET_LOCK` named after the database, held for one batch), so several
//! replicas may run the relay safely.
//!
//! # DDL (copy exactly into each service's migrations)
//!
//! MySQL/MariaDB (`migrations/mysql`):
//!
//! ```sql
//! CREATE TABLE outbox (
//!     seq        BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
//!     event_id   CHAR(36)     NOT NULL,
//!     topic      VARCHAR(249) NOT NULL,
//!     event_key  VARCHAR(255) NOT NULL,
//!     event_type VARCHAR(100) NOT NULL,
//!     payload    MEDIUMTEXT   NOT NULL,
//!     created_at BIGINT       NOT NULL,
//!     sent_at    BIGINT       NULL,
//!     INDEX outbox_unsent (sent_at, seq)
//! ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
//!
//! CREATE TABLE processed_events (
//!     event_id     CHAR(36) NOT NULL PRIMARY KEY,
//!     processed_at BIGINT   NOT NULL,
//!     INDEX processed_events_at (processed_at)
//! ) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;
//! ```
//!
//! SQLite (`migrations/sqlite`):
//!
//! ```sql
//! CREATE TABLE outbox (
//!     seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
//!     event_id   TEXT    NOT NULL,
//!     topic      TEXT    NOT NULL,
//!     event_key  TEXT    NOT NULL,
//!     event_type TEXT    NOT NULL,
//!     payload    TEXT    NOT NULL,
//!     created_at INTEGER NOT NULL,
//!     sent_at    INTEGER NULL
//! );
//! CREATE INDEX outbox_unsent ON outbox (sent_at, seq);
//!
//! CREATE TABLE processed_events (
//!     event_id     TEXT    NOT NULL PRIMARY KEY,
//!     processed_at INTEGER NOT NULL
//! );
//! CREATE INDEX processed_events_at ON processed_events (processed_at);
//! ```
//!
//! Times are Unix milliseconds. The relay deletes sent rows after [`Relay::with_retention`]
//! (default 7 days) and dedupe rows after [`Relay::with_dedupe_retention`] (default 30
//! days), when it starts and every hour after.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::{Pool, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Bus, BusError, Record};
use crate::event::{Envelope, EnvelopeError};

/// The MySQL/MariaDB DDL of both tables (the same text as in the module docs).
pub const MYSQL_DDL: &str = "\
CREATE TABLE outbox (
    seq        BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id   CHAR(36)     NOT NULL,
    topic      VARCHAR(249) NOT NULL,
    event_key  VARCHAR(255) NOT NULL,
    event_type VARCHAR(100) NOT NULL,
    payload    MEDIUMTEXT   NOT NULL,
    created_at BIGINT       NOT NULL,
    sent_at    BIGINT       NULL,
    INDEX outbox_unsent (sent_at, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE processed_events (
    event_id     CHAR(36) NOT NULL PRIMARY KEY,
    processed_at BIGINT   NOT NULL,
    INDEX processed_events_at (processed_at)
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;
";

/// The SQLite DDL of both tables (the same text as in the module docs).
pub const SQLITE_DDL: &str = "\
CREATE TABLE outbox (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    event_key  TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER NULL
);
CREATE INDEX outbox_unsent ON outbox (sent_at, seq);

CREATE TABLE processed_events (
    event_id     TEXT    NOT NULL PRIMARY KEY,
    processed_at INTEGER NOT NULL
);
CREATE INDEX processed_events_at ON processed_events (processed_at);
";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("outbox publish: {0}")]
    Bus(#[from] BusError),
    #[error("outbox event: {0}")]
    Encode(#[from] EnvelopeError),
}

/// One row to insert (what [`enqueue`] derives from an envelope).
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRow {
    pub event_id: String,
    pub topic: String,
    pub key: String,
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
}

impl NewRow {
    fn from_envelope<T: Serialize>(
        topic: &str,
        envelope: &Envelope<T>,
    ) -> Result<Self, OutboxError> {
        let payload = serde_json::to_string(envelope).map_err(EnvelopeError::Decode)?;
        Ok(Self {
            event_id: envelope.id.to_string(),
            topic: topic.to_string(),
            key: envelope.subject.clone(),
            event_type: envelope.event_type.clone(),
            payload,
            created_at: Utc::now().timestamp_millis(),
        })
    }
}

/// One unsent row as read by the relay.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRow {
    pub seq: i64,
    pub topic: String,
    pub key: String,
    pub event_type: String,
    pub payload: String,
}

impl PendingRow {
    /// The bus record of this row: key = subject, header `event-type`.
    pub fn record(&self) -> Record {
        Record {
            topic: self.topic.clone(),
            key: self.key.clone(),
            payload: self.payload.as_bytes().to_vec(),
            headers: vec![("event-type".into(), self.event_type.clone())],
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for sqlx::MySql {}
    impl Sealed for sqlx::Sqlite {}
}

/// The SQL engines the outbox runs on: [`sqlx::MySql`] and [`sqlx::Sqlite`] (sealed).
pub trait OutboxDb: sqlx::Database + sealed::Sealed {
    /// Inserts `rows` with one statement.
    #[doc(hidden)]
    fn insert_rows<'c>(
        conn: &'c mut Self::Connection,
        rows: &'c [NewRow],
    ) -> BoxFuture<'c, Result<(), sqlx::Error>>;

    #[doc(hidden)]
    fn insert_processed<'c>(
        conn: &'c mut Self::Connection,
        event_id: String,
        now: i64,
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>>;

    /// Publishes up to `limit` unsent rows in order, marking each sent after the bus took it;
    /// the number published (0 when another relay holds the database's relay lock).
    #[doc(hidden)]
    fn relay_batch<'a>(
        pool: &'a Pool<Self>,
        bus: &'a Bus,
        limit: i64,
    ) -> BoxFuture<'a, Result<usize, OutboxError>>;

    /// Runs `delete` (one of the purge statements, `?` = the cutoff) with `before`.
    #[doc(hidden)]
    fn purge<'a>(
        pool: &'a Pool<Self>,
        delete: &'static str,
        before: i64,
    ) -> BoxFuture<'a, Result<u64, sqlx::Error>>;

    #[doc(hidden)]
    fn count_unsent(pool: &Pool<Self>) -> BoxFuture<'_, Result<i64, sqlx::Error>>;
}

const INSERT_ROWS: &str = "INSERT INTO outbox (event_id, topic, event_key, event_type, payload, created_at, sent_at) \
     VALUES ";
const ROW_VALUES: &str = "(?, ?, ?, ?, ?, ?, NULL)";
const SELECT_PENDING: &str = "SELECT seq, topic, event_key, event_type, payload FROM outbox \
                              WHERE sent_at IS NULL ORDER BY seq LIMIT ?";
const MARK_SENT: &str = "UPDATE outbox SET sent_at = ? WHERE seq IN";
const PURGE_SENT: &str = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?";
const PURGE_PROCESSED: &str = "DELETE FROM processed_events WHERE processed_at < ?";
const COUNT_UNSENT: &str = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL";

macro_rules! impl_outbox_db {
    ($db:ty, $insert_ignore:literal, $lock:expr) => {
        impl OutboxDb for $db {
            fn insert_rows<'c>(
                conn: &'c mut Self::Connection,
                rows: &'c [NewRow],
            ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
                async move {
                    if rows.is_empty() {
                        return Ok(());
                    }
                    let sql = format!("{INSERT_ROWS}{}", vec![ROW_VALUES; rows.len()].join(", "));
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for row in rows {
                        q = q
                            .bind(&row.event_id)
                            .bind(&row.topic)
                            .bind(&row.key)
                            .bind(&row.event_type)
                            .bind(&row.payload)
                            .bind(row.created_at);
                    }
                    q.execute(&mut *conn).await?;
                    Ok(())
                }
                .boxed()
            }

            fn insert_processed<'c>(
                conn: &'c mut Self::Connection,
                event_id: String,
                now: i64,
            ) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
                async move {
                    let done = sqlx::query(concat!(
                        $insert_ignore,
                        " INTO processed_events (event_id, processed_at) VALUES (?, ?)"
                    ))
                    .bind(event_id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }
                .boxed()
            }

            fn relay_batch<'a>(
                pool: &'a Pool<Self>,
                bus: &'a Bus,
                limit: i64,
            ) -> BoxFuture<'a, Result<usize, OutboxError>> {
                async move {
                    let mut conn = pool.acquire().await?;
                    let locked = match $lock {
                        Some((take, _)) => {
                            let got: Option<i64> =
                                sqlx::query_scalar(take).fetch_one(&mut *conn).await?;
                            got == Some(1)
                        }
                        None => true,
                    };
                    if !locked {
                        return Ok(0);
                    }
                    let outcome = async {
                        let rows: Vec<(i64, String, String, String, String)> =
                            sqlx::query_as(SELECT_PENDING)
                                .bind(limit)
                                .fetch_all(&mut *conn)
                                .await?;
                        let records: Vec<(i64, Record)> = rows
                            .into_iter()
                            .map(|(seq, topic, key, event_type, payload)| {
                                let row = PendingRow {
                                    seq,
                                    topic,
                                    key,
                                    event_type,
                                    payload,
                                };
                                (seq, row.record())
                            })
                            .collect();
                        // Handed to the producer in order, awaited together; only the prefix
                        // up to the first failure is marked sent (the rest is retried).
                        let outcomes =
                            futures::future::join_all(records.iter().map(|(_, r)| bus.publish(r)))
                                .await;
                        let mut sent = Vec::new();
                        let mut failure = None;
                        for ((seq, _), outcome) in records.iter().zip(outcomes) {
                            match outcome {
                                Ok(()) => sent.push(*seq),
                                Err(e) => {
                                    failure = Some(e);
                                    break;
                                }
                            }
                        }
                        if !sent.is_empty() {
                            let marks = vec!["?"; sent.len()].join(", ");
                            let sql = format!("{MARK_SENT} ({marks})");
                            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                                .bind(Utc::now().timestamp_millis());
                            for seq in &sent {
                                q = q.bind(*seq);
                            }
                            q.execute(&mut *conn).await?;
                        }
                        if let Some(e) = failure {
                            return Err(OutboxError::Bus(e));
                        }
                        let published = sent.len();
                        Ok::<usize, OutboxError>(published)
                    }
                    .await;
                    if let Some((_, release)) = $lock {
                        // A dead connection releases the lock by itself.
                        let _ = sqlx::query(release).execute(&mut *conn).await;
                    }
                    outcome
                }
                .boxed()
            }

            fn purge<'a>(
                pool: &'a Pool<Self>,
                delete: &'static str,
                before: i64,
            ) -> BoxFuture<'a, Result<u64, sqlx::Error>> {
                async move {
                    Ok(sqlx::query(delete)
                        .bind(before)
                        .execute(pool)
                        .await?
                        .rows_affected())
                }
                .boxed()
            }

            fn count_unsent(pool: &Pool<Self>) -> BoxFuture<'_, Result<i64, sqlx::Error>> {
                async move { sqlx::query_scalar(COUNT_UNSENT).fetch_one(pool).await }.boxed()
            }
        }
    };
}

/// One relay per database at a time: a named lock for the duration of a batch (server-wide
/// name, so it includes the database's name; hashed to stay under the 64-character limit).
const MYSQL_LOCK: Option<(&str, &str)> = Some((
    "SELECT GET_LOCK(SHA1(CONCAT('storefront-outbox:', DATABASE())), 0)",
    "SELECT RELEASE_LOCK(SHA1(CONCAT('storefront-outbox:', DATABASE())))",
));
/// SQLite has one writer process; no lock needed.
const NO_LOCK: Option<(&str, &str)> = None;

impl_outbox_db!(sqlx::MySql, "INSERT IGNORE", MYSQL_LOCK);
impl_outbox_db!(sqlx::Sqlite, "INSERT OR IGNORE", NO_LOCK);

/// Adds `envelope` for `topic` to the outbox inside the caller's open transaction; it is
/// published after the transaction commits (call [`Notify::notify_one`] on the relay's wake
/// handle after committing to publish at once). Kafka key = `envelope.subject`.
pub async fn enqueue<DB: OutboxDb, T: Serialize>(
    tx: &mut Transaction<'_, DB>,
    topic: &str,
    envelope: &Envelope<T>,
) -> Result<(), OutboxError> {
    enqueue_all(tx, topic, std::slice::from_ref(envelope)).await
}

/// [`enqueue`] for several envelopes with one statement (one round trip), published in the
/// given order.
pub async fn enqueue_all<DB: OutboxDb, T: Serialize>(
    tx: &mut Transaction<'_, DB>,
    topic: &str,
    envelopes: &[Envelope<T>],
) -> Result<(), OutboxError> {
    let rows = envelopes
        .iter()
        .map(|e| NewRow::from_envelope(topic, e))
        .collect::<Result<Vec<_>, _>>()?;
    DB::insert_rows(&mut **tx, &rows).await?;
    Ok(())
}

/// Records that `event_id` was processed, inside the consumer's transaction; `true` when the
/// event is new (apply its effect in the same transaction), `false` when it was processed
/// before (skip it). Concurrent consumers of the same id: the second waits for the first's
/// transaction and then sees `false`.
pub async fn mark_processed<DB: OutboxDb>(
    tx: &mut Transaction<'_, DB>,
    event_id: Uuid,
) -> Result<bool, OutboxError> {
    Ok(DB::insert_processed(
        &mut **tx,
        event_id.to_string(),
        Utc::now().timestamp_millis(),
    )
    .await?)
}

/// Back-off after a failed batch: 200 ms doubling to at most 10 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis((200u64 << failures.min(6)).min(10_000))
}

/// How long consumers' dedupe rows are kept by default: past the 7 days a `catalog.v1`,
/// `orders.v1` or `deliveries.v1` topic keeps its events by default (the operator's
/// `retentionMs`), and past Kafka's default expiry of an idle group's offsets.
pub const DEFAULT_DEDUPE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often a running relay purges.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// A relay lingers after a wake-up only when its previous round published at least this many
/// rows; below that, commits are published as they come.
pub const LINGER_MIN_ROWS: usize = 8;

/// Publishes the outbox of one database to the bus until stopped.
pub struct Relay<DB: OutboxDb> {
    pool: Pool<DB>,
    bus: Bus,
    wake: Arc<Notify>,
    batch: i64,
    poll: Duration,
    retention: Duration,
    dedupe_retention: Duration,
    linger: Duration,
}

impl<DB: OutboxDb> Clone for Relay<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            bus: self.bus.clone(),
            wake: self.wake.clone(),
            batch: self.batch,
            poll: self.poll,
            retention: self.retention,
            dedupe_retention: self.dedupe_retention,
            linger: self.linger,
        }
    }
}

impl<DB: OutboxDb> Relay<DB> {
    /// A relay publishing `pool`'s outbox to `bus`: batches of up to 500, polling every 500 ms
    /// when idle, at once when woken (after a 30 ms linger under load).
    pub fn new(pool: Pool<DB>, bus: Bus) -> Self {
        Self {
            pool,
            bus,
            wake: Arc::new(Notify::new()),
            batch: 500,
            poll: Duration::from_millis(500),
            retention: Duration::from_secs(7 * 24 * 3600),
            dedupe_retention: DEFAULT_DEDUPE_RETENTION,
            linger: Duration::from_millis(30),
        }
    }

    /// Uses `wake` as the wake handle (share it with the writers).
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// How long to wait between polls when nothing woke the relay.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Under load (the previous round published at least [`LINGER_MIN_ROWS`]), how long a wake-up waits for more
    /// commits before publishing them together (default 30 ms); an idle relay publishes at
    /// once. Fewer, larger batches cost the database and the bus less: at about 1,000 orders
    /// a second, 30 ms instead of 10 took Kafka's CPU per order from 0.16 to 0.10 ms.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// How long sent rows are kept before the relay deletes them.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long the consumers' dedupe rows ([`mark_processed`]) are kept before the relay
    /// deletes them; keep it above the consumed topics' retention. An event redelivered after
    /// its row is gone would be applied again, and Kafka can redeliver a whole topic to a
    /// group whose committed offsets expired (after 7 days without a consumer, by default).
    pub fn with_dedupe_retention(mut self, retention: Duration) -> Self {
        self.dedupe_retention = retention;
        self
    }

    /// Deletes sent rows older than the retention and dedupe rows older than the dedupe
    /// retention; how many of each.
    pub async fn purge(&self) -> Result<(u64, u64), OutboxError> {
        let now = Utc::now().timestamp_millis();
        let before = |kept: Duration| now - i64::try_from(kept.as_millis()).unwrap_or(i64::MAX);
        let sent = DB::purge(&self.pool, PURGE_SENT, before(self.retention)).await?;
        let processed =
            DB::purge(&self.pool, PURGE_PROCESSED, before(self.dedupe_retention)).await?;
        Ok((sent, processed))
    }

    /// The handle writers notify after committing (`wake.notify_one()`).
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Publishes one batch of unsent rows; how many were published.
    pub async fn publish_pending(&self) -> Result<usize, OutboxError> {
        DB::relay_batch(&self.pool, &self.bus, self.batch).await
    }

    /// How many rows wait to be published.
    pub async fn unsent(&self) -> Result<i64, OutboxError> {
        Ok(DB::count_unsent(&self.pool).await?)
    }

    /// Runs until `stop` is cancelled: publishes, waits for a wake-up or the poll interval,
    /// retries with back-off while the database or the bus is down.
    pub async fn run(self, stop: CancellationToken) {
        let mut failures: u32 = 0;
        let mut busy = false;
        // At start, then hourly: a process restarted more often than that still purges.
        let mut last_purge: Option<std::time::Instant> = None;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let pause = match self.publish_pending().await {
                Ok(n) => {
                    failures = 0;
                    if n as i64 >= self.batch {
                        continue;
                    }
                    // Linger only under real load: a round of a few rows (one order's
                    // events) is not worth delaying the next one for.
                    busy = n >= LINGER_MIN_ROWS;
                    self.poll
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures);
                    metrics::counter!("outbox_relay_errors_total").increment(1);
                    tracing::warn!(error = %e, retry_in = ?delay, "outbox relay failed");
                    delay
                }
            };
            if last_purge.is_none_or(|at| at.elapsed() > PURGE_EVERY) {
                last_purge = Some(std::time::Instant::now());
                match self.purge().await {
                    Ok((0, 0)) => {}
                    Ok((sent, processed)) => {
                        tracing::info!(sent, processed, "purged old outbox and dedupe rows");
                    }
                    Err(e) => tracing::warn!(error = %e, "outbox purge failed"),
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified(), if failures == 0 => {
                    if busy && !self.linger.is_zero() {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(self.linger) => {}
                        }
                    }
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_carries_the_envelope_keyed_by_subject() {
        let env = Envelope::new("OrderPlaced", "order", "ord-1", serde_json::json!({"a": 1}));
        let row = NewRow::from_envelope("orders.v1", &env).expect("row");
        assert_eq!(row.event_id, env.id.to_string());
        assert_eq!(row.key, "ord-1");
        assert_eq!(row.event_type, "OrderPlaced");
        let back: Envelope = Envelope::from_json(row.payload.as_bytes()).expect("json");
        assert_eq!(back, env);
        let pending = PendingRow {
            seq: 1,
            topic: row.topic,
            key: row.key,
            event_type: row.event_type,
            payload: row.payload,
        };
        let record = pending.record();
        assert_eq!(record.topic, "orders.v1");
        assert_eq!(record.key, "ord-1");
        assert_eq!(
            record.headers,
            vec![("event-type".to_string(), "OrderPlaced".to_string())]
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(200));
        assert_eq!(backoff(1), Duration::from_millis(400));
        assert_eq!(backoff(5), Duration::from_millis(6_400));
        assert_eq!(backoff(6), Duration::from_secs(10));
        assert_eq!(backoff(60), Duration::from_secs(10));
    }

    #[test]
    fn the_ddl_constants_match_the_module_docs() {
        let docs = include_str!("outbox.rs");
        for ddl in [MYSQL_DDL, SQLITE_DDL] {
            let quoted: String = ddl
                .lines()
                .map(|l| {
                    if l.is_empty() {
                        "//!\n".to_string()
                    } else {
                        format!("//! {l}\n")
                    }
                })
                .collect();
            assert!(docs.contains(&quoted), "docs differ from:\n{ddl}");
        }
    }
}
