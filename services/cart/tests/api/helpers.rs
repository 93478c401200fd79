//! `spawn_app()`: the cart service on the real MariaDB, Redis and Kafka of the local stack
//! (each test in a database, key prefix and topic of its own) or on its embedded twins
//! (SQLite, memory, the in-process bus), with a real search service (embedded backends in a
//! temporary directory) as its catalog.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use storefront_cart::Settings;
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::backend::{CacheUrl, EventsUrl, SqlUrl};
use storefront_kit::bus::{Bus, Record};
use storefront_kit::event::Envelope;
use storefront_kit::server::Platform;
use storefront_tests::{KafkaTopic, MysqlDatabase, RedisNamespace, Stack};

/// Where the carts are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    /// MariaDB of the local stack.
    Mysql,
    /// SQLite in the test's directory.
    Sqlite,
}

/// Where carts are cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cache {
    /// Redis of the local stack, under the test's own prefix.
    Redis,
    /// In process memory.
    Memory,
    /// A Redis URL where nothing listens.
    Unreachable,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub database: Database,
    pub cache: Cache,
}

impl Options {
    /// MariaDB and Redis of the local stack.
    pub fn real() -> Self {
        Self {
            database: Database::Mysql,
            cache: Cache::Redis,
        }
    }

    /// SQLite and the memory cache.
    pub fn embedded() -> Self {
        Self {
            database: Database::Sqlite,
            cache: Cache::Memory,
        }
    }
}

/// A real search service on embedded backends: the catalog the cart reads.
pub struct Catalog {
    pub base: String,
    platform: Platform,
    _dir: tempfile::TempDir,
}

impl Drop for Catalog {
    fn drop(&mut self) {
        self.platform.shutdown.trigger();
    }
}

impl Catalog {
    async fn spawn(issuer: &TestIssuer) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let settings = storefront_search::Settings {
            listen: "127.0.0.1:0".into(),
            seed_demo: false,
            demo_products: 0,
            ..storefront_search::Settings::default()
        };
        let platform = Platform::new(dir.path(), Duration::from_secs(5));
        let app = storefront_search::app::build_with(&settings, &platform, issuer.verifier())
            .await
            .context("build search")?;
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(platform.clone()));
        Ok(Self {
            base,
            platform,
            _dir: dir,
        })
    }

    /// Stops the search service (to see the cart without its catalog).
    pub async fn stop(&self) {
        self.platform.shutdown.trigger();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), self.platform.shutdown.drained()).await;
    }
}

/// Namespaces that are cleaned up when the app is dropped.
#[allow(dead_code)]
struct Namespaces {
    mysql: Option<MysqlDatabase>,
    orders: Option<KafkaTopic>,
    dir: tempfile::TempDir,
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub issuer: TestIssuer,
    pub catalog: Catalog,
    pub platform: Platform,
    pub settings: Settings,
    /// The test's Redis prefix (with `Cache::Redis`).
    pub redis: Option<RedisNamespace>,
    _namespaces: Namespaces,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.platform.shutdown.trigger();
    }
}

pub async fn spawn_app(options: Options) -> TestApp {
    try_spawn(options).await.expect("spawn the cart service")
}

/// A port where nothing listens.
pub fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn try_spawn(options: Options) -> anyhow::Result<TestApp> {
    let issuer = TestIssuer::new();
    let catalog = Catalog::spawn(&issuer).await?;
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        search_url: catalog.base.clone(),
        ..Settings::default()
    };
    let mut namespaces = Namespaces {
        mysql: None,
        orders: None,
        dir,
    };
    let mut redis = None;
    // The order events come through Kafka with MariaDB, through the in-process bus with
    // SQLite (as in `storefront up`).
    if options.database == Database::Mysql {
        let stack = Stack::get();
        let db = stack.mysql_database().await?;
        settings.database_url = Some(SqlUrl::parse(db.url())?);
        namespaces.mysql = Some(db);
        let orders = stack.kafka_topic("orders", 3).await?;
        settings.events_url = Some(EventsUrl::parse(&stack.kafka_url())?);
        settings.orders_topic = orders.name().to_string();
        settings.checkout_consumer_group = format!("{}-checkout", orders.name());
        namespaces.orders = Some(orders);
    }
    match options.cache {
        Cache::Redis => {
            let stack = Stack::get();
            let ns = stack.redis_namespace().await?;
            settings.cache_url = Some(CacheUrl::parse(&stack.redis_url)?);
            settings.cache_prefix = ns.prefix().trim_end_matches(':').to_string();
            redis = Some(ns);
        }
        Cache::Memory => settings.cache_url = Some(CacheUrl::parse("memory://")?),
        Cache::Unreachable => {
            settings.cache_url = Some(CacheUrl::parse(&format!(
                "redis://127.0.0.1:{}",
                unused_port()
            ))?);
        }
    }
    let platform = Platform::new(namespaces.dir.path(), Duration::from_secs(10));
    let app = storefront_cart::app::build_with(&settings, &platform, issuer.verifier())
        .await
        .context("build cart")?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(platform.clone()));
    Ok(TestApp {
        base,
        http: reqwest::Client::new(),
        issuer,
        catalog,
        platform,
        settings,
        redis,
        _namespaces: namespaces,
    })
}

impl TestApp {
    /// A customer's token.
    pub fn token(&self, user: &str) -> String {
        self.issuer.token(user, &[Role::Customer])
    }

    fn admin(&self) -> String {
        self.issuer.token("admin-1", &[Role::Admin])
    }

    /// A raw call with an optional token and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.expect("request")
    }

    /// `GET /v1/cart` as `user`, asserting 200.
    pub async fn cart(&self, user: &str) -> Value {
        let r = self
            .send(Method::GET, "/v1/cart", Some(&self.token(user)), None)
            .await;
        assert_eq!(r.status(), StatusCode::OK, "GET /v1/cart");
        r.json().await.expect("json")
    }

    /// `POST /v1/cart/items` as `user`.
    pub async fn add(&self, user: &str, product: &str, quantity: i64) -> Response {
        self.send(
            Method::POST,
            "/v1/cart/items",
            Some(&self.token(user)),
            Some(&json!({"product_id": product, "quantity": quantity})),
        )
        .await
    }

    /// `PATCH /v1/cart/items/{product}` as `user`.
    pub async fn set(&self, user: &str, product: &str, quantity: i64) -> Response {
        self.send(
            Method::PATCH,
            &format!("/v1/cart/items/{product}"),
            Some(&self.token(user)),
            Some(&json!({ "quantity": quantity })),
        )
        .await
    }

    /// `DELETE /v1/cart/items/{product}` as `user`.
    pub async fn remove(&self, user: &str, product: &str) -> Response {
        self.send(
            Method::DELETE,
            &format!("/v1/cart/items/{product}"),
            Some(&self.token(user)),
            None,
        )
        .await
    }

    /// `DELETE /v1/cart` as `user`.
    pub async fn clear(&self, user: &str) -> Response {
        self.send(Method::DELETE, "/v1/cart", Some(&self.token(user)), None)
            .await
    }

    /// Creates a product in the catalog (admin); returns its id.
    pub async fn product(&self, title: &str, minor: i64, currency: &str) -> String {
        let r = self
            .http
            .post(format!("{}/v1/products", self.catalog.base))
            .bearer_auth(self.admin())
            .json(&product_body(title, minor, currency))
            .send()
            .await
            .expect("create product");
        assert_eq!(r.status(), StatusCode::CREATED, "create product");
        let body: Value = r.json().await.expect("json");
        body["id"].as_str().expect("id").to_string()
    }

    /// Changes a product's price in the catalog (admin).
    pub async fn reprice(&self, id: &str, minor: i64) {
        let url = format!("{}/v1/products/{id}", self.catalog.base);
        let current: Value = self
            .http
            .get(&url)
            .send()
            .await
            .expect("get product")
            .json()
            .await
            .expect("json");
        let mut body = product_body(
            current["title"].as_str().expect("title"),
            minor,
            current["price"]["currency"].as_str().expect("currency"),
        );
        body["sku"] = current["sku"].clone();
        let r = self
            .http
            .put(&url)
            .bearer_auth(self.admin())
            .header("if-match", format!("\"{}\"", current["version"]))
            .json(&body)
            .send()
            .await
            .expect("update product");
        assert_eq!(r.status(), StatusCode::OK, "update product");
    }

    /// Publishes an `OrderPlaced` event as the order service does: order `order` of `user`,
    /// placed from version `cart_version` of their cart, buying `lines` (product, quantity).
    pub async fn order_placed(
        &self,
        order: &str,
        user: &str,
        cart_version: u64,
        lines: &[(&str, u32)],
    ) {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(p, q)| json!({"product_id": p, "quantity": q}))
            .collect();
        let data = json!({
            "order_id": order, "user_id": user, "status": "PLACED",
            "lines": lines, "cart_version": cart_version,
        });
        let envelope = Envelope::new("OrderPlaced", "order", order, data);
        self.publish(order, envelope.to_json().expect("json")).await;
    }

    /// Stops this cart service, then starts another on the same settings (database, cache,
    /// orders topic and consumer group). Returns its platform (stop it when done) and base URL.
    pub async fn restart(&self) -> (Platform, String) {
        self.platform.shutdown.trigger();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), self.platform.shutdown.drained()).await;
        let platform = Platform::new(&self.platform.data_dir, Duration::from_secs(10));
        let app =
            storefront_cart::app::build_with(&self.settings, &platform, self.issuer.verifier())
                .await
                .expect("restart the cart service");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(platform.clone()));
        (platform, base)
    }

    /// Publishes `payload` on the orders topic under `key`.
    pub async fn publish(&self, key: &str, payload: Vec<u8>) {
        let bus = Bus::connect(
            &self.settings.events(self.platform.data_dir.as_path()),
            "cart-test",
            &self.platform.memory_bus,
        )
        .expect("bus");
        let record = Record {
            topic: self.settings.prefixed(&self.settings.orders_topic),
            key: key.to_string(),
            payload,
            headers: Vec::new(),
        };
        bus.publish(&record).await.expect("publish");
    }

    /// The cart of `user` once `done` holds for it (within 30 s).
    pub async fn cart_when(&self, user: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let waited = storefront_tests::wait_until(Duration::from_secs(30), || async {
            let cart = self.cart(user).await;
            Ok(done(&cart).then_some(cart))
        })
        .await;
        match waited {
            Ok(cart) => cart,
            Err(e) => panic!("{what}: {e}; cart of {user}: {}", self.cart(user).await),
        }
    }

    /// Whether the cached cart of `user` is in Redis.
    pub async fn cached(&self, user: &str) -> bool {
        let ns = self.redis.as_ref().expect("a Redis test");
        let key = storefront_cart::adapters::redis::cart_key(&self.settings.cache_prefix, user);
        let mut conn = ns.connection().await.expect("redis");
        let n: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("EXISTS");
        n == 1
    }
}

/// A valid product body for the search service's admin API.
pub fn product_body(title: &str, minor: i64, currency: &str) -> Value {
    json!({
        "sku": storefront_tests::unique_name("c", '-').to_uppercase(),
        "title": title,
        "brand": "Testbrand",
        "category": "home/kitchen",
        "price": { "minor": minor, "currency": currency },
    })
}

/// Asserts a problem+json answer with `status` naming `field` (when given).
pub async fn assert_problem(r: Response, status: u16, field: Option<&str>) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(ct, "application/problem+json");
    let body: Value = r.json().await.expect("problem json");
    if let Some(field) = field {
        let named = body["errors"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["field"] == field));
        assert!(named, "problem names `{field}`: {body}");
    }
    body
}
