//! Settings of the search service (`[search]` in the settings file, `STOREFRONT_SEARCH__*` in
//! the environment).

use std::path::Path;

use serde::Deserialize;
use storefront_kit::auth::VerifierSettings;
use storefront_kit::backend::{BackendUrl, CacheUrl, DocumentsUrl, EventsUrl, SearchIndexUrl};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8082";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// catalog backend; embedded default when unset.
    pub catalog_url: Option<DocumentsUrl>,
    /// index backend; embedded default when unset.
    pub index_url: Option<SearchIndexUrl>,
    /// cache backend; embedded default when unset.
    pub cache_url: Option<CacheUrl>,
    /// events backend; embedded default when unset.
    pub events_url: Option<EventsUrl>,
    /// Name of the search alias (Elasticsearch) the physical indexes hide behind.
    pub index_name: String,
    /// Prefix of every cache key (Redis).
    pub cache_prefix: String,
    /// How long search, suggestion and product responses stay cached.
    pub cache_ttl_secs: u64,
    /// Entries kept by the in-memory cache.
    pub cache_capacity: usize,
    /// Put before the topic name and the consumer group (`<prefix>catalog.v1`), so several
    /// Storefronts can share one Kafka cluster; empty by default.
    pub topic_prefix: String,
    /// Topic the catalog events go to.
    pub catalog_topic: String,
    /// Consumer group of the index follower.
    pub consumer_group: String,
    /// Topic the order service's events go to (search follows its `StockChanged`).
    pub orders_topic: String,
    /// Consumer group of the stock follower.
    pub stock_consumer_group: String,
    /// How long the stock follower gathers reports before applying them together: one index
    /// write and one cache invalidation per period under a stream of orders, at the price of
    /// availability lagging by up to this much.
    pub stock_linger_ms: u64,
    /// Fill an empty catalog with the demo catalog at startup.
    pub seed_demo: bool,
    /// How many demo products.
    pub demo_products: usize,
    /// Where access tokens are verified (admin writes need the admin role).
    pub auth: VerifierSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            catalog_url: None,
            index_url: None,
            cache_url: None,
            events_url: None,
            index_name: "products".to_string(),
            cache_prefix: "search".to_string(),
            cache_ttl_secs: 60,
            cache_capacity: crate::adapters::memory::DEFAULT_CAPACITY,
            topic_prefix: String::new(),
            catalog_topic: storefront_kit::event::topics::CATALOG.to_string(),
            consumer_group: "search-indexer".to_string(),
            orders_topic: storefront_kit::event::topics::ORDERS.to_string(),
            stock_consumer_group: "search-stock".to_string(),
            stock_linger_ms: 500,
            seed_demo: true,
            demo_products: 3_000,
            auth: VerifierSettings::default(),
        }
    }
}

impl Settings {
    /// A topic or consumer group name with the prefix applied.
    pub fn prefixed(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// The catalog backend: the configured URL, or `sqlite://<data-dir>/catalog.db`.
    pub fn catalog(&self, data_dir: &Path) -> DocumentsUrl {
        self.catalog_url
            .clone()
            .unwrap_or_else(|| DocumentsUrl::embedded_path("sqlite", &data_dir.join("catalog.db")))
    }

    /// The index backend: the configured URL, or `tantivy://<data-dir>/search-index`.
    pub fn index(&self, data_dir: &Path) -> SearchIndexUrl {
        self.index_url.clone().unwrap_or_else(|| {
            SearchIndexUrl::embedded_path("tantivy", &data_dir.join("search-index"))
        })
    }

    /// The cache backend: the configured URL, or `memory://`.
    pub fn cache(&self, _data_dir: &Path) -> CacheUrl {
        self.cache_url.clone().unwrap_or_else(CacheUrl::in_memory)
    }

    /// The events backend: the configured URL, or `memory://`.
    pub fn events(&self, _data_dir: &Path) -> EventsUrl {
        self.events_url.clone().unwrap_or_else(EventsUrl::in_memory)
    }

    /// Every backend with the name `/readyz` reports it under.
    pub fn backends(&self, data_dir: &Path) -> Vec<(&'static str, BackendUrl)> {
        vec![
            ("catalog", BackendUrl::clone(&self.catalog(data_dir))),
            ("index", BackendUrl::clone(&self.index(data_dir))),
            ("cache", BackendUrl::clone(&self.cache(data_dir))),
            ("events", BackendUrl::clone(&self.events(data_dir))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_prefix_from_the_environment_prefixes_topic_and_group() {
        let env =
            [("STOREFRONT_TOPIC_PREFIX", "shop.")].map(|(k, v)| (k.to_string(), v.to_string()));
        let s: Settings = storefront_kit::settings::load_from(None, env).expect("load");
        assert_eq!(s.prefixed(&s.catalog_topic), "shop.catalog.v1");
        assert_eq!(s.prefixed(&s.consumer_group), "shop.search-indexer");
        assert_eq!(s.prefixed(&s.orders_topic), "shop.orders.v1");
        assert_eq!(s.prefixed(&s.stock_consumer_group), "shop.search-stock");
    }
}
