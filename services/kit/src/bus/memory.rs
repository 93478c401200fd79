//! The in-process bus for `storefront up`: an append-only log per topic with committed offsets
//! per consumer group, shared by every service of the process.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, Notify};

use super::{BusError, Received, Record};

#[derive(Default)]
struct Inner {
    logs: Mutex<HashMap<String, Vec<Record>>>,
    committed: Mutex<HashMap<(String, String), i64>>,
    appended: Notify,
}

/// The process's in-memory bus. Cloning shares it.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub async fn publish(&self, record: &Record) {
        self.inner
            .logs
            .lock()
            .await
            .entry(record.topic.clone())
            .or_default()
            .push(record.clone());
        self.inner.appended.notify_waiters();
    }

    /// Number of records ever published to `topic`.
    pub async fn len(&self, topic: &str) -> usize {
        self.inner.logs.lock().await.get(topic).map_or(0, Vec::len)
    }

    pub fn subscribe(&self, group: &str, topics: &[&str]) -> MemorySubscription {
        MemorySubscription {
            bus: self.clone(),
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            cursors: HashMap::new(),
        }
    }
}

/// A group's view of some topics. Starts at the group's committed offsets.
pub struct MemorySubscription {
    bus: MemoryBus,
    group: String,
    topics: Vec<String>,
    cursors: HashMap<String, i64>,
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
        let committed = self.bus.inner.committed.lock().await.clone();
        let logs = self.bus.inner.logs.lock().await;
        // The same gauge as the Kafka consumers report, refreshed whenever something is
        // published or this subscriber looks for a record: records not yet committed.
        for topic in &self.topics {
            let end = logs.get(topic).map_or(0, Vec::len);
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
            let Some(record) = usize::try_from(cursor).ok().and_then(|i| log.get(i)) else {
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
        let mut committed = self.bus.inner.committed.lock().await;
        let slot = committed
            .entry((self.group.clone(), record.topic.clone()))
            .or_insert(0);
        *slot = (*slot).max(record.offset + 1);
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
}
