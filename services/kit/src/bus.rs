//! The event bus: publish keyed records to topics and consume them in consumer groups, with
//! at-least-once delivery (a record is committed only after its handler succeeded).
//!
//! Two real backends, chosen by the events URL: `kafka://` (Apache Kafka through rdkafka,
//! idempotent producer with `acks=all`, manual commits) and `memory://` (an in-process log
//! shared by every service of one `storefront up` process). Records carry the event envelope
//! as their payload; producers go through the transactional outbox, consumers dedupe on the
//! envelope id.

pub mod kafka;
pub mod memory;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::backend::{EventsUrl, Location};

pub use kafka::KafkaBus;
pub use memory::MemoryBus;

/// One record to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    /// Partitioning key: the aggregate id, so one aggregate's events stay in order.
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// One record as received by a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka admin: {0}")]
    Admin(String),
    #[error("event bus URL {0} has no brokers")]
    NoBrokers(String),
    #[error("the event bus is closed")]
    Closed,
}

/// A connected event bus.
#[derive(Clone)]
pub enum Bus {
    Kafka(KafkaBus),
    Memory(MemoryBus),
}

impl Bus {
    /// Connects to the bus named by `url`; `memory://` uses the process's shared `memory` bus.
    pub fn connect(url: &EventsUrl, client_id: &str, memory: &MemoryBus) -> Result<Self, BusError> {
        match url.location() {
            Location::Network(hosts) if !hosts.is_empty() => {
                let brokers = hosts
                    .iter()
                    .map(|(h, p)| format!("{h}:{p}"))
                    .collect::<Vec<_>>()
                    .join(",");
                Ok(Self::Kafka(KafkaBus::new(&brokers, client_id)?))
            }
            Location::Network(_) => Err(BusError::NoBrokers(url.redacted())),
            _ => Ok(Self::Memory(memory.clone())),
        }
    }

    pub async fn publish(&self, record: &Record) -> Result<(), BusError> {
        let outcome = match self {
            Self::Kafka(k) => k.publish(record).await,
            Self::Memory(m) => {
                m.publish(record).await;
                Ok(())
            }
        };
        let result = if outcome.is_ok() { "ok" } else { "error" };
        metrics::counter!("events_published_total", "topic" => record.topic.clone(), "result" => result)
            .increment(1);
        outcome
    }

    /// Creates the topics that do not exist yet (Kafka's automatic creation is off).
    pub async fn ensure_topics(&self, topics: &[&str], partitions: i32) -> Result<(), BusError> {
        match self {
            Self::Kafka(k) => k.ensure_topics(topics, partitions).await,
            Self::Memory(_) => Ok(()),
        }
    }

    /// Joins consumer `group` on `topics`; a new group starts at the earliest record.
    pub fn subscribe(&self, group: &str, topics: &[&str]) -> Result<Subscription, BusError> {
        Ok(match self {
            Self::Kafka(k) => Subscription::Kafka(k.subscribe(group, topics)?),
            Self::Memory(m) => Subscription::Memory(m.subscribe(group, topics)),
        })
    }

    /// [`Bus::subscribe`], tried again every second while it fails (Kafka not reachable yet),
    /// until it succeeds or `stop` is cancelled (`None`).
    pub async fn subscribe_until(
        &self,
        group: &str,
        topics: &[&str],
        stop: &CancellationToken,
    ) -> Option<Subscription> {
        loop {
            match self.subscribe(group, topics) {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, ?topics, group, "cannot subscribe; retrying");
                    if sleep_or_stop(Duration::from_secs(1), stop).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Creates `topic` when missing (with [`TOPIC_PARTITIONS`]; a failure is logged, as the
    /// operator may have created it already) and joins `group` on it, retrying until it
    /// succeeds or `stop` is cancelled (`None`): how a service starts following a topic.
    pub async fn follow_topic(
        &self,
        group: &str,
        topic: &str,
        stop: &CancellationToken,
    ) -> Option<Subscription> {
        if let Err(e) = self.ensure_topics(&[topic], TOPIC_PARTITIONS).await {
            tracing::warn!(error = %e, topic, "could not create the topic");
        }
        self.subscribe_until(group, &[topic], stop).await
    }

    /// The `events` check of `/readyz`: [`Bus::check`], shown with `url` (redacted).
    pub fn readiness_check(&self, url: &EventsUrl) -> crate::health::HealthCheck {
        let bus = self.clone();
        crate::health::HealthCheck::new("events", move || {
            let bus = bus.clone();
            async move { bus.check().await }
        })
        .with_target(url.redacted())
    }

    /// Reachability for `/readyz`: Kafka metadata, or always up in memory.
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Self::Kafka(k) => k.check().await,
            Self::Memory(_) => Ok(()),
        }
    }
}

/// Partitions of a topic a service creates when it finds it missing.
pub const TOPIC_PARTITIONS: i32 = 3;

/// A consumer group membership.
pub enum Subscription {
    Kafka(kafka::KafkaSubscription),
    Memory(memory::MemorySubscription),
}

impl Subscription {
    /// The next record; waits until one arrives.
    pub async fn next(&mut self) -> Result<Received, BusError> {
        match self {
            Self::Kafka(k) => k.next().await,
            Self::Memory(m) => m.next().await,
        }
    }

    /// Marks `record` (and everything before it in its partition) as processed by the group.
    pub async fn commit(&mut self, record: &Received) -> Result<(), BusError> {
        match self {
            Self::Kafka(k) => k.commit(record),
            Self::Memory(m) => {
                m.commit(record).await;
                Ok(())
            }
        }
    }
}

/// How a handler's failure is treated by [`consume`].
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Try the same record again after a backoff (a dependency is down).
    #[error("transient: {0}")]
    Transient(String),
    /// The record can never be processed; log it, count it and move on.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Runs `handler` on every record of `subscription` until `stop` is cancelled. A record is
/// committed after its handler returns `Ok` or a permanent error; a transient error retries the
/// same record with backoff, so one partition's order is kept and nothing is skipped.
pub async fn consume<F, Fut>(
    consumer: &'static str,
    mut subscription: Subscription,
    stop: CancellationToken,
    mut handler: F,
) where
    F: FnMut(Received) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    while let Some(record) = next_or_stop(consumer, &mut subscription, &stop).await {
        // The handling is one span, a child of the request that caused the event when it
        // carries that request's trace (exported with OpenTelemetry; see `event_span`).
        let (span, hop) = event_span(consumer, &record);
        let mut attempt: u32 = 0;
        loop {
            let attempt_work = handler(record.clone()).instrument(span.clone());
            let outcome = match hop {
                Some(hop) => crate::context::within_trace(hop, attempt_work).await,
                None => attempt_work.await,
            };
            let label = match &outcome {
                Ok(()) => "ok",
                Err(HandlerError::Transient(_)) => "retry",
                Err(HandlerError::Permanent(_)) => "rejected",
            };
            metrics::counter!("events_consumed_total", "consumer" => consumer, "topic" => record.topic.clone(), "outcome" => label)
                .increment(1);
            match outcome {
                Ok(()) => break,
                Err(HandlerError::Permanent(reason)) => {
                    tracing::error!(consumer, topic = %record.topic, offset = record.offset, reason, "record rejected");
                    break;
                }
                Err(HandlerError::Transient(reason)) => {
                    attempt += 1;
                    let delay = Duration::from_millis((100u64 << attempt.min(6)).min(5_000));
                    tracing::warn!(consumer, topic = %record.topic, offset = record.offset, attempt, reason, "handler failed; retrying");
                    if sleep_or_stop(delay, &stop).await {
                        return;
                    }
                }
            }
        }
        if let Err(e) = subscription.commit(&record).await {
            tracing::warn!(consumer, error = %e, "commit failed; the record may be redelivered");
        }
    }
}

/// The `traceparent` of the envelope `record` carries, when it names a valid one.
fn traceparent_of(record: &Received) -> Option<crate::context::TraceParent> {
    #[derive(serde::Deserialize)]
    struct Traced<'a> {
        #[serde(borrow, default)]
        traceparent: Option<&'a str>,
    }
    serde_json::from_slice::<Traced<'_>>(&record.payload)
        .ok()
        .and_then(|t| t.traceparent)
        .and_then(crate::context::TraceParent::parse)
}

/// The span a consumer handles `record` in (`event`, with the consumer, topic, offset and the
/// trace id its logs carry) and, when the envelope names the trace that caused it, this
/// hop's context in that trace: the exported span continues it, and what the handler calls
/// or publishes stays in it.
fn event_span(
    consumer: &'static str,
    record: &Received,
) -> (tracing::Span, Option<crate::context::TraceParent>) {
    let caller = traceparent_of(record);
    let span = tracing::info_span!(
        "event",
        consumer,
        topic = %record.topic,
        offset = record.offset,
        trace_id = caller.map(|c| c.trace_id()),
    );
    if let Some(caller) = &caller {
        crate::telemetry::continue_trace(&span, caller);
    }
    (span, caller.map(|c| c.child()))
}

/// The span a consumer handles a batch in (`events`, with the consumer and the batch size),
/// linked to the trace of each record that names one.
fn batch_span(consumer: &'static str, batch: &[Received]) -> tracing::Span {
    let span = tracing::info_span!("events", consumer, records = batch.len());
    for cause in batch.iter().filter_map(traceparent_of) {
        crate::telemetry::link_trace(&span, &cause);
    }
    span
}

/// Runs `handler` on batches of `subscription`'s records until `stop` is cancelled: a batch
/// is the first record that arrives and whatever follows within `linger`, at most `max`
/// records, in arrival order. A failed batch is retried whole with backoff (the handler must
/// be idempotent); then the last record of each partition in it is committed, which marks
/// everything before it as done. For consumers whose work is cheaper in bulk (one index
/// commit per batch rather than per record).
pub async fn consume_batches<F, Fut, E>(
    consumer: &'static str,
    mut subscription: Subscription,
    stop: CancellationToken,
    max: usize,
    linger: Duration,
    mut handler: F,
) where
    F: FnMut(Vec<Received>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    while let Some(first) = next_or_stop(consumer, &mut subscription, &stop).await {
        // Cancelling `next` at the deadline loses nothing: the record stays for the next call.
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max.max(1) {
            match tokio::time::timeout_at(deadline, subscription.next()).await {
                Ok(Ok(r)) => batch.push(r),
                _ => break,
            }
        }
        let span = batch_span(consumer, &batch);
        let mut delay = Duration::from_millis(100);
        while let Err(e) = handler(batch.clone()).instrument(span.clone()).await {
            tracing::warn!(consumer, error = %e, records = batch.len(), retry_in = ?delay, "batch failed; retrying");
            if sleep_or_stop(delay, &stop).await {
                return;
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        let mut last: Vec<&Received> = Vec::new();
        for r in batch.iter().rev() {
            if !last
                .iter()
                .any(|l| l.topic == r.topic && l.partition == r.partition)
            {
                last.push(r);
            }
        }
        for r in last {
            if let Err(e) = subscription.commit(r).await {
                tracing::warn!(consumer, error = %e, "commit failed; records may be redelivered");
            }
        }
    }
}

/// What `read` makes of each record of a batch, in order, leaving out those it passes over
/// (`Ok(None)`). Each record is counted in `events_consumed_total` under `consumer`; one it
/// cannot read (`Err`, naming why) is logged and counted as rejected, and never retried.
/// For [`consume_batches`] handlers.
pub fn read_batch<T>(
    consumer: &'static str,
    records: &[Received],
    read: impl Fn(&Received) -> Result<Option<T>, String>,
) -> Vec<T> {
    let mut out = Vec::new();
    for record in records {
        let outcome = match read(record) {
            Ok(Some(item)) => {
                out.push(item);
                "ok"
            }
            Ok(None) => "ok",
            Err(reason) => {
                tracing::error!(consumer, topic = %record.topic, offset = record.offset, reason, "record rejected");
                "rejected"
            }
        };
        metrics::counter!("events_consumed_total", "consumer" => consumer, "topic" => record.topic.clone(), "outcome" => outcome)
            .increment(1);
    }
    out
}

/// The next record, waiting through receive errors (retried every second); `None` once
/// `stop` is cancelled.
async fn next_or_stop(
    consumer: &'static str,
    subscription: &mut Subscription,
    stop: &CancellationToken,
) -> Option<Received> {
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return None,
            r = subscription.next() => r,
        };
        match received {
            Ok(r) => return Some(r),
            Err(e) => {
                tracing::warn!(consumer, error = %e, "receive failed; retrying");
                if sleep_or_stop(Duration::from_secs(1), stop).await {
                    return None;
                }
            }
        }
    }
}

/// Sleeps; true when `stop` was cancelled meanwhile.
async fn sleep_or_stop(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::sync::Mutex;

    fn record(n: u32) -> Record {
        Record {
            topic: "t".into(),
            key: "k".into(),
            payload: n.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// Record `n` carrying an envelope caused by the trace `cause`.
    fn traced(n: u32, cause: &str) -> Record {
        Record {
            payload: format!(r#"{{"id":"e-{n}","traceparent":"{cause}","data":{{}}}}"#)
                .into_bytes(),
            ..record(n)
        }
    }

    #[tokio::test]
    async fn without_export_the_events_a_handler_makes_stay_in_the_trace_that_caused_it() {
        let bus = Bus::Memory(MemoryBus::new());
        let caused_by = crate::context::TraceParent::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .expect("valid");
        bus.publish(&traced(0, &caused_by.to_string()))
            .await
            .expect("publish");
        let emitted: Arc<Mutex<Option<String>>> = Arc::default();
        let stop = CancellationToken::new();
        let sub = bus.subscribe("g", &["t"]).expect("subscribe");
        consume("test", sub, stop.clone(), {
            let (emitted, stop) = (emitted.clone(), stop.clone());
            move |_| {
                let (emitted, stop) = (emitted.clone(), stop.clone());
                async move {
                    *emitted.lock().await =
                        crate::event::Envelope::new("Next", "t", "s", 0).traceparent;
                    stop.cancel();
                    Ok(())
                }
            }
        })
        .await;
        let emitted = emitted.lock().await.clone().expect("a traceparent");
        let emitted = crate::context::TraceParent::parse(&emitted).expect("valid");
        assert_eq!(emitted.trace_id(), caused_by.trace_id());
        assert_ne!(
            emitted.span_id(),
            caused_by.span_id(),
            "this consumer's own hop"
        );
    }

    #[tokio::test]
    async fn a_handler_runs_in_a_span_that_continues_the_events_trace() {
        let captured = crate::telemetry::CapturedSpans::start();

        let bus = Bus::Memory(MemoryBus::new());
        let caused_by = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        bus.publish(&traced(0, caused_by)).await.expect("publish");
        let inside: Arc<Mutex<Option<crate::context::TraceParent>>> = Arc::default();
        let emitted: Arc<Mutex<Option<String>>> = Arc::default();
        let stop = CancellationToken::new();
        let sub = bus.subscribe("g", &["t"]).expect("subscribe");
        consume("test", sub, stop.clone(), {
            let (inside, emitted, stop) = (inside.clone(), emitted.clone(), stop.clone());
            move |_| {
                let (inside, emitted, stop) = (inside.clone(), emitted.clone(), stop.clone());
                async move {
                    *inside.lock().await = crate::telemetry::current_traceparent();
                    let next = crate::event::Envelope::new("Next", "test", "s", 0);
                    *emitted.lock().await = next.traceparent;
                    stop.cancel();
                    Ok(())
                }
            }
        })
        .await;
        let spans = captured.finished();
        let event = spans
            .iter()
            .find(|s| s.name == "event")
            .expect("an event span");
        assert_eq!(
            event.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(event.parent_span_id.to_string(), "00f067aa0ba902b7");
        // What the handler calls or publishes is a child of the event span.
        let inside = inside
            .lock()
            .await
            .expect("a current trace inside the handler");
        assert_eq!(inside.span_id(), event.span_context.span_id().to_string());
        assert_eq!(
            emitted.lock().await.clone(),
            Some(inside.to_string()),
            "an event made there names it as its cause"
        );
    }

    #[tokio::test]
    async fn a_batch_span_links_the_trace_of_each_record() {
        let captured = crate::telemetry::CapturedSpans::start();
        let bus = Bus::Memory(MemoryBus::new());
        let causes = [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ];
        for (n, cause) in (0..).zip(causes) {
            bus.publish(&traced(n, cause)).await.expect("publish");
        }
        let stop = CancellationToken::new();
        let sub = bus.subscribe("g", &["t"]).expect("subscribe");
        consume_batches(
            "test",
            sub,
            stop.clone(),
            10,
            Duration::from_millis(50),
            move |_| {
                let stop = stop.clone();
                async move {
                    stop.cancel();
                    Ok::<(), &str>(())
                }
            },
        )
        .await;
        let spans = captured.finished();
        let batch = spans
            .iter()
            .find(|s| s.name == "events")
            .expect("an events span");
        let linked: Vec<String> = batch
            .links
            .links
            .iter()
            .map(|l| {
                format!(
                    "00-{}-{}-01",
                    l.span_context.trace_id(),
                    l.span_context.span_id()
                )
            })
            .collect();
        assert_eq!(linked, causes);
    }

    #[tokio::test]
    async fn batches_gather_within_the_linger_retry_whole_and_commit_at_the_end() {
        let memory = MemoryBus::new();
        let bus = Bus::Memory(memory.clone());
        for n in 0..5 {
            bus.publish(&record(n)).await.expect("publish");
        }
        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let failures = Arc::new(Mutex::new(1));
        let stop = CancellationToken::new();
        let worker = tokio::spawn({
            let (seen, failures, stop) = (seen.clone(), failures.clone(), stop.clone());
            let sub = bus.subscribe("g", &["t"]).expect("subscribe");
            consume_batches(
                "test",
                sub,
                stop,
                3,
                Duration::from_millis(50),
                move |batch| {
                    let (seen, failures) = (seen.clone(), failures.clone());
                    async move {
                        let payloads = batch
                            .iter()
                            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
                            .collect();
                        seen.lock().await.push(payloads);
                        let mut left = failures.lock().await;
                        if *left > 0 {
                            *left -= 1;
                            return Err("down");
                        }
                        Ok(())
                    }
                },
            )
        });
        tokio::time::timeout(Duration::from_secs(5), async {
            while seen.lock().await.len() < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("three handler calls");
        stop.cancel();
        worker.await.expect("join");
        let seen = seen.lock().await.clone();
        // At most `max` per batch; the failed batch again, whole; then the rest, in order.
        assert_eq!(seen[0], ["0", "1", "2"]);
        assert_eq!(seen[1], ["0", "1", "2"]);
        assert_eq!(seen[2], ["3", "4"]);
        // Committed: a new subscription of the group starts after the last record.
        bus.publish(&record(5)).await.expect("publish");
        let mut again = bus.subscribe("g", &["t"]).expect("subscribe");
        let next = again.next().await.expect("record");
        assert_eq!(next.payload, b"5");
    }
}
