//! The platform's Kafka topics, managed through the Kafka admin API
//! (`topicManagement: admin`).
//!
//! Topic names are the platform's shared names (`catalog.v1`, `orders.v1`,
//! `deliveries.v1`, `notifications.dlq.v1`, from `storefront_kit::event::topics`)
//! behind the Storefront's optional `spec.backends.kafka.topicPrefix`. Two
//! Storefronts on one Kafka cluster without prefixes share their topics.
//!
//! On each reconcile: missing topics are created; partitions grow to the spec
//! (they never shrink: Kafka cannot, and the CRD forbids lowering the value);
//! `retention.ms` and `min.insync.replicas` are set back to the spec when they
//! drifted. Replication factor is only applied at creation.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use rdkafka::{
    ClientConfig,
    admin::{
        AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
        TopicReplication,
    },
    client::DefaultClientContext,
    error::KafkaError,
    types::RDKafkaErrorCode,
};

use crate::crd::{KafkaBackend, TopicSettings};

/// The platform's topics, without prefix.
pub const BASE_TOPICS: [&str; 4] = storefront_kit::event::topics::ALL;

/// Errors talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The admin client could not be built or a request failed as a whole.
    #[error("Kafka at {brokers}: {source}")]
    Kafka {
        /// Bootstrap servers.
        brokers: String,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// One topic's operation failed.
    #[error("Kafka topic {topic}: {operation} failed: {code}")]
    Topic {
        /// Topic name.
        topic: String,
        /// What was attempted.
        operation: &'static str,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}

/// Full topic names for a Kafka backend.
pub fn topic_names(kafka: &KafkaBackend) -> Vec<String> {
    BASE_TOPICS
        .iter()
        .map(|t| format!("{}{t}", kafka.topic_prefix))
        .collect()
}

/// The topic-level configuration the spec asks for.
pub fn desired_config(settings: &TopicSettings) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("retention.ms", settings.retention_ms.to_string()),
        (
            "min.insync.replicas",
            settings.min_insync_replicas.to_string(),
        ),
    ])
}

/// What one reconcile of the topics did, for events and status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TopicChanges {
    /// Topics created.
    pub created: Vec<String>,
    /// Topics whose partitions grew, with the new count.
    pub grown: Vec<(String, i32)>,
    /// Topics whose configuration was set back to the spec.
    pub reconfigured: Vec<String>,
}

impl TopicChanges {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.grown.is_empty() && self.reconfigured.is_empty()
    }
}

/// An admin client for one bootstrap list, with a bounded request timeout.
pub fn admin_client(
    brokers: &str,
    timeout: Duration,
) -> Result<Arc<AdminClient<DefaultClientContext>>, TopicError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", timeout.as_millis().to_string())
        .set("request.timeout.ms", timeout.as_millis().to_string())
        .create()
        .map(Arc::new)
        .map_err(|source| TopicError::Kafka {
            brokers: brokers.to_owned(),
            source,
        })
}

fn options(timeout: Duration) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout))
}

/// Current partition counts of the named topics that exist.
async fn partition_counts(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    brokers: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, i32>, TopicError> {
    // fetch_metadata blocks; keep it off the async workers.
    let admin = Arc::clone(admin);
    let metadata = tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout))
        .await
        .map_err(|_| TopicError::Kafka {
            brokers: brokers.to_owned(),
            source: KafkaError::Canceled,
        })?
        .map_err(|source| TopicError::Kafka {
            brokers: brokers.to_owned(),
            source,
        })?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            (
                t.name().to_owned(),
                i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
            )
        })
        .collect())
}

fn kafka_err(brokers: &str) -> impl Fn(KafkaError) -> TopicError + '_ {
    move |source| TopicError::Kafka {
        brokers: brokers.to_owned(),
        source,
    }
}

/// Bring the topics of a Kafka backend to the spec.
pub async fn ensure_topics(
    kafka: &KafkaBackend,
    timeout: Duration,
) -> Result<TopicChanges, TopicError> {
    let brokers = kafka.bootstrap_servers.as_str();
    let admin = admin_client(brokers, timeout)?;
    let opts = options(timeout);
    let names = topic_names(kafka);
    let settings = &kafka.topics;
    let config = desired_config(settings);
    let mut changes = TopicChanges::default();

    let existing = partition_counts(&admin, brokers, timeout).await?;

    // Create what is missing, with its configuration.
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !existing.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|name| {
                config.iter().fold(
                    NewTopic::new(
                        name,
                        settings.partitions,
                        TopicReplication::Fixed(settings.replication_factor),
                    ),
                    |t, (k, v)| t.set(k, v),
                )
            })
            .collect();
        for result in admin
            .create_topics(&new_topics, &opts)
            .await
            .map_err(kafka_err(brokers))?
        {
            match result {
                Ok(topic) => changes.created.push(topic),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(TopicError::Topic {
                        topic,
                        operation: "create",
                        code,
                    });
                }
            }
        }
    }

    // Grow partitions.
    let target = usize::try_from(settings.partitions).unwrap_or(1);
    let grow: Vec<NewPartitions<'_>> = names
        .iter()
        .filter(|n| {
            existing
                .get(*n)
                .is_some_and(|count| *count < settings.partitions)
        })
        .map(|n| NewPartitions::new(n, target))
        .collect();
    if !grow.is_empty() {
        for result in admin
            .create_partitions(&grow, &opts)
            .await
            .map_err(kafka_err(brokers))?
        {
            match result {
                Ok(topic) => changes.grown.push((topic, settings.partitions)),
                Err((topic, code)) => {
                    return Err(TopicError::Topic {
                        topic,
                        operation: "add partitions",
                        code,
                    });
                }
            }
        }
    }

    // Correct configuration drift on topics that already existed.
    let present: Vec<&String> = names.iter().filter(|n| existing.contains_key(*n)).collect();
    if !present.is_empty() {
        let specifiers: Vec<ResourceSpecifier<'_>> = present
            .iter()
            .map(|n| ResourceSpecifier::Topic(n))
            .collect();
        let described = admin
            .describe_configs(&specifiers, &opts)
            .await
            .map_err(kafka_err(brokers))?;
        let mut drifted = Vec::new();
        for (name, result) in present.iter().zip(described) {
            let resource = result.map_err(|code| TopicError::Topic {
                topic: (*name).clone(),
                operation: "describe configs",
                code,
            })?;
            let differs = config.iter().any(|(k, want)| {
                resource.get(k).and_then(|e| e.value.as_deref()) != Some(want.as_str())
            });
            if differs {
                drifted.push(*name);
            }
        }
        if !drifted.is_empty() {
            // AlterConfigs replaces the topic's whole dynamic configuration with
            // exactly the keys the operator manages.
            let alters: Vec<AlterConfig<'_>> = drifted
                .iter()
                .map(|n| {
                    config.iter().fold(
                        AlterConfig::new(ResourceSpecifier::Topic(n)),
                        |a, (k, v)| a.set(k, v),
                    )
                })
                .collect();
            for result in admin
                .alter_configs(&alters, &opts)
                .await
                .map_err(kafka_err(brokers))?
            {
                match result {
                    Ok(_) => {}
                    Err((_, code)) => {
                        return Err(TopicError::Topic {
                            topic: drifted
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            operation: "alter configs",
                            code,
                        });
                    }
                }
            }
            changes.reconfigured = drifted.into_iter().cloned().collect();
        }
    }
    Ok(changes)
}

/// Delete the topics of a Kafka backend; topics already gone are fine.
pub async fn delete_topics(
    kafka: &KafkaBackend,
    timeout: Duration,
) -> Result<Vec<String>, TopicError> {
    let brokers = kafka.bootstrap_servers.as_str();
    let admin = admin_client(brokers, timeout)?;
    // Probe the cluster first: librdkafka would otherwise queue the request
    // until the operation timeout when no broker is reachable.
    partition_counts(&admin, brokers, timeout).await?;
    let names = topic_names(kafka);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut deleted = Vec::new();
    for result in admin
        .delete_topics(&refs, &options(timeout))
        .await
        .map_err(kafka_err(brokers))?
    {
        match result {
            Ok(topic) => deleted.push(topic),
            Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => {
                return Err(TopicError::Topic {
                    topic,
                    operation: "delete",
                    code,
                });
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(prefix: &str) -> KafkaBackend {
        serde_json::from_value(serde_json::json!({
            "bootstrapServers": "k:9092", "topicPrefix": prefix
        }))
        .expect("kafka backend")
    }

    #[test]
    fn names_are_the_platform_topics_behind_the_prefix() {
        assert_eq!(
            topic_names(&kafka("")),
            vec![
                "catalog.v1",
                "orders.v1",
                "deliveries.v1",
                "notifications.dlq.v1"
            ]
        );
        assert_eq!(topic_names(&kafka("shop-a."))[1], "shop-a.orders.v1");
    }

    #[test]
    fn desired_config_carries_retention_and_min_insync() {
        let c = desired_config(&TopicSettings::default());
        assert_eq!(c["retention.ms"], "604800000");
        assert_eq!(c["min.insync.replicas"], "1");
        assert_eq!(c.len(), 2);
    }
}
