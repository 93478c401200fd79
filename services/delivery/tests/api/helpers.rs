//! `spawn_app()`: the delivery service on MariaDB and Kafka of the local stack (per-test
//! database and topics) or on its embedded twins, with typed calls and an event recorder.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use storefront_delivery::Settings;
use storefront_delivery::service::AppState;
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::backend::{EventsUrl, SqlUrl};
use storefront_kit::bus::{Bus, MemoryBus, Record};
use storefront_kit::event::Envelope;
use storefront_kit::server::Platform;
use storefront_kit::shutdown::Shutdown;
use storefront_tests::{KafkaTopic, MysqlDatabase, Stack};
use tokio::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backends {
    /// MariaDB and Kafka of the local stack.
    Real,
    /// SQLite and the in-process bus.
    Embedded,
}

/// The backends one test's app instances share.
pub struct Env {
    pub settings: Settings,
    pub bus: Bus,
    pub memory: MemoryBus,
    pub issuer: TestIssuer,
    pub dir: tempfile::TempDir,
    _db: Option<MysqlDatabase>,
    _topics: Vec<KafkaTopic>,
    events: Arc<Mutex<Vec<Envelope>>>,
    recorder: Shutdown,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.recorder.trigger();
    }
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub issuer: TestIssuer,
    pub platform: Platform,
    pub state: AppState,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.platform.shutdown.trigger();
    }
}

impl Env {
    /// Fresh backends; `retry_interval_secs` of the pending-assignment worker.
    pub async fn new(backends: Backends, retry_interval_secs: u64) -> Env {
        Self::try_new(backends, retry_interval_secs)
            .await
            .expect("test backends")
    }

    async fn try_new(backends: Backends, retry_interval_secs: u64) -> anyhow::Result<Env> {
        let dir = tempfile::tempdir()?;
        let memory = MemoryBus::new();
        let mut settings = Settings {
            listen: "127.0.0.1:0".into(),
            retry_interval_secs,
            ..Settings::default()
        };
        let mut db = None;
        let mut topics = Vec::new();
        if backends == Backends::Real {
            let stack = Stack::get();
            let database = stack.mysql_database().await?;
            settings.database_url = Some(SqlUrl::parse(database.url())?);
            db = Some(database);
            let orders = stack.kafka_topic("orders", 3).await?;
            let deliveries = stack.kafka_topic("deliveries", 3).await?;
            settings.events_url = Some(EventsUrl::parse(&stack.kafka_url())?);
            settings.orders_topic = orders.name().to_string();
            settings.deliveries_topic = deliveries.name().to_string();
            settings.consumer_group = format!("{}-delivery", orders.name());
            topics.push(orders);
            topics.push(deliveries);
        } else {
            settings.orders_topic = storefront_tests::unique_name("orders", '-');
            settings.deliveries_topic = storefront_tests::unique_name("deliveries", '-');
        }
        let bus = Bus::connect(&settings.events(dir.path()), "delivery-test", &memory)?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let recorder = Shutdown::new(Duration::from_secs(1));
        let mut subscription = bus.subscribe(
            &storefront_tests::unique_name("recorder", '-'),
            &[settings.deliveries_topic.as_str()],
        )?;
        let sink = events.clone();
        let stop = recorder.token();
        tokio::spawn(async move {
            loop {
                let record = tokio::select! {
                    () = stop.cancelled() => return,
                    r = subscription.next() => r,
                };
                if let Ok(r) = record
                    && let Ok(e) = Envelope::from_json(&r.payload)
                {
                    sink.lock().await.push(e);
                }
            }
        });
        Ok(Env {
            settings,
            bus,
            memory,
            issuer: TestIssuer::new(),
            dir,
            _db: db,
            _topics: topics,
            events,
            recorder,
        })
    }

    /// One instance of the service on these backends (call again for a second replica).
    pub async fn spawn(&self) -> TestApp {
        let platform = Platform {
            memory_bus: self.memory.clone(),
            ..Platform::new(self.dir.path(), Duration::from_secs(5))
        };
        let app =
            storefront_delivery::app::build_with(&self.settings, &platform, self.issuer.verifier())
                .await
                .expect("build the delivery service");
        let state = app.state().clone();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(platform.clone()));
        TestApp {
            base,
            http: reqwest::Client::new(),
            issuer: self.issuer.clone(),
            platform,
            state,
        }
    }

    /// Publishes an order event onto the test's order topic (key = order id).
    pub async fn publish(&self, envelope: &Envelope) {
        let record = Record {
            topic: self.settings.orders_topic.clone(),
            key: envelope.subject.clone(),
            payload: envelope.to_json().expect("json"),
            headers: vec![("event-type".into(), envelope.event_type.clone())],
        };
        self.bus.publish(&record).await.expect("publish");
    }

    /// The `deliveries.v1` events of `order_id` seen so far, in order.
    pub async fn events_of(&self, order_id: &str) -> Vec<Envelope> {
        self.events
            .lock()
            .await
            .iter()
            .filter(|e| e.subject == order_id)
            .cloned()
            .collect()
    }

    /// Waits until an event of `event_type` for `order_id` was published; returns it.
    pub async fn wait_event(&self, order_id: &str, event_type: &str) -> Envelope {
        storefront_tests::wait_until(Duration::from_secs(30), || async {
            Ok(self
                .events_of(order_id)
                .await
                .into_iter()
                .find(|e| e.event_type == event_type))
        })
        .await
        .unwrap_or_else(|e| panic!("no {event_type} for {order_id}: {e:#}"))
    }

    /// Every event published so far.
    pub async fn all_events(&self) -> Vec<Envelope> {
        self.events.lock().await.clone()
    }
}

/// An `OrderConfirmed` envelope per the event contract.
pub fn order_confirmed(
    order_id: &str,
    user_id: &str,
    postal_code: &str,
    point: Option<(f64, f64)>,
    items: u32,
) -> Envelope {
    let mut shipping = json!({
        "name": "Ann Example", "phone": "+49 30 555", "line1": "Teststr. 1",
        "city": "Berlin", "postal_code": postal_code, "country": "DE"
    });
    if let Some((lat, lon)) = point {
        shipping["lat"] = json!(lat);
        shipping["lon"] = json!(lon);
    }
    Envelope::new(
        "OrderConfirmed",
        "order",
        order_id,
        json!({
            "order_id": order_id, "user_id": user_id, "status": "CONFIRMED",
            "placed_at": "2026-11-28T10:00:00Z",
            "customer": {"name": "Ann Example", "email": "ann@example.com"},
            "shipping": shipping,
            "lines": [{"product_id": "p-1", "sku": "SKU-1", "title": "Thing", "quantity": items,
                       "unit_price": {"minor": 1000, "currency": "EUR"},
                       "line_total": {"minor": 1000 * i64::from(items), "currency": "EUR"}}],
            "item_count": items,
            "total": {"minor": 1000 * i64::from(items), "currency": "EUR"}
        }),
    )
}

pub fn order_cancelled(order_id: &str, user_id: &str) -> Envelope {
    Envelope::new(
        "OrderCancelled",
        "order",
        order_id,
        json!({
            "order_id": order_id, "user_id": user_id, "from": "PARTNER_ASSIGNED",
            "reason": "changed my mind",
            "customer": {"name": "Ann Example", "email": "ann@example.com"},
            "lines": [], "total": {"minor": 0, "currency": "EUR"}
        }),
    )
}

pub fn order_id() -> String {
    storefront_tests::unique_name("ord", '-')
}

/// A valid partner body.
pub fn partner_body(
    account: &str,
    on_shift: bool,
    area: Value,
    max_concurrent: u32,
    max_items: u32,
) -> Value {
    json!({
        "account_id": account,
        "name": format!("Partner {account}"),
        "email": format!("{account}@partners.test"),
        "phone": "+49 30 1234",
        "on_shift": on_shift,
        "service_area": area,
        "capacity": {"max_concurrent": max_concurrent, "max_items": max_items}
    })
}

impl TestApp {
    pub fn admin(&self) -> String {
        self.issuer.token("admin-1", &[Role::Admin])
    }

    pub fn partner_token(&self, account: &str) -> String {
        self.issuer.token(account, &[Role::Partner])
    }

    pub fn customer(&self, user: &str) -> String {
        self.issuer.token(user, &[Role::Customer])
    }

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

    /// A call that must answer `expected`; its JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        expected: StatusCode,
    ) -> Value {
        let r = self.send(method.clone(), path, Some(token), body).await;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, expected, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates a partner as admin; returns it.
    pub async fn create_partner(&self, body: &Value) -> Value {
        self.call(
            Method::POST,
            "/v1/partners",
            &self.admin(),
            Some(body),
            StatusCode::CREATED,
        )
        .await
    }

    pub async fn delivery(&self, order_id: &str) -> Value {
        self.call(
            Method::GET,
            &format!("/v1/deliveries/{order_id}"),
            &self.admin(),
            None,
            StatusCode::OK,
        )
        .await
    }

    pub async fn partner(&self, id: &str) -> Value {
        self.call(
            Method::GET,
            &format!("/v1/partners/{id}"),
            &self.admin(),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// Waits until the order's delivery exists with `status`.
    pub async fn wait_status(&self, order_id: &str, status: &str) -> Value {
        storefront_tests::wait_until(Duration::from_secs(30), || async {
            let r = self
                .send(
                    Method::GET,
                    &format!("/v1/deliveries/{order_id}"),
                    Some(&self.admin()),
                    None,
                )
                .await;
            if r.status() != StatusCode::OK {
                return Ok(None);
            }
            let body: Value = r.json().await?;
            Ok((body["status"] == status).then_some(body))
        })
        .await
        .with_context(|| format!("delivery {order_id} never became {status}"))
        .expect("status")
    }
}
