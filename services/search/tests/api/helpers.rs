//! `spawn_app()`: the search service on real backends of the local stack (FerretDB,
//! OpenSearch, Redis; Kafka on request) or on its embedded twins (SQLite, Tantivy, memory),
//! each test in namespaces of its own.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::backend::{CacheUrl, DocumentsUrl, EventsUrl, SearchIndexUrl};
use storefront_kit::bus::{Bus, Record};
use storefront_kit::event::Envelope;
use storefront_kit::server::Platform;
use storefront_search::Settings;
use storefront_tests::{KafkaTopic, MongoDatabase, OpenSearchIndex, RedisNamespace, Stack};

/// Which engines a test app runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backends {
    /// FerretDB, OpenSearch, Redis of the local stack.
    Real,
    /// SQLite, Tantivy, in-memory cache.
    Embedded,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub backends: Backends,
    /// Demo products loaded at startup (0: an empty catalog).
    pub demo_products: usize,
    /// Replace the cache URL (e.g. a Redis that is not there).
    pub cache_url: Option<String>,
    /// Carry events over Kafka (a topic of the test's own) instead of the in-process bus.
    pub kafka: bool,
}

impl Options {
    pub fn new(backends: Backends) -> Self {
        Self {
            backends,
            demo_products: 0,
            cache_url: None,
            kafka: false,
        }
    }

    pub fn demo(mut self, n: usize) -> Self {
        self.demo_products = n;
        self
    }
}

/// Namespaces that are cleaned up when the app is dropped.
#[allow(dead_code)]
struct Namespaces {
    mongo: Option<MongoDatabase>,
    index: Option<OpenSearchIndex>,
    redis: Option<RedisNamespace>,
    topic: Option<KafkaTopic>,
    orders: Option<KafkaTopic>,
    dir: tempfile::TempDir,
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub issuer: TestIssuer,
    pub platform: Platform,
    /// The bus the app follows (Kafka or its in-process bus), to publish `orders.v1` events.
    pub bus: Bus,
    /// The app's `orders.v1` topic.
    pub orders_topic: String,
    _namespaces: Namespaces,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.platform.shutdown.trigger();
    }
}

pub async fn spawn_app(backends: Backends) -> TestApp {
    spawn(Options::new(backends)).await
}

pub async fn spawn(options: Options) -> TestApp {
    try_spawn(options).await.expect("spawn the search service")
}

async fn try_spawn(options: Options) -> anyhow::Result<TestApp> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        seed_demo: options.demo_products > 0,
        demo_products: options.demo_products,
        ..Settings::default()
    };
    let mut namespaces = Namespaces {
        mongo: None,
        index: None,
        redis: None,
        topic: None,
        orders: None,
        dir,
    };
    if options.backends == Backends::Real {
        let stack = Stack::get();
        let mongo = stack.mongo_database().await?;
        let index = stack.opensearch_index("search").await?;
        let redis = stack.redis_namespace().await?;
        settings.catalog_url = Some(DocumentsUrl::parse(&format!(
            "{}/{}",
            stack.mongodb_url.trim_end_matches('/'),
            mongo.name()
        ))?);
        settings.index_url = Some(SearchIndexUrl::parse(&stack.opensearch_url)?);
        settings.index_name = index.name().to_string();
        settings.cache_url = Some(CacheUrl::parse(&stack.redis_url)?);
        settings.cache_prefix = redis.prefix().trim_end_matches(':').to_string();
        namespaces.mongo = Some(mongo);
        namespaces.index = Some(index);
        namespaces.redis = Some(redis);
    } else {
        settings.cache_capacity = 1_000;
    }
    if options.kafka {
        let stack = Stack::get();
        let topic = stack.kafka_topic("catalog", 3).await?;
        settings.events_url = Some(EventsUrl::parse(&stack.kafka_url())?);
        settings.catalog_topic = topic.name().to_string();
        settings.consumer_group = format!("{}-indexer", topic.name());
        namespaces.topic = Some(topic);
        // One partition: the tests read "everything before this event was applied" from it.
        let orders = stack.kafka_topic("orders", 1).await?;
        settings.orders_topic = orders.name().to_string();
        settings.stock_consumer_group = format!("{}-stock", orders.name());
        namespaces.orders = Some(orders);
    }
    if let Some(url) = &options.cache_url {
        settings.cache_url = Some(CacheUrl::parse(url)?);
    }
    let platform = Platform::new(namespaces.dir.path(), Duration::from_secs(10));
    let bus = Bus::connect(
        &settings.events(&platform.data_dir),
        "search-test",
        &platform.memory_bus,
    )?;
    let orders_topic = settings.prefixed(&settings.orders_topic);
    let issuer = TestIssuer::new();
    let app = storefront_search::app::build_with(&settings, &platform, issuer.verifier())
        .await
        .context("build")?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(platform.clone()));
    let test_app = TestApp {
        base,
        http: reqwest::Client::new(),
        issuer,
        platform,
        bus,
        orders_topic,
        _namespaces: namespaces,
    };
    if options.demo_products > 0 {
        let n = options.demo_products as u64;
        let app = &test_app;
        storefront_tests::wait_until(Duration::from_secs(120), || async move {
            let r = app.get("/v1/search?page_size=1").await;
            let body: Value = r.json().await?;
            Ok((body["total"].as_u64() == Some(n)).then_some(()))
        })
        .await
        .context("demo catalog indexed")?;
    }
    Ok(test_app)
}

impl TestApp {
    pub fn admin(&self) -> String {
        self.issuer.token("admin-1", &[Role::Admin])
    }

    pub fn customer(&self) -> String {
        self.issuer.token("customer-1", &[Role::Customer])
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    /// `GET path` with `If-None-Match: tag`.
    pub async fn get_if_none_match(&self, path: &str, tag: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("if-none-match", tag)
            .send()
            .await
            .expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.expect("json")
    }

    /// A JSON call with optional token and `If-Match`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(v) = if_match {
            req = req.header("if-match", v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.expect("request")
    }

    /// Creates a product as admin; returns it.
    pub async fn create(&self, body: &Value) -> Value {
        let r = self
            .send(
                Method::POST,
                "/v1/products",
                Some(&self.admin()),
                None,
                Some(body),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "create");
        r.json().await.expect("json")
    }

    /// Publishes an `orders.v1` event as the order service does (key = subject).
    pub async fn publish_order_event(&self, event: &Envelope) {
        let record = Record {
            topic: self.orders_topic.clone(),
            key: event.subject.clone(),
            payload: event.to_json().expect("json"),
            headers: vec![("event-type".into(), event.event_type.clone())],
        };
        self.bus.publish(&record).await.expect("publish");
    }

    /// Polls `GET path` until `check` holds on its body.
    pub async fn wait_for_json(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let body = self.get_json(path).await;
            if check(&body) {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} never matched; last: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the search until `check` holds on its body.
    pub async fn wait_for_search(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_json(path, check).await
    }
}

/// A valid product body.
pub fn product_body(title: &str, minor: i64) -> Value {
    json!({
        "sku": format!("T-{}", uuid_suffix()),
        "title": title,
        "description": "Test product for the search API.",
        "brand": "Testbrand",
        "category": "electronics/audio/headphones",
        "price": { "minor": minor, "currency": "EUR" },
        "attributes": { "colour": "black" },
        "images": ["https://img.example/t.jpg"],
        "stock_hint": 3
    })
}

fn uuid_suffix() -> String {
    storefront_tests::unique_name("s", '-').to_uppercase()
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
