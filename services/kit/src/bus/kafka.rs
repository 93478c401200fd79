//! Apache Kafka through rdkafka: an idempotent producer (`acks=all`) and consumers that commit
//! offsets only after their handler succeeded.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{BusError, Received, Record};

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

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
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()?;
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
    consumer: StreamConsumer,
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
