//! `Env`: the notification service on per-test namespaces of the local stack or on its
//! embedded twins, with event publishing and a dead-letter recorder.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::backend::{EventsUrl, MailUrl, SqlUrl};
use storefront_kit::bus::{Bus, MemoryBus, Record};
use storefront_kit::event::Envelope;
use storefront_kit::server::Platform;
use storefront_notification::Settings;
use storefront_tests::{KafkaTopic, MysqlDatabase, Stack};
use tokio::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backends {
    /// MariaDB, Kafka and mailpit (SMTP) of the local stack.
    Real,
    /// SQLite, the in-process bus and a file mailbox.
    Embedded,
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub issuer: TestIssuer,
    pub settings: Settings,
    pub dir: tempfile::TempDir,
    pub platform: Platform,
    bus: Bus,
    dead_letters: Arc<Mutex<Vec<Envelope>>>,
    _db: Option<MysqlDatabase>,
    _topics: Vec<KafkaTopic>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.platform.shutdown.trigger();
    }
}

/// Spawns the service; `tune` adjusts the settings first (e.g. an unreachable mail server).
pub async fn spawn(backends: Backends, tune: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("dir");
    let memory = MemoryBus::new();
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        retry_base_ms: 50,
        ..Settings::default()
    };
    let mut db = None;
    let mut topics = Vec::new();
    if backends == Backends::Real {
        let stack = Stack::get();
        let database = stack.mysql_database().await.expect("database");
        settings.database_url = Some(SqlUrl::parse(database.url()).expect("url"));
        db = Some(database);
        let orders = stack.kafka_topic("orders", 3).await.expect("topic");
        let deliveries = stack.kafka_topic("deliveries", 3).await.expect("topic");
        let dlq = stack
            .kafka_topic("notifications-dlq", 1)
            .await
            .expect("topic");
        settings.events_url = Some(EventsUrl::parse(&stack.kafka_url()).expect("url"));
        settings.mail_url = Some(MailUrl::parse(&stack.smtp_url).expect("smtp url"));
        settings.orders_topic = orders.name().to_string();
        settings.deliveries_topic = deliveries.name().to_string();
        settings.dlq_topic = dlq.name().to_string();
        settings.consumer_group = format!("{}-notification", orders.name());
        topics.extend([orders, deliveries, dlq]);
    } else {
        settings.orders_topic = storefront_tests::unique_name("orders", '-');
        settings.deliveries_topic = storefront_tests::unique_name("deliveries", '-');
        settings.dlq_topic = storefront_tests::unique_name("dlq", '-');
    }
    tune(&mut settings);
    let platform = Platform {
        memory_bus: memory.clone(),
        ..Platform::new(dir.path(), Duration::from_secs(5))
    };
    let bus =
        Bus::connect(&settings.events(dir.path()), "notification-test", &memory).expect("bus");
    let dead_letters = Arc::new(Mutex::new(Vec::new()));
    let mut subscription = bus
        .subscribe(
            &storefront_tests::unique_name("dlq-reader", '-'),
            &[settings.dlq_topic.as_str()],
        )
        .expect("subscribe");
    let sink = dead_letters.clone();
    let stop = platform.shutdown.token();
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
    let issuer = TestIssuer::new();
    let app = storefront_notification::app::build_with(&settings, &platform, issuer.verifier())
        .await
        .expect("build the notification service");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(platform.clone()));
    TestApp {
        base,
        http: reqwest::Client::new(),
        issuer,
        settings,
        dir,
        platform,
        bus,
        dead_letters,
        _db: db,
        _topics: topics,
    }
}

impl TestApp {
    async fn publish_to(&self, topic: &str, envelope: &Envelope) {
        let record = Record {
            topic: topic.to_string(),
            key: envelope.subject.clone(),
            payload: envelope.to_json().expect("json"),
            headers: vec![("event-type".into(), envelope.event_type.clone())],
        };
        self.bus.publish(&record).await.expect("publish");
    }

    pub async fn publish_order(&self, envelope: &Envelope) {
        self.publish_to(&self.settings.orders_topic.clone(), envelope)
            .await;
    }

    pub async fn publish_delivery(&self, envelope: &Envelope) {
        self.publish_to(&self.settings.deliveries_topic.clone(), envelope)
            .await;
    }

    /// Waits for a dead letter about `event_id`.
    pub async fn wait_dead_letter(&self, event_id: &str) -> Envelope {
        storefront_tests::wait_until(Duration::from_secs(30), || async {
            Ok(self
                .dead_letters
                .lock()
                .await
                .iter()
                .find(|e| e.data["event"]["id"] == event_id)
                .cloned())
        })
        .await
        .unwrap_or_else(|e| panic!("no dead letter for {event_id}: {e:#}"))
    }

    pub async fn dead_letter_count(&self) -> usize {
        self.dead_letters.lock().await.len()
    }

    pub fn admin(&self) -> String {
        self.issuer.token("admin-1", &[Role::Admin])
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self
            .http
            .request(Method::GET, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    /// The sent-log (admin view), newest first.
    pub async fn notifications(&self) -> Value {
        let r = self
            .get("/v1/notifications?limit=200", Some(&self.admin()))
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    /// Waits until the sent-log has an entry for `event_id`; returns it.
    pub async fn wait_logged(&self, event_id: &str) -> Value {
        storefront_tests::wait_until(Duration::from_secs(30), || async {
            let body = self.notifications().await;
            Ok(body["items"]
                .as_array()
                .and_then(|items| items.iter().find(|i| i["event_id"] == event_id).cloned()))
        })
        .await
        .unwrap_or_else(|e| panic!("{event_id} never logged: {e:#}"))
    }
}

pub fn order_id() -> String {
    storefront_tests::unique_name("ord", '-')
}

fn order_data(order_id: &str, email: &str) -> Value {
    json!({
        "order_id": order_id, "user_id": "u-1", "status": "CONFIRMED",
        "placed_at": "2026-11-28T10:00:00Z",
        "customer": {"name": "Ann Example", "email": email},
        "shipping": {"name": "Ann Example", "line1": "Teststr. 1", "city": "Berlin",
                     "postal_code": "10115", "country": "DE"},
        "lines": [
            {"product_id": "p-1", "sku": "LAMP-1", "title": "Desk Lamp", "quantity": 2,
             "unit_price": {"minor": 1999, "currency": "EUR"},
             "line_total": {"minor": 3998, "currency": "EUR"}},
            {"product_id": "p-2", "sku": "BULB-1", "title": "LED Bulb", "quantity": 1,
             "unit_price": {"minor": 250, "currency": "EUR"},
             "line_total": {"minor": 250, "currency": "EUR"}}
        ],
        "item_count": 3,
        "total": {"minor": 4248, "currency": "EUR"}
    })
}

pub fn order_confirmed(order_id: &str, email: &str) -> Envelope {
    Envelope::new(
        "OrderConfirmed",
        "order",
        order_id,
        order_data(order_id, email),
    )
}

pub fn order_cancelled(order_id: &str, email: &str) -> Envelope {
    let data = order_data(order_id, email);
    Envelope::new(
        "OrderCancelled",
        "order",
        order_id,
        json!({"order_id": order_id, "user_id": "u-1", "from": "CONFIRMED", "reason": "out of stock",
               "customer": data["customer"], "lines": data["lines"], "total": data["total"]}),
    )
}

pub fn partner() -> Value {
    json!({"id": "p-1", "name": "Rita Rider", "email": "rita@partners.test", "phone": "+49 30 1234"})
}

pub fn delivery_event(event_type: &str, order_id: &str) -> Envelope {
    let mut data = json!({"order_id": order_id, "user_id": "u-1", "partner": partner()});
    if event_type == "PartnerAssigned" {
        data["assigned_at"] = json!("2026-11-28T10:01:00Z");
    } else {
        data["at"] = json!("2026-11-28T10:30:00Z");
    }
    Envelope::new(event_type, "delivery", order_id, data)
}
