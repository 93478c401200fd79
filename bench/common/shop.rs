//! What `bench/orders` and `bench/pipeline` both start: search, cart and order in this
//! process on the real stack, each with Kafka topics and a MariaDB database of its own, and
//! products with plenty of stock. Both benches include this file (`#[path]`).

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::backend::{CacheUrl, EventsUrl, SqlUrl};
use storefront_kit::server::Platform;
use storefront_tests::{KafkaTopic, MysqlDatabase, RedisNamespace, Stack};

/// Search, cart and order, running; the namespaces live as long as this.
#[allow(
    dead_code,
    reason = "each bench reads the fields it needs; the topics are kept alive"
)]
pub struct Shop {
    pub platform: Platform,
    pub issuer: TestIssuer,
    pub events: EventsUrl,
    pub catalog: KafkaTopic,
    pub orders: KafkaTopic,
    pub deliveries: KafkaTopic,
    pub search: String,
    pub cart: String,
    pub order: String,
    /// The cart service's database.
    pub cart_db: MysqlDatabase,
    _order_db: MysqlDatabase,
    _cart_cache: RedisNamespace,
    _dir: tempfile::TempDir,
}

/// `http://127.0.0.1:<port>`.
pub fn local(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

impl Shop {
    /// Starts search (embedded catalog and index), cart (MariaDB, its cache in Redis) and
    /// order (MariaDB, Kafka) on topics named after `label`; `order` adjusts the order
    /// service's settings.
    pub async fn start(
        stack: &Stack,
        label: &str,
        order: impl FnOnce(&mut storefront_order::Settings),
    ) -> anyhow::Result<Self> {
        let catalog = stack.kafka_topic(&format!("{label}-catalog"), 3).await?;
        let orders = stack.kafka_topic(&format!("{label}-orders"), 3).await?;
        let deliveries = stack.kafka_topic(&format!("{label}-deliveries"), 3).await?;
        let cart_db = stack.mysql_database().await?;
        let order_db = stack.mysql_database().await?;
        let cart_cache = stack.redis_namespace().await?;
        let dir = tempfile::tempdir()?;
        let platform = Platform::new(dir.path(), Duration::from_secs(10));
        let issuer = TestIssuer::new();
        let events = EventsUrl::parse(&stack.kafka_url())?;

        let search = storefront_search::app::build_with(
            &storefront_search::Settings {
                listen: "127.0.0.1:0".into(),
                seed_demo: false,
                demo_products: 0,
                events_url: Some(events.clone()),
                catalog_topic: catalog.name().to_string(),
                consumer_group: format!("{}-indexer", catalog.name()),
                orders_topic: orders.name().to_string(),
                stock_consumer_group: format!("{}-stock", orders.name()),
                ..storefront_search::Settings::default()
            },
            &platform,
            issuer.verifier(),
        )
        .await
        .context("search")?;
        let search_base = local(search.port());
        tokio::spawn(search.run_until_stopped(platform.clone()));
        let cart = storefront_cart::app::build_with(
            &storefront_cart::Settings {
                listen: "127.0.0.1:0".into(),
                database_url: Some(SqlUrl::parse(cart_db.url())?),
                // As in Kubernetes: the cart cache in Redis, not in the process.
                cache_url: Some(CacheUrl::parse(&stack.redis_url)?),
                cache_prefix: cart_cache.prefix().trim_end_matches(':').to_string(),
                search_url: search_base.clone(),
                // Placed orders leave their carts through the order service's events.
                events_url: Some(events.clone()),
                orders_topic: orders.name().to_string(),
                checkout_consumer_group: format!("{}-checkout", orders.name()),
                ..storefront_cart::Settings::default()
            },
            &platform,
            issuer.verifier(),
        )
        .await
        .context("cart")?;
        let cart_base = local(cart.port());
        tokio::spawn(cart.run_until_stopped(platform.clone()));
        let mut order_settings = storefront_order::Settings {
            listen: "127.0.0.1:0".into(),
            database_url: Some(SqlUrl::parse(order_db.url())?),
            events_url: Some(events.clone()),
            cart_url: cart_base.clone(),
            orders_topic: orders.name().to_string(),
            deliveries_topic: deliveries.name().to_string(),
            catalog_topic: catalog.name().to_string(),
            consumer_group: orders.name().to_string(),
            ..storefront_order::Settings::default()
        };
        order(&mut order_settings);
        let order_app =
            storefront_order::app::build_with(&order_settings, &platform, issuer.verifier())
                .await
                .context("order")?;
        let order_base = local(order_app.port());
        tokio::spawn(order_app.run_until_stopped(platform.clone()));
        Ok(Self {
            platform,
            issuer,
            events,
            catalog,
            orders,
            deliveries,
            search: search_base,
            cart: cart_base,
            order: order_base,
            cart_db,
            _order_db: order_db,
            _cart_cache: cart_cache,
            _dir: dir,
        })
    }

    /// Creates `n` products through search (SKUs `<sku_prefix>-<k>-...`), waits until the
    /// order service has their stock rows (from `catalog.v1`), sets each to 10^9; their ids.
    pub async fn stocked_products(
        &self,
        http: &reqwest::Client,
        n: usize,
        sku_prefix: &str,
    ) -> anyhow::Result<Vec<String>> {
        let admin = self.issuer.token("bench-admin", &[Role::Admin]);
        let mut products = Vec::new();
        for k in 0..n.max(1) {
            let r = http
                .post(format!("{}/v1/products", self.search))
                .bearer_auth(&admin)
                .json(&json!({
                    "sku": format!("{sku_prefix}-{k}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
                    "title": format!("Bench product {k}"), "description": "Benchmark product.",
                    "brand": "Bench", "category": "home/kitchen",
                    "price": {"minor": 500, "currency": "EUR"}, "attributes": {}, "images": [],
                    "stock_hint": 1
                }))
                .send()
                .await?;
            if r.status() != reqwest::StatusCode::CREATED {
                bail!("create product: {} {}", r.status(), r.text().await?);
            }
            let id = r.json::<Value>().await?["id"]
                .as_str()
                .context("product id")?
                .to_string();
            let stock = format!("{}/v1/stock/{id}", self.order);
            storefront_tests::wait_until(Duration::from_secs(60), || {
                let (admin, url) = (&admin, stock.clone());
                async move {
                    let r = http.get(url).bearer_auth(admin).send().await?;
                    Ok(r.status().is_success().then_some(()))
                }
            })
            .await
            .context("stock initialised from catalog.v1")?;
            http.put(&stock)
                .bearer_auth(&admin)
                .json(&json!({"available": 1_000_000_000}))
                .send()
                .await?
                .error_for_status()?;
            products.push(id);
        }
        Ok(products)
    }
}
