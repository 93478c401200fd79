//! Settings of the notification service (`[notification]` in the settings file, `STOREFRONT_NOTIFICATION__*` in
//! the environment).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use storefront_kit::auth::VerifierSettings;
use storefront_kit::backend::{BackendUrl, EventsUrl, MailUrl, SqlUrl};
use storefront_kit::event::topics;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8086";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// database backend; embedded default when unset.
    pub database_url: Option<SqlUrl>,
    /// events backend; embedded default when unset.
    pub events_url: Option<EventsUrl>,
    /// mail backend; embedded default when unset. `smtp://host:port` (add `?tls=required`
    /// for STARTTLS, `user:password@` for AUTH), `smtps://host:port`, or `file://<dir>`.
    pub mail_url: Option<MailUrl>,
    /// Topic the order events are read from.
    pub orders_topic: String,
    /// Put before every topic name and the consumer group (`<prefix>orders.v1`), so several
    /// Storefronts can share one Kafka cluster; empty by default.
    pub topic_prefix: String,
    /// Topic the delivery events are read from.
    pub deliveries_topic: String,
    /// Topic failed notifications go to (`NotificationFailed`).
    pub dlq_topic: String,
    /// Consumer group prefix (`<group>-orders`, `<group>-deliveries`).
    pub consumer_group: String,
    /// Consumers per topic on Kafka, each taking its share of the partitions, so e-mails to
    /// different partitions are sent concurrently (the in-process bus always uses one).
    pub consumers_per_topic: u32,
    /// The From of every message.
    pub from: String,
    /// A directory whose `<template>.subject.txt`, `.txt` and `.html` files replace the
    /// compiled-in templates, file by file.
    pub templates_dir: Option<PathBuf>,
    /// Sending attempts before a message goes to the dead-letter topic.
    pub max_attempts: u32,
    /// Back-off before the second attempt; doubles for each further one (at most 10 s).
    pub retry_base_ms: u64,
    /// Timeout of each SMTP command (connect included).
    pub smtp_timeout_secs: u64,
    /// Connections kept open to the mail server.
    pub smtp_pool_size: u32,
    /// How long a delivery event waits for its order's events before it is dead-lettered.
    pub unknown_order_grace_secs: u64,
    /// Where access tokens are verified.
    pub auth: VerifierSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            database_url: None,
            events_url: None,
            mail_url: None,
            orders_topic: topics::ORDERS.to_string(),
            topic_prefix: String::new(),
            deliveries_topic: topics::DELIVERIES.to_string(),
            dlq_topic: topics::NOTIFICATIONS_DLQ.to_string(),
            consumer_group: "notification".to_string(),
            consumers_per_topic: 3,
            from: "Storefront <no-reply@storefront.local>".to_string(),
            templates_dir: None,
            max_attempts: 5,
            retry_base_ms: 500,
            smtp_timeout_secs: 10,
            smtp_pool_size: 4,
            unknown_order_grace_secs: 300,
            auth: VerifierSettings::default(),
        }
    }
}

impl Settings {
    /// These settings with `topic_prefix` applied to every topic and the consumer group
    /// (and the prefix then cleared, so applying it twice changes nothing).
    pub fn prefixed(&self) -> Self {
        let mut s = self.clone();
        s.orders_topic = format!("{}{}", self.topic_prefix, self.orders_topic);
        s.deliveries_topic = format!("{}{}", self.topic_prefix, self.deliveries_topic);
        s.dlq_topic = format!("{}{}", self.topic_prefix, self.dlq_topic);
        s.consumer_group = format!("{}{}", self.topic_prefix, self.consumer_group);
        s.topic_prefix.clear();
        s
    }

    /// The database backend: the configured URL, or `sqlite://<data-dir>/notification.db`.
    pub fn database(&self, data_dir: &Path) -> SqlUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| SqlUrl::embedded_path("sqlite", &data_dir.join("notification.db")))
    }

    /// The events backend: the configured URL, or `memory://`.
    pub fn events(&self, _data_dir: &Path) -> EventsUrl {
        self.events_url.clone().unwrap_or_else(EventsUrl::in_memory)
    }

    /// The mail backend: the configured URL, or `file://<data-dir>/mailbox`.
    pub fn mail(&self, data_dir: &Path) -> MailUrl {
        self.mail_url
            .clone()
            .unwrap_or_else(|| MailUrl::embedded_path("file", &data_dir.join("mailbox")))
    }

    /// Every backend with the name `/readyz` reports it under.
    pub fn backends(&self, data_dir: &Path) -> Vec<(&'static str, BackendUrl)> {
        vec![
            ("database", BackendUrl::clone(&self.database(data_dir))),
            ("events", BackendUrl::clone(&self.events(data_dir))),
            ("mail", BackendUrl::clone(&self.mail(data_dir))),
        ]
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn topic_prefix_applies_once_to_topics_and_group() {
        let env =
            [("STOREFRONT_TOPIC_PREFIX", "shop.")].map(|(k, v)| (k.to_string(), v.to_string()));
        let s: Settings = storefront_kit::settings::load_from(None, env).expect("load");
        let p = s.prefixed();
        assert_eq!(p.orders_topic, "shop.orders.v1");
        assert_eq!(p.deliveries_topic, "shop.deliveries.v1");
        assert!(p.consumer_group.starts_with("shop."));
        assert_eq!(p.prefixed().orders_topic, "shop.orders.v1");
    }
}
