//! Apache Kafka through rdkafka: an idempotent producer (`acks=all`) and consumers that commit
//! offsets only after their handler succeeded.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use super::{BusError, Received, Record};

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a consumer reports its lag (librdkafka's `statistics.interval.ms`).
pub const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// A consumer's context: librdkafka's statistics, every [`LAG_INTERVAL`], become the gauge
/// `bus_consumer_lag{group, topic, partition}`: the partition's last offset minus the group's
/// committed one. librdkafka hands them over while the consumer waits for records; while a
/// handler is being retried the gauge holds its last value and `events_consumed_total
/// {outcome="retry"}` counts the attempts.
pub struct LagReporter {
    group: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // Partition -1 is librdkafka's internal "unassigned" one; -1 lag is unknown.
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    "bus_consumer_lag",
                    "group" => self.group.clone(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string(),
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

/// A Kafka connection: one producer, consumers made on demand.
#[derive(Clone)]
pub struct KafkaBus {
    brokers: String,
    client_id: String,
    producer: FutureProducer,
}

impl KafkaBus {
    pub fn new(brokers: &str, client_id: &str) -> Result<Self, BusError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("client.id", client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(Self {
            brokers: brokers.to_string(),
            client_id: client_id.to_string(),
            producer,
        })
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    pub async fn publish(&self, record: &Record) -> Result<(), BusError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let message = FutureRecord::to(&record.topic)
            .key(&record.key)
            .payload(&record.payload)
            .headers(headers);
        self.producer
            .send(message, SEND_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| BusError::Kafka(e))
    }

    pub async fn ensure_topics(&self, topics: &[&str], partitions: i32) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = admin
            .create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(BusError::Admin(format!("{topic}: {code}"))),
            }
        }
        Ok(())
    }

    pub fn subscribe(&self, group: &str, topics: &[&str]) -> Result<KafkaSubscription, BusError> {
        let consumer: StreamConsumer<LagReporter> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set(
                "statistics.interval.ms",
                LAG_INTERVAL.as_millis().to_string(),
            )
            .create_with_context(LagReporter {
                group: group.to_string(),
            })?;
        consumer.subscribe(topics)?;
        Ok(KafkaSubscription { consumer })
    }

    /// A metadata request: the broker answers its own protocol.
    pub async fn check(&self) -> Result<(), String> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// A consumer group member.
pub struct KafkaSubscription {
    consumer: StreamConsumer<LagReporter>,
}

impl KafkaSubscription {
    pub async fn next(&mut self) -> Result<Received, BusError> {
        let m = self.consumer.recv().await?;
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Received {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        })
    }

    pub fn commit(&mut self, record: &Received) -> Result<(), BusError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &record.topic,
            record.partition,
            Offset::Offset(record.offset + 1),
        )?;
        self.consumer.commit(&tpl, CommitMode::Async)?;
        Ok(())
    }
}
