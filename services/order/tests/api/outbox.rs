//! `storefront_kit::outbox` on its own: enqueue in a transaction, relay in order, dedupe —
//! on MariaDB + Kafka and on SQLite + the in-process bus, with the canonical DDL.

use std::time::Duration;

use serde_json::json;
use sqlx::{Pool, Sqlite};
use storefront_kit::backend::EventsUrl;
use storefront_kit::bus::{Bus, MemoryBus};
use storefront_kit::event::Envelope;
use storefront_kit::outbox::{self, MYSQL_DDL, Relay, SQLITE_DDL};
use storefront_tests::Stack;

async fn apply(ddl: &str, run: impl AsyncFn(String)) {
    for statement in ddl.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        run(statement.to_string()).await;
    }
}

fn event(n: i64, subject: &str) -> Envelope {
    Envelope::new("Counted", "test", subject, json!({ "n": n }))
}

async fn read_all(bus: &Bus, topic: &str, want: usize) -> Vec<Envelope> {
    let mut sub = bus
        .subscribe(
            &storefront_tests::unique_name("outbox-reader", '-'),
            &[topic],
        )
        .expect("subscribe");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < want {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "got only {} of {want}", out.len());
        if let Ok(Ok(r)) = tokio::time::timeout(left, sub.next()).await {
            out.push(Envelope::from_json(&r.payload).expect("envelope"));
        }
    }
    // Anything more within a moment would be a duplicate.
    while let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
        out.push(Envelope::from_json(&r.payload).expect("envelope"));
    }
    out
}

/// A pool on a fresh MariaDB database with the outbox tables; the database goes when the
/// returned handle is dropped.
async fn mysql_pool(stack: &Stack) -> (storefront_tests::MysqlDatabase, sqlx::MySqlPool) {
    let db = stack.mysql_database().await.expect("db");
    let pool = db.pool().await.expect("pool");
    apply(MYSQL_DDL, async |s| {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&pool)
            .await
            .expect("ddl");
    })
    .await;
    (db, pool)
}

#[tokio::test]
async fn mysql_outbox_commits_publish_in_order_and_rollbacks_never() {
    let stack = Stack::get();
    let (_db, pool) = mysql_pool(stack).await;
    let topic = stack.kafka_topic("outbox", 1).await.expect("topic");
    let url = EventsUrl::parse(&stack.kafka_url()).expect("url");
    let bus = Bus::connect(&url, "outbox-test", &MemoryBus::new()).expect("bus");

    // 20 events in 4 committed transactions, 5 in a rolled-back one.
    let mut sent = Vec::new();
    for t in 0..4 {
        let mut tx = pool.begin().await.expect("begin");
        for n in 0..5 {
            let e = event(t * 5 + n, "agg-1");
            outbox::enqueue(&mut tx, topic.name(), &e)
                .await
                .expect("enqueue");
            sent.push(e.id);
        }
        tx.commit().await.expect("commit");
    }
    let mut tx = pool.begin().await.expect("begin");
    outbox::enqueue(&mut tx, topic.name(), &event(99, "agg-1"))
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");

    let relay = Relay::new(pool.clone(), bus.clone());
    assert_eq!(relay.unsent().await.expect("unsent"), 20);
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(relay.clone().run(stop.clone()));
    let got = read_all(&bus, topic.name(), 20).await;
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        sent,
        "every committed event once, in order, none of the rolled-back one"
    );
    assert_eq!(relay.unsent().await.expect("unsent"), 0, "all marked sent");
    stop.cancel();
    running.await.expect("relay stops on the token");

    // Consumer dedupe: new once, then known; a rolled-back mark is forgotten.
    let id = uuid::Uuid::now_v7();
    let mut tx = pool.begin().await.expect("begin");
    assert!(outbox::mark_processed(&mut tx, id).await.expect("mark"));
    tx.rollback().await.expect("rollback");
    let mut tx = pool.begin().await.expect("begin");
    assert!(
        outbox::mark_processed(&mut tx, id).await.expect("mark"),
        "rolled back: new again"
    );
    tx.commit().await.expect("commit");
    let mut tx = pool.begin().await.expect("begin");
    assert!(
        !outbox::mark_processed(&mut tx, id).await.expect("mark"),
        "seen"
    );
    tx.commit().await.expect("commit");
    pool.close().await;
}

async fn sqlite_pool(dir: &std::path::Path) -> Pool<Sqlite> {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let options = SqliteConnectOptions::new()
        .filename(dir.join("outbox.db"))
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .expect("sqlite");
    apply(SQLITE_DDL, async |s| {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&pool)
            .await
            .expect("ddl");
    })
    .await;
    pool
}

#[tokio::test]
async fn sqlite_outbox_survives_a_relay_that_never_ran_and_dedupes() {
    let dir = tempfile::tempdir().expect("dir");
    let memory = MemoryBus::new();
    let bus = Bus::connect(&EventsUrl::in_memory(), "outbox-test", &memory).expect("bus");
    let mut sent = Vec::new();
    {
        // A "process" that commits and dies before any relay ran.
        let pool = sqlite_pool(dir.path()).await;
        let mut tx = pool.begin().await.expect("begin");
        for n in 0..3 {
            let e = event(n, &format!("agg-{n}"));
            outbox::enqueue(&mut tx, "t.v1", &e).await.expect("enqueue");
            sent.push(e.id);
        }
        tx.commit().await.expect("commit");
        pool.close().await;
    }
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let pool = SqlitePoolOptions::new()
        .connect_with(SqliteConnectOptions::new().filename(dir.path().join("outbox.db")))
        .await
        .expect("reopen");
    let relay = Relay::new(pool.clone(), bus.clone());
    assert_eq!(relay.publish_pending().await.expect("publish"), 3);
    assert_eq!(
        relay.publish_pending().await.expect("again"),
        0,
        "marked sent"
    );
    let got = read_all(&bus, "t.v1", 3).await;
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), sent);
    assert_eq!(got[1].subject, "agg-1");

    // Woken right after a commit: published without waiting for the poll interval.
    let relay = relay.with_poll_interval(Duration::from_secs(3600));
    let wake = relay.wake_handle();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(relay.clone().run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tx = pool.begin().await.expect("begin");
    outbox::enqueue(&mut tx, "t.v1", &event(7, "agg-7"))
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    wake.notify_one();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while memory.len("t.v1").await < 4 {
        assert!(std::time::Instant::now() < deadline, "not woken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.expect("stops");

    let id = uuid::Uuid::now_v7();
    let mut tx = pool.begin().await.expect("begin");
    assert!(outbox::mark_processed(&mut tx, id).await.expect("mark"));
    assert!(!outbox::mark_processed(&mut tx, id).await.expect("mark"));
    tx.commit().await.expect("commit");
}

/// Old rows of both tables, on either database: a row sent 8 days ago, one sent yesterday, one
/// never sent though made 40 days ago; dedupe rows from 31 and 29 days ago. The relay's purge
/// takes the first and the fourth, then the fifth once the dedupe retention is an hour.
macro_rules! purge_case {
    ($pool:expr) => {{
        let pool = $pool;
        const DAY: i64 = 86_400_000;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        for (created, sent) in [
            (now - 9 * DAY, Some(now - 8 * DAY)),
            (now - 2 * DAY, Some(now - DAY)),
            (now - 40 * DAY, None),
        ] {
            sqlx::query(
                "INSERT INTO outbox (event_id, topic, event_key, event_type, payload, created_at, sent_at) \
                 VALUES (?, 't.v1', 'k', 'Counted', '{}', ?, ?)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(created)
            .bind(sent)
            .execute(&pool)
            .await
            .expect("outbox row");
        }
        let old = uuid::Uuid::now_v7();
        let recent = uuid::Uuid::now_v7();
        for (id, at) in [(old, now - 31 * DAY), (recent, now - 29 * DAY)] {
            sqlx::query("INSERT INTO processed_events (event_id, processed_at) VALUES (?, ?)")
                .bind(id.to_string())
                .bind(at)
                .execute(&pool)
                .await
                .expect("dedupe row");
        }
        let bus = Bus::connect(&EventsUrl::in_memory(), "purge-test", &MemoryBus::new())
            .expect("bus");
        let relay = Relay::new(pool.clone(), bus);
        assert_eq!(relay.purge().await.expect("purge"), (1, 1));
        assert_eq!(relay.purge().await.expect("again"), (0, 0));
        assert_eq!(relay.unsent().await.expect("unsent"), 1, "never sent: kept");
        let sent_left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(sent_left, 1);
        let mut tx = pool.begin().await.expect("begin");
        assert!(
            outbox::mark_processed(&mut tx, old).await.expect("mark"),
            "purged: new again"
        );
        assert!(!outbox::mark_processed(&mut tx, recent).await.expect("mark"), "kept");
        tx.rollback().await.expect("rollback");
        let relay = relay.with_dedupe_retention(Duration::from_secs(3600));
        assert_eq!(relay.purge().await.expect("purge"), (0, 1));
    }};
}

#[tokio::test]
async fn mysql_relay_purges_old_sent_and_dedupe_rows_only() {
    let (_db, pool) = mysql_pool(Stack::get()).await;
    purge_case!(pool.clone());
    pool.close().await;
}

#[tokio::test]
async fn sqlite_relay_purges_old_sent_and_dedupe_rows_only() {
    let dir = tempfile::tempdir().expect("dir");
    purge_case!(sqlite_pool(dir.path()).await);
}
