//! Settings of the delivery service (`[delivery]` in the settings file, `STOREFRONT_DELIVERY__*` in
//! the environment).

use std::path::Path;

use serde::Deserialize;
use storefront_kit::auth::VerifierSettings;
use storefront_kit::backend::{BackendUrl, EventsUrl, SqlUrl};
use storefront_kit::event::topics;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8085";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// database backend; embedded default when unset.
    pub database_url: Option<SqlUrl>,
    /// events backend; embedded default when unset.
    pub events_url: Option<EventsUrl>,
    /// Topic the order events are read from.
    pub orders_topic: String,
    /// Put before every topic name and the consumer group (`<prefix>orders.v1`), so several
    /// Storefronts can share one Kafka cluster; empty by default.
    pub topic_prefix: String,
    /// Topic the delivery events go to.
    pub deliveries_topic: String,
    /// Consumer group of the order follower.
    pub consumer_group: String,
    /// How often pending deliveries are offered to the partners again (they also are at once
    /// when a partner comes on shift or frees a slot).
    pub retry_interval_secs: u64,
    /// Where access tokens are verified.
    pub auth: VerifierSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            database_url: None,
            events_url: None,
            orders_topic: topics::ORDERS.to_string(),
            topic_prefix: String::new(),
            deliveries_topic: topics::DELIVERIES.to_string(),
            consumer_group: "delivery".to_string(),
            retry_interval_secs: 10,
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
        s.consumer_group = format!("{}{}", self.topic_prefix, self.consumer_group);
        s.topic_prefix.clear();
        s
    }

    /// The database backend: the configured URL, or `sqlite://<data-dir>/delivery.db`.
    pub fn database(&self, data_dir: &Path) -> SqlUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| SqlUrl::embedded_path("sqlite", &data_dir.join("delivery.db")))
    }

    /// The events backend: the configured URL, or `memory://`.
    pub fn events(&self, _data_dir: &Path) -> EventsUrl {
        self.events_url.clone().unwrap_or_else(EventsUrl::in_memory)
    }

    /// Every backend with the name `/readyz` reports it under.
    pub fn backends(&self, data_dir: &Path) -> Vec<(&'static str, BackendUrl)> {
        vec![
            ("database", BackendUrl::clone(&self.database(data_dir))),
            ("events", BackendUrl::clone(&self.events(data_dir))),
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
