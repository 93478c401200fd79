//! The in-process bus for `storefront up`: a log per topic with committed offsets per consumer
//! group, shared by every service of the process.
//!
//! A record is dropped once every group that reads its topic has committed past it and it is
//! older than the retention (10 minutes by default), so a long run does not keep every event
//! for the life of the process. A group that starts reading later begins at the oldest record
//! kept, as a Kafka group with `auto.offset.reset=earliest` does after a topic's retention.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};

use super::{BusError, Received, Record};

/// How long a record every group has committed is kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(600);

/// One topic: the records kept, the first of them at offset `base`.
#[derive(Default)]
struct Log {
    base: i64,
    records: VecDeque<(Instant, Record)>,
}

impl Log {
    fn end(&self) -> i64 {
        self.base + self.records.len() as i64
    }

    fn get(&self, offset: i64) -> Option<&Record> {
        let i = usize::try_from(offset - self.base).ok()?;
        self.records.get(i).map(|(_, r)| r)
    }
}

struct Inner {
    logs: Mutex<HashMap<String, Log>>,
    /// Per (group, topic): the next offset the group reads after a restart. A group is listed
    /// from its first look at the topic, so it holds back records it has not committed.
    committed: Mutex<HashMap<(String, String), i64>>,
    appended: Notify,
    retention: Duration,
}

/// The process's in-memory bus. Cloning shares it.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::with_retention(DEFAULT_RETENTION)
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus that drops a record every reading group has committed once it is `retention` old.
    pub fn with_retention(retention: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                logs: Mutex::default(),
                committed: Mutex::default(),
                appended: Notify::new(),
                retention,
            }),
        }
    }

    pub async fn publish(&self, record: &Record) {
        self.inner
            .logs
            .lock()
            .await
            .entry(record.topic.clone())
            .or_default()
            .records
            .push_back((Instant::now(), record.clone()));
        self.inner.appended.notify_waiters();
    }

    /// Number of records ever published to `topic`.
    pub async fn len(&self, topic: &str) -> usize {
        self.inner
            .logs
            .lock()
            .await
            .get(topic)
            .map_or(0, |log| usize::try_from(log.end()).unwrap_or(0))
    }

    /// Number of records of `topic` still kept.
    pub async fn kept(&self, topic: &str) -> usize {
        self.inner
            .logs
            .lock()
            .await
            .get(topic)
            .map_or(0, |log| log.records.len())
    }

    /// Drops the records of `topic` every group reading it has committed and that are older
    /// than the retention.
    async fn trim(&self, topic: &str) {
        let committed = self.inner.committed.lock().await;
        let Some(done) = committed
            .iter()
            .filter(|((_, t), _)| t == topic)
            .map(|(_, &next)| next)
            .min()
        else {
            return;
        };
        drop(committed);
        let mut logs = self.inner.logs.lock().await;
        let Some(log) = logs.get_mut(topic) else {
            return;
        };
        while log.base < done
            && log
                .records
                .front()
                .is_some_and(|(at, _)| at.elapsed() >= self.inner.retention)
        {
            log.records.pop_front();
            log.base += 1;
        }
    }

    pub fn subscribe(&self, group: &str, topics: &[&str]) -> MemorySubscription {
        MemorySubscription {
            bus: self.clone(),
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            cursors: HashMap::new(),
            listed: false,
        }
    }
}

/// A group's view of some topics. Starts at the group's committed offsets.
pub struct MemorySubscription {
    bus: MemoryBus,
    group: String,
    topics: Vec<String>,
    cursors: HashMap<String, i64>,
    /// Whether the group is listed for its topics yet (on its first look).
    listed: bool,
}

impl MemorySubscription {
    pub async fn next(&mut self) -> Result<Received, BusError> {
        loop {
            // Register for wake-ups before looking, so a publish in between is not missed.
            let inner = self.bus.inner.clone();
            let appended = inner.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Some(r) = self.poll().await {
                return Ok(r);
            }
            appended.await;
        }
    }

    async fn poll(&mut self) -> Option<Received> {
        let committed = {
            let mut committed = self.bus.inner.committed.lock().await;
            // Listed from its first look, so nothing it has not read is dropped.
            if !self.listed {
                for topic in &self.topics {
                    committed
                        .entry((self.group.clone(), topic.clone()))
                        .or_insert(0);
                }
                self.listed = true;
            }
            committed.clone()
        };
        let logs = self.bus.inner.logs.lock().await;
        // The same gauge as the Kafka consumers report, refreshed whenever something is
        // published or this subscriber looks for a record: records not yet committed.
        for topic in &self.topics {
            let end = logs.get(topic).map_or(0, Log::end);
            let done = committed
                .get(&(self.group.clone(), topic.clone()))
                .copied()
                .unwrap_or(0);
            metrics::gauge!(
                "bus_consumer_lag",
                "group" => self.group.clone(),
                "topic" => topic.clone(),
                "partition" => "0",
            )
            .set((end as f64 - done as f64).max(0.0));
        }
        for topic in &self.topics {
            let cursor = *self.cursors.entry(topic.clone()).or_insert_with(|| {
                committed
                    .get(&(self.group.clone(), topic.clone()))
                    .copied()
                    .unwrap_or(0)
            });
            let Some(log) = logs.get(topic) else { continue };
            // Past records already dropped: start at the oldest kept.
            let cursor = cursor.max(log.base);
            let Some(record) = log.get(cursor) else {
                continue;
            };
            self.cursors.insert(topic.clone(), cursor + 1);
            return Some(Received {
                topic: record.topic.clone(),
                partition: 0,
                offset: cursor,
                key: record.key.clone(),
                payload: record.payload.clone(),
                headers: record.headers.clone(),
            });
        }
        None
    }

    pub async fn commit(&mut self, record: &Received) {
        {
            let mut committed = self.bus.inner.committed.lock().await;
            let slot = committed
                .entry((self.group.clone(), record.topic.clone()))
                .or_insert(0);
            *slot = (*slot).max(record.offset + 1);
        }
        self.bus.trim(&record.topic).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(topic: &str, key: &str, n: u32) -> Record {
        Record {
            topic: topic.into(),
            key: key.into(),
            payload: n.to_string().into_bytes(),
            headers: vec![("event-type".into(), "Test".into())],
        }
    }

    #[tokio::test]
    async fn a_group_reports_what_it_has_not_committed_as_its_lag() {
        let metrics = crate::metrics::handle();
        let bus = MemoryBus::new();
        for n in 0..5 {
            bus.publish(&record("lag.v1", "o-1", n)).await;
        }
        let mut sub = bus.subscribe("lagging", &["lag.v1"]);
        let mut second = None;
        for n in 0..5 {
            let r = sub.next().await.expect("record");
            if n == 1 {
                second = Some(r);
            }
        }
        sub.commit(&second.expect("second")).await;
        // Looking for a sixth record refreshes the gauge: 5 published, 2 committed.
        let _ = tokio::time::timeout(Duration::from_millis(50), sub.next()).await;
        let line = "bus_consumer_lag{group=\"lagging\",topic=\"lag.v1\",partition=\"0\"} 3";
        assert!(
            metrics.render().lines().any(|l| l == line),
            "{}",
            metrics.render()
        );
    }

    #[tokio::test]
    async fn groups_each_see_every_record_in_order() {
        let bus = MemoryBus::new();
        for n in 0..5 {
            bus.publish(&record("orders.v1", "o-1", n)).await;
        }
        for group in ["delivery", "notification"] {
            let mut sub = bus.subscribe(group, &["orders.v1"]);
            for n in 0..5 {
                let r = sub.next().await.expect("record");
                assert_eq!(r.payload, n.to_string().into_bytes());
                assert_eq!(r.offset, i64::from(n));
                assert_eq!(r.headers[0].1, "Test");
                sub.commit(&r).await;
            }
        }
    }

    #[tokio::test]
    async fn a_new_subscription_resumes_after_the_last_commit() {
        let bus = MemoryBus::new();
        for n in 0..3 {
            bus.publish(&record("t", "k", n)).await;
        }
        let mut first = bus.subscribe("g", &["t"]);
        let r0 = first.next().await.expect("0");
        first.commit(&r0).await;
        let _uncommitted = first.next().await.expect("1");
        drop(first);
        let mut second = bus.subscribe("g", &["t"]);
        assert_eq!(
            second.next().await.expect("redelivered").offset,
            1,
            "uncommitted record is redelivered"
        );
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_on_publish() {
        let bus = MemoryBus::new();
        let mut sub = bus.subscribe("g", &["t"]);
        let waiter = tokio::spawn(async move { sub.next().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        bus.publish(&record("t", "k", 7)).await;
        let r = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("woken")
            .expect("join")
            .expect("record");
        assert_eq!(r.payload, b"7");
    }

    async fn read_and_commit(bus: &MemoryBus, group: &str, topic: &str, n: usize) -> Vec<i64> {
        let mut sub = bus.subscribe(group, &[topic]);
        let mut offsets = Vec::new();
        for _ in 0..n {
            let r = tokio::time::timeout(Duration::from_secs(2), sub.next())
                .await
                .expect("a record")
                .expect("record");
            offsets.push(r.offset);
            sub.commit(&r).await;
        }
        offsets
    }

    #[tokio::test]
    async fn records_every_group_committed_go_after_the_retention_and_late_groups_start_at_the_oldest_kept()
     {
        let bus = MemoryBus::with_retention(Duration::ZERO);
        for n in 0..5 {
            bus.publish(&record("r.v1", "k", n)).await;
        }
        // Group b has looked (it is listed) but committed nothing: everything a commits stays.
        let mut b = bus.subscribe("b", &["r.v1"]);
        let first_of_b = b.next().await.expect("record");
        assert_eq!(read_and_commit(&bus, "a", "r.v1", 3).await, [0, 1, 2]);
        assert_eq!(bus.kept("r.v1").await, 5);
        b.commit(&first_of_b).await;
        // a at 3, b at 1: offset 0 goes.
        assert_eq!(bus.kept("r.v1").await, 4);
        drop(b);
        assert_eq!(read_and_commit(&bus, "b", "r.v1", 4).await, [1, 2, 3, 4]);
        assert_eq!(read_and_commit(&bus, "a", "r.v1", 2).await, [3, 4]);
        assert_eq!(bus.kept("r.v1").await, 0);
        assert_eq!(bus.len("r.v1").await, 5, "offsets keep counting");
        bus.publish(&record("r.v1", "k", 5)).await;
        // A group that starts now begins at the oldest record kept.
        assert_eq!(read_and_commit(&bus, "late", "r.v1", 1).await, [5]);
    }

    #[tokio::test]
    async fn committed_records_younger_than_the_retention_stay() {
        let bus = MemoryBus::new();
        for n in 0..3 {
            bus.publish(&record("y.v1", "k", n)).await;
        }
        read_and_commit(&bus, "only", "y.v1", 3).await;
        assert_eq!(bus.kept("y.v1").await, 3);
        assert_eq!(read_and_commit(&bus, "another", "y.v1", 3).await, [0, 1, 2]);
    }
}
