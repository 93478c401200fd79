//! Settings of the cart service (`[cart]` in the settings file, `STOREFRONT_CART__*` in
//! the environment).

use std::path::Path;

use serde::Deserialize;
use storefront_kit::auth::VerifierSettings;
use storefront_kit::backend::{BackendUrl, CacheUrl, EventsUrl, SqlUrl};
use storefront_kit::client::ClientSettings;

use crate::domain::DEFAULT_CURRENCY;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";
/// Where the `storefront` binary runs the search service.
pub const DEFAULT_SEARCH_URL: &str = "http://127.0.0.1:8082";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// Cart database: `mysql://` or `sqlite://`; `sqlite://<data-dir>/cart.db` when unset.
    pub database_url: Option<SqlUrl>,
    /// Cart cache: `redis://` or `memory://` (the default when unset).
    pub cache_url: Option<CacheUrl>,
    /// Prefix of every cache key (Redis): carts live at `<prefix>:cart:<user>`.
    pub cache_prefix: String,
    /// How long a cart stays cached.
    pub cache_ttl_secs: u64,
    /// Carts kept by the in-memory cache.
    pub cache_capacity: usize,
    /// Events: `kafka://` or `memory://` (the default when unset). The cart follows the
    /// order service's `OrderPlaced` events to take placed orders out of their carts.
    pub events_url: Option<EventsUrl>,
    /// Put before the topic name and the consumer group (`<prefix>orders.v1`), so several
    /// Storefronts can share one Kafka cluster; empty by default.
    pub topic_prefix: String,
    /// Topic the order service's events go to.
    pub orders_topic: String,
    /// Consumer group of the checkout follower.
    pub checkout_consumer_group: String,
    /// How long the checkout follower gathers placed orders before taking them out of their
    /// carts together (one database statement for all of them): a placed order's cart is
    /// emptied this much later at most, plus the event's way through the bus.
    pub checkout_linger_ms: u64,
    /// Base URL of the search service (products and their current prices).
    pub search_url: String,
    /// Timeouts and retries of calls to the search service.
    pub search_client: ClientSettings,
    /// How long `GET /v1/cart` waits for current prices before showing the captured ones.
    pub price_timeout_ms: u64,
    /// Currency of the total of an empty cart (ISO 4217).
    pub currency: String,
    /// Where access tokens are verified.
    pub auth: VerifierSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            database_url: None,
            cache_url: None,
            cache_prefix: "cart".to_string(),
            cache_ttl_secs: 300,
            cache_capacity: crate::adapters::memory::DEFAULT_CAPACITY,
            events_url: None,
            topic_prefix: String::new(),
            orders_topic: storefront_kit::event::topics::ORDERS.to_string(),
            checkout_consumer_group: crate::service::CHECKOUT_CONSUMER.to_string(),
            checkout_linger_ms: 20,
            search_url: DEFAULT_SEARCH_URL.to_string(),
            search_client: ClientSettings {
                connect_timeout_ms: 500,
                request_timeout_ms: 2_000,
                max_retries: 1,
                ..ClientSettings::default()
            },
            price_timeout_ms: 1_500,
            currency: DEFAULT_CURRENCY.to_string(),
            auth: VerifierSettings::default(),
        }
    }
}

impl Settings {
    /// The database backend: the configured URL, or `sqlite://<data-dir>/cart.db`.
    pub fn database(&self, data_dir: &Path) -> SqlUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| SqlUrl::embedded_path("sqlite", &data_dir.join("cart.db")))
    }

    /// The cache backend: the configured URL, or `memory://`.
    pub fn cache(&self, _data_dir: &Path) -> CacheUrl {
        self.cache_url.clone().unwrap_or_else(CacheUrl::in_memory)
    }

    /// The events backend: the configured URL, or `memory://`.
    pub fn events(&self, _data_dir: &Path) -> EventsUrl {
        self.events_url.clone().unwrap_or_else(EventsUrl::in_memory)
    }

    /// `name` with the topic prefix before it (topics and consumer groups).
    pub fn prefixed(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// Every backend with the name `/readyz` reports it under.
    pub fn backends(&self, data_dir: &Path) -> Vec<(&'static str, BackendUrl)> {
        vec![
            ("database", BackendUrl::clone(&self.database(data_dir))),
            ("cache", BackendUrl::clone(&self.cache(data_dir))),
            ("events", BackendUrl::clone(&self.events(data_dir))),
        ]
    }
}
