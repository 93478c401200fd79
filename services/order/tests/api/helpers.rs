//! `spawn_world()`: the order service with a real search service and a real cart service in
//! the same process (one `Platform`), either on the local stack (MariaDB for order and cart,
//! Kafka topics of the test's own) or on the embedded twins (SQLite, in-process bus).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::backend::{EventsUrl, SqlUrl};
use storefront_kit::bus::{Bus, Record, Subscription};
use storefront_kit::event::Envelope;
use storefront_kit::server::Platform;
use storefront_order::Settings;
use storefront_tests::{KafkaTopic, MysqlDatabase, Stack};

/// Which engines a test world runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backends {
    /// MariaDB (order, cart) and Kafka of the local stack.
    Real,
    /// SQLite and the in-process bus.
    Embedded,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub backends: Backends,
    pub relay: bool,
    pub auto_confirm: bool,
}

impl Options {
    pub fn new(backends: Backends) -> Self {
        Self {
            backends,
            relay: true,
            auto_confirm: true,
        }
    }
}

/// Namespaces cleaned up when the world is dropped.
#[allow(dead_code)]
struct Namespaces {
    order_db: Option<MysqlDatabase>,
    cart_db: Option<MysqlDatabase>,
    topics: Vec<KafkaTopic>,
    dir: tempfile::TempDir,
}

pub struct World {
    pub order: String,
    pub cart: String,
    pub search: String,
    pub http: reqwest::Client,
    pub issuer: TestIssuer,
    pub platform: Platform,
    /// The order service's settings (to start a second instance on the same database).
    pub settings: Settings,
    pub events_url: EventsUrl,
    _namespaces: Namespaces,
}

impl Drop for World {
    fn drop(&mut self) {
        self.platform.shutdown.trigger();
    }
}

/// An HTTP answer: status, headers, JSON body (Null when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with `status`, naming `field` when given.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, field: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "status; body {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        if let Some(field) = field {
            let named = self.body["errors"]
                .as_array()
                .is_some_and(|es| es.iter().any(|e| e["field"] == field));
            assert!(named, "problem names `{field}`: {}", self.body);
        }
    }
}

pub async fn spawn_world(backends: Backends) -> World {
    spawn(Options::new(backends)).await
}

pub async fn spawn(options: Options) -> World {
    try_spawn(options)
        .await
        .expect("spawn search, cart and order")
}

async fn try_spawn(options: Options) -> anyhow::Result<World> {
    let dir = tempfile::tempdir()?;
    let platform = Platform::new(dir.path(), Duration::from_secs(10));
    let issuer = TestIssuer::new();
    let mut ns = Namespaces {
        order_db: None,
        cart_db: None,
        topics: Vec::new(),
        dir,
    };
    let group = storefront_tests::unique_name("order", '-');
    let (events_url, catalog_topic, orders_topic, deliveries_topic) = match options.backends {
        Backends::Real => {
            let stack = Stack::get();
            let catalog = stack.kafka_topic("catalog", 3).await?;
            let orders = stack.kafka_topic("orders", 3).await?;
            let deliveries = stack.kafka_topic("deliveries", 3).await?;
            let names = (
                catalog.name().to_string(),
                orders.name().to_string(),
                deliveries.name().to_string(),
            );
            ns.topics = vec![catalog, orders, deliveries];
            (
                EventsUrl::parse(&stack.kafka_url())?,
                names.0,
                names.1,
                names.2,
            )
        }
        Backends::Embedded => (
            EventsUrl::in_memory(),
            "catalog.v1".to_string(),
            "orders.v1".to_string(),
            "deliveries.v1".to_string(),
        ),
    };

    // search: embedded catalog and index; its catalog events feed the order's stock.
    let search_settings = storefront_search::Settings {
        listen: "127.0.0.1:0".into(),
        seed_demo: false,
        demo_products: 0,
        cache_capacity: 1_000,
        events_url: Some(events_url.clone()),
        catalog_topic: catalog_topic.clone(),
        consumer_group: format!("{group}-indexer"),
        orders_topic: orders_topic.clone(),
        stock_consumer_group: format!("{group}-stock"),
        ..storefront_search::Settings::default()
    };
    let search = storefront_search::app::build_with(&search_settings, &platform, issuer.verifier())
        .await
        .context("build search")?;
    let search_base = format!("http://127.0.0.1:{}", search.port());
    tokio::spawn(search.run_until_stopped(platform.clone()));

    // cart: on MariaDB for the real world.
    // It follows the order's events to take placed orders out of their carts.
    let mut cart_settings = storefront_cart::Settings {
        listen: "127.0.0.1:0".into(),
        search_url: search_base.clone(),
        events_url: Some(events_url.clone()),
        orders_topic: orders_topic.clone(),
        checkout_consumer_group: format!("{group}-checkout"),
        ..storefront_cart::Settings::default()
    };
    let mut order_settings = Settings {
        listen: "127.0.0.1:0".into(),
        events_url: Some(events_url.clone()),
        auto_confirm: options.auto_confirm,
        relay_enabled: options.relay,
        orders_topic: orders_topic.clone(),
        deliveries_topic,
        catalog_topic,
        consumer_group: group,
        ..Settings::default()
    };
    if options.backends == Backends::Real {
        let stack = Stack::get();
        let cart_db = stack.mysql_database().await?;
        let order_db = stack.mysql_database().await?;
        cart_settings.database_url = Some(SqlUrl::parse(cart_db.url())?);
        order_settings.database_url = Some(SqlUrl::parse(order_db.url())?);
        ns.cart_db = Some(cart_db);
        ns.order_db = Some(order_db);
    }
    let cart = storefront_cart::app::build_with(&cart_settings, &platform, issuer.verifier())
        .await
        .context("build cart")?;
    let cart_base = format!("http://127.0.0.1:{}", cart.port());
    tokio::spawn(cart.run_until_stopped(platform.clone()));

    order_settings.cart_url = cart_base.clone();
    let order_base = start_order(&order_settings, &platform, &issuer).await?;
    Ok(World {
        order: order_base,
        cart: cart_base,
        search: search_base,
        http: reqwest::Client::new(),
        issuer,
        platform,
        settings: order_settings,
        events_url,
        _namespaces: ns,
    })
}

/// Builds and runs one order service instance; its base URL.
pub async fn start_order(
    settings: &Settings,
    platform: &Platform,
    issuer: &TestIssuer,
) -> anyhow::Result<String> {
    let app = storefront_order::app::build_with(settings, platform, issuer.verifier())
        .await
        .context("build order")?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(platform.clone()));
    Ok(base)
}

/// A valid order body.
pub fn order_body() -> Value {
    json!({
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "shipping": {"name": "Ada Lovelace", "phone": "+49 30 1234567", "line1": "1 Main Street",
                     "city": "Berlin", "postal_code": "10115", "country": "DE"}
    })
}

/// A fresh idempotency key.
pub fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl World {
    pub fn admin(&self) -> String {
        self.issuer.token("admin-1", &[Role::Admin])
    }

    pub fn customer(&self, user: &str) -> String {
        self.issuer.token(user, &[Role::Customer])
    }

    /// A JSON call with an optional token, extra headers and body.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body");
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub async fn order_call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.call(method, &format!("{}{path}", self.order), token, &[], body)
            .await
    }

    /// `POST /v1/orders` with an idempotency key.
    pub async fn place(&self, token: &str, key: &str, body: &Value) -> Answer {
        self.call(
            Method::POST,
            &format!("{}/v1/orders", self.order),
            Some(token),
            &[("idempotency-key", key)],
            Some(body),
        )
        .await
    }

    /// `POST /v1/orders/{id}/cancel` as `token`, with an optional body.
    pub async fn cancel(&self, token: &str, id: &str, body: Option<&Value>) -> Answer {
        self.order_call(
            Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            Some(token),
            body,
        )
        .await
    }

    /// Creates a product in search (admin); its id.
    pub async fn product(&self, title: &str, minor: i64, stock_hint: u32) -> String {
        let body = json!({
            "sku": storefront_tests::unique_name("T", '-').to_uppercase(),
            "title": title,
            "description": "A product for the order tests.",
            "brand": "Testbrand",
            "category": "home/kitchen",
            "price": {"minor": minor, "currency": "EUR"},
            "attributes": {},
            "images": [],
            "stock_hint": stock_hint
        });
        let r = self
            .call(
                Method::POST,
                &format!("{}/v1/products", self.search),
                Some(&self.admin()),
                &[],
                Some(&body),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "create product: {}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }

    /// The stock of a product (admin), `None` when it has no stock row.
    pub async fn stock(&self, product: &str) -> Option<i64> {
        let r = self
            .order_call(
                Method::GET,
                &format!("/v1/stock/{product}"),
                Some(&self.admin()),
                None,
            )
            .await;
        match r.status {
            StatusCode::OK => r.body["available"].as_i64(),
            StatusCode::NOT_FOUND => None,
            s => panic!("GET stock: {s} {}", r.body),
        }
    }

    /// Waits until the order service has initialised the product's stock from `catalog.v1`.
    pub async fn wait_for_stock(&self, product: &str) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(n) = self.stock(product).await {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "stock of {product} never initialised"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn set_stock(&self, product: &str, available: i64) {
        let r = self
            .order_call(
                Method::PUT,
                &format!("/v1/stock/{product}"),
                Some(&self.admin()),
                Some(&json!({ "available": available })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "PUT stock: {}", r.body);
    }

    /// Adds `quantity` of `product` to the cart of the token's user.
    pub async fn add_to_cart(&self, token: &str, product: &str, quantity: i64) {
        let r = self
            .call(
                Method::POST,
                &format!("{}/v1/cart/items", self.cart),
                Some(token),
                &[],
                Some(&json!({"product_id": product, "quantity": quantity})),
            )
            .await;
        assert!(
            r.status.is_success(),
            "add to cart: {} {}",
            r.status,
            r.body
        );
    }

    pub async fn cart_of(&self, token: &str) -> Value {
        let r = self
            .call(
                Method::GET,
                &format!("{}/v1/cart", self.cart),
                Some(token),
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "GET cart: {}", r.body);
        r.body
    }

    /// Waits until the cart of the token's user is empty: a placed order leaves its cart
    /// through its `OrderPlaced` event, moments after the answer.
    pub async fn wait_for_empty_cart(&self, token: &str) {
        let waited = storefront_tests::wait_until(Duration::from_secs(30), || async {
            Ok((self.cart_of(token).await["item_count"] == 0).then_some(()))
        })
        .await;
        if let Err(e) = waited {
            panic!(
                "the placed order never left the cart: {e}; {}",
                self.cart_of(token).await
            );
        }
    }

    /// A product with `stock` units, initialised through `catalog.v1` and then set.
    pub async fn stocked_product(&self, title: &str, minor: i64, stock: i64) -> String {
        let id = self.product(title, minor, 7).await;
        self.wait_for_stock(&id).await;
        self.set_stock(&id, stock).await;
        id
    }

    /// Deletes a product's stock row straight in the order database (as if it never had one).
    pub async fn delete_stock_row(&self, product: &str) {
        let url = self.settings.database(&self.platform.data_dir);
        let sql = "DELETE FROM stock WHERE product_id = ?";
        match url.location() {
            storefront_kit::backend::Location::Path(path) => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let pool = sqlx::SqlitePool::connect_with(opts).await.expect("sqlite");
                sqlx::query(sql)
                    .bind(product)
                    .execute(&pool)
                    .await
                    .expect("delete");
                pool.close().await;
            }
            _ => {
                let pool = sqlx::MySqlPool::connect(url.expose()).await.expect("mysql");
                sqlx::query(sql)
                    .bind(product)
                    .execute(&pool)
                    .await
                    .expect("delete");
                pool.close().await;
            }
        }
    }

    /// A reader of the orders topic from its beginning (a consumer group of its own).
    pub fn events(&self) -> Events {
        self.topic_reader(&self.settings.orders_topic)
    }

    pub fn topic_reader(&self, topic: &str) -> Events {
        let bus = self.bus();
        let group = storefront_tests::unique_name("reader", '-');
        Events {
            sub: bus.subscribe(&group, &[topic]).expect("subscribe"),
            seen: Vec::new(),
        }
    }

    /// The events bus of this world (Kafka or the in-process bus).
    pub fn bus(&self) -> Bus {
        Bus::connect(&self.events_url, "order-tests", &self.platform.memory_bus).expect("bus")
    }

    /// Publishes a `deliveries.v1` event as the delivery service would.
    pub async fn publish_delivery(&self, envelope: &Envelope) {
        let record = Record {
            topic: self.settings.deliveries_topic.clone(),
            key: envelope.subject.clone(),
            payload: envelope.to_json().expect("json"),
            headers: vec![("event-type".into(), envelope.event_type.clone())],
        };
        self.bus().publish(&record).await.expect("publish");
    }

    /// Polls the order (as admin) until `check` holds.
    pub async fn wait_for_order(&self, id: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .order_call(
                    Method::GET,
                    &format!("/v1/orders/{id}"),
                    Some(&self.admin()),
                    None,
                )
                .await;
            if r.status == StatusCode::OK && check(&r.body) {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "order {id} never matched: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Envelopes read from a topic.
pub struct Events {
    sub: Subscription,
    pub seen: Vec<Envelope>,
}

impl Events {
    /// Reads until `done` holds on everything seen, or panics after `timeout`.
    pub async fn until(&mut self, timeout: Duration, done: impl Fn(&[Envelope]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "events never matched; seen: {:#?}",
                self.types()
            );
            if let Ok(Ok(r)) = tokio::time::timeout(left, self.sub.next()).await {
                self.seen
                    .push(Envelope::from_json(&r.payload).expect("envelope"));
            }
        }
    }

    /// Reads whatever arrives within `window`.
    pub async fn drain(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.sub.next()).await {
                Ok(Ok(r)) => self
                    .seen
                    .push(Envelope::from_json(&r.payload).expect("envelope")),
                _ => return,
            }
        }
    }

    pub fn of(&self, event_type: &str, subject: &str) -> Vec<&Envelope> {
        self.seen
            .iter()
            .filter(|e| e.event_type == event_type && e.subject == subject)
            .collect()
    }

    pub fn types(&self) -> Vec<(String, String)> {
        self.seen
            .iter()
            .map(|e| (e.event_type.clone(), e.subject.clone()))
            .collect()
    }
}

/// Tokens that must all be rejected with 401 (kit's corpus, signed with the world's key).
pub fn jwt_negative_corpus(issuer: &TestIssuer) -> Vec<(&'static str, String)> {
    storefront_kit::auth::testing::negative_corpus(issuer.issuer())
}
