//! Settings of the order service (`[order]` in the settings file, `STOREFRONT_ORDER__*` in
//! the environment).

use std::path::Path;

use serde::Deserialize;
use storefront_kit::auth::VerifierSettings;
use storefront_kit::backend::{BackendUrl, EventsUrl, SqlUrl};
use storefront_kit::client::ClientSettings;
use storefront_kit::event::topics;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8084";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// database backend (`mysql://` or `sqlite://`); embedded default when unset.
    pub database_url: Option<SqlUrl>,
    /// events backend (`kafka://` or `memory://`); embedded default when unset.
    pub events_url: Option<EventsUrl>,
    /// Base URL of the cart service (the caller's cart is read there).
    pub cart_url: String,
    /// Timeouts and retries of the cart client.
    pub cart_client: ClientSettings,
    /// Confirm orders right after placement (payment is out of scope).
    pub auto_confirm: bool,
    /// Run the outbox relay (off only to test that a crash before publishing loses nothing).
    pub relay_enabled: bool,
    /// Put before every topic name and consumer group (`<prefix>orders.v1`), so several
    /// Storefronts can share one Kafka cluster; empty by default.
    pub topic_prefix: String,
    /// Topic the order and stock events go to.
    pub orders_topic: String,
    /// Topic of the delivery events the order status follows.
    pub deliveries_topic: String,
    /// Topic of the catalog events that create stock rows.
    pub catalog_topic: String,
    /// Consumer group prefix (`<prefix>-deliveries`, `<prefix>-catalog`).
    pub consumer_group: String,
    /// Where access tokens are verified.
    pub auth: VerifierSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            database_url: None,
            events_url: None,
            cart_url: "http://127.0.0.1:8083".to_string(),
            cart_client: ClientSettings::default(),
            auto_confirm: true,
            relay_enabled: true,
            topic_prefix: String::new(),
            orders_topic: topics::ORDERS.to_string(),
            deliveries_topic: topics::DELIVERIES.to_string(),
            catalog_topic: topics::CATALOG.to_string(),
            consumer_group: "order".to_string(),
            auth: VerifierSettings::default(),
        }
    }
}

impl Settings {
    /// The database backend: the configured URL, or `sqlite://<data-dir>/order.db`.
    pub fn database(&self, data_dir: &Path) -> SqlUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| SqlUrl::embedded_path("sqlite", &data_dir.join("order.db")))
    }

    /// The events backend: the configured URL, or `memory://`.
    pub fn events(&self, _data_dir: &Path) -> EventsUrl {
        self.events_url.clone().unwrap_or_else(EventsUrl::in_memory)
    }

    /// A topic or consumer group name with the prefix applied.
    pub fn prefixed(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
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
mod tests {
    use super::*;

    #[test]
    fn the_prefix_goes_before_topics_and_groups() {
        let mut s = Settings::default();
        assert_eq!(s.prefixed(&s.orders_topic), "orders.v1");
        s.topic_prefix = "shop-a.".into();
        assert_eq!(s.prefixed(&s.deliveries_topic), "shop-a.deliveries.v1");
        assert!(
            !s.relay_enabled || s.auto_confirm,
            "defaults: relay on, auto-confirm on"
        );
    }
}
