//! The event bus against the real Kafka broker of the local stack.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use storefront_kit::backend::EventsUrl;
use storefront_kit::bus::{Bus, HandlerError, MemoryBus, Received, Record, consume};
use storefront_tests::Stack;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

fn bus() -> Bus {
    let url = EventsUrl::parse(&Stack::get().kafka_url()).expect("url");
    Bus::connect(&url, "kit-test", &MemoryBus::new()).expect("connect")
}

/// An admin client on the broker `bus` talks to (to inspect and delete test topics).
fn admin(bus: &Bus) -> rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> {
    let Bus::Kafka(k) = bus else { panic!("kafka") };
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", k.brokers())
        .create()
        .expect("admin")
}

fn record(topic: &str, key: &str, n: usize) -> Record {
    Record {
        topic: topic.to_string(),
        key: key.to_string(),
        payload: format!("{key}:{n}").into_bytes(),
        headers: vec![
            ("event-type".into(), "Test".into()),
            ("seq".into(), n.to_string()),
        ],
    }
}

/// Consumes until `want` records arrived (or 60 s), returning them in arrival order.
async fn collect(
    bus: &Bus,
    group: &str,
    topic: &str,
    want: usize,
    fail_first: u32,
) -> Vec<Received> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicU32::new(0));
    let stop = CancellationToken::new();
    let sub = bus.subscribe(group, &[topic]).expect("subscribe");
    let worker = {
        let seen = seen.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            consume("test", sub, stop.clone(), move |r: Received| {
                let seen = seen.clone();
                let failures = failures.clone();
                let stop = stop.clone();
                async move {
                    if failures.fetch_add(1, Ordering::SeqCst) < fail_first {
                        return Err(HandlerError::Transient("simulated outage".into()));
                    }
                    let mut seen = seen.lock().await;
                    seen.push(r);
                    if seen.len() >= want {
                        stop.cancel();
                    }
                    Ok(())
                }
            })
            .await;
        })
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), stop.cancelled()).await;
    stop.cancel();
    worker.await.expect("worker");
    Arc::try_unwrap(seen).expect("sole owner").into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn keyed_records_arrive_in_order_per_key_with_headers() {
    let topic = Stack::get()
        .kafka_topic("kit-bus-order", 3)
        .await
        .expect("topic");
    let bus = bus();
    bus.check()
        .await
        .expect("broker answers a metadata request");
    let keys: Vec<String> = (0..10).map(|k| format!("order-{k}")).collect();
    for n in 0..300 {
        bus.publish(&record(topic.name(), &keys[n % keys.len()], n))
            .await
            .expect("publish");
    }
    // A transient failure on the first record is retried, not skipped.
    let got = collect(&bus, "kit-test-order", topic.name(), 300, 2).await;
    assert_eq!(got.len(), 300, "every record once");
    let mut last: HashMap<String, usize> = HashMap::new();
    for r in &got {
        assert_eq!(r.header("event-type"), Some("Test"));
        let seq: usize = r.header("seq").expect("seq").parse().expect("number");
        assert_eq!(r.payload, format!("{}:{seq}", r.key).into_bytes());
        if let Some(prev) = last.insert(r.key.clone(), seq) {
            assert!(seq > prev, "key {} went from {prev} to {seq}", r.key);
        }
    }
    topic.cleanup().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_reports_its_lag_behind_the_partition_as_a_gauge() {
    let metrics = storefront_kit::metrics::handle();
    let topic = Stack::get()
        .kafka_topic("kit-bus-lag", 1)
        .await
        .expect("topic");
    let bus = bus();
    for n in 0..10 {
        bus.publish(&record(topic.name(), "k", n))
            .await
            .expect("publish");
    }
    let group = storefront_tests::unique_name("kit-test-lag", '-');
    let mut sub = bus.subscribe(&group, &[topic.name()]).expect("subscribe");
    // All 10 arrive; only the first 3 are committed, so 7 are still to be done.
    let mut third = None;
    for n in 0..10 {
        let r = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("a record in time")
            .expect("record");
        if n == 2 {
            third = Some(r);
        }
    }
    sub.commit(&third.expect("third")).await.expect("commit");
    // The statistics arrive while the consumer waits for more records.
    let line = format!(
        "bus_consumer_lag{{group=\"{group}\",topic=\"{}\",partition=\"0\"}} 7",
        topic.name()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !metrics.render().lines().any(|l| l == line) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{line}` in:\n{}",
            metrics
                .render()
                .lines()
                .filter(|l| l.starts_with("bus_consumer_lag"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    }
    topic.cleanup().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_records_are_not_redelivered_to_the_group() {
    let topic = Stack::get()
        .kafka_topic("kit-bus-commit", 1)
        .await
        .expect("topic");
    let bus = bus();
    for n in 0..5 {
        bus.publish(&record(topic.name(), "k", n))
            .await
            .expect("publish");
    }
    let first = collect(&bus, "kit-test-commit", topic.name(), 5, 0).await;
    assert_eq!(first.len(), 5);
    // Give the async commit a moment to reach the broker, then add one more record.
    tokio::time::sleep(Duration::from_millis(500)).await;
    bus.publish(&record(topic.name(), "k", 5))
        .await
        .expect("publish");
    let second = collect(&bus, "kit-test-commit", topic.name(), 1, 0).await;
    assert_eq!(second.len(), 1);
    assert_eq!(
        second[0].header("seq"),
        Some("5"),
        "the group resumes after its commit"
    );
    // Another group reads from the beginning.
    let other = collect(&bus, "kit-test-other", topic.name(), 6, 0).await;
    assert_eq!(other.len(), 6);
    topic.cleanup().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_topics_creates_missing_topics_and_tolerates_existing_ones() {
    let name = storefront_tests::unique_name("kit-bus-ensure", '-');
    let bus = bus();
    bus.ensure_topics(&[&name], 2).await.expect("create");
    bus.ensure_topics(&[&name], 2)
        .await
        .expect("already exists is fine");
    bus.publish(&record(&name, "k", 0))
        .await
        .expect("publish to the new topic");
    let admin = admin(&bus);
    admin
        .delete_topics(&[&name], &rdkafka::admin::AdminOptions::new())
        .await
        .expect("delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_topic_creates_a_missing_topic_and_joins_it() {
    let name = storefront_tests::unique_name("kit-bus-follow", '-');
    let bus = bus();
    let stop = CancellationToken::new();
    let mut sub = tokio::time::timeout(
        Duration::from_secs(60),
        bus.follow_topic("kit-test-follow", &name, &stop),
    )
    .await
    .expect("joined in time")
    .expect("not stopped");
    let admin = admin(&bus);
    // A topic just created reaches the broker's metadata a moment later: until then it is
    // listed with no partitions.
    let mut partitions = 0;
    for _ in 0..50 {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(&name), Duration::from_secs(10))
            .expect("metadata");
        partitions = metadata.topics()[0].partitions().len();
        if partitions > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        i32::try_from(partitions).expect("count"),
        storefront_kit::bus::TOPIC_PARTITIONS
    );
    bus.publish(&record(&name, "k", 7)).await.expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(60), sub.next())
        .await
        .expect("a record in time")
        .expect("record");
    assert_eq!(got.key, "k");
    assert_eq!(got.payload, b"k:7");
    stop.cancel();
    drop(sub);
    admin
        .delete_topics(&[&name], &rdkafka::admin::AdminOptions::new())
        .await
        .expect("delete");
}
