//! Fault suite (issue 6): the real services on the real local stack, under a steady stream of
//! orders, while the Kafka broker, MariaDB and Redis are killed with SIGKILL and restarted in
//! turn (`tests/stack/stack kill|start`), and the notification consumer and the order outbox
//! relay are stopped and started again in-process.
//!
//! Afterwards every order that got a 2xx has exactly one `PartnerAssigned` and exactly one
//! confirmation email (mailpit), nothing is lost or duplicated, and while a dependency was down
//! every API call answered within [`DOWN_BOUND`] with a 2xx or a 503. The counts are printed.
//!
//! This is the only test of its binary on purpose: it kills shared servers of the stack, and
//! tests inside one binary run in parallel. Every component it kills is started again (also
//! when the test panics, see [`Revive`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::backend::{CacheUrl, EventsUrl, MailUrl, SqlUrl};
use storefront_kit::bus::{Bus, MemoryBus};
use storefront_kit::event::Envelope;
use storefront_kit::server::Platform;
use storefront_tests::{Stack, unique_name};
use tokio::sync::Mutex;

/// Concurrent shoppers placing orders for the whole fault sequence.
const SHOPPERS: usize = 8;
/// Pause of each shopper between two orders.
const PACE: Duration = Duration::from_millis(800);
/// How long a killed dependency stays down before it is started again.
const DOWN_FOR: Duration = Duration::from_secs(5);
/// How long the system runs normally after a restart before the next fault.
const RECOVER_FOR: Duration = Duration::from_secs(5);
/// Every API call made while a dependency is down must answer within this.
const DOWN_BOUND: Duration = Duration::from_secs(3);
/// A call that takes longer than this counts as a hang (the client gives up).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for assignments and emails after the last fault.
const SETTLE: Duration = Duration::from_secs(120);
/// The postal code every order ships to (the partners cover prefix "10").
const POSTAL_CODE: &str = "10115";

/// What is killed, in this order.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A stack component: `stack kill <name>`, then `stack start <name>`.
    Stack(&'static str),
    /// The notification service instance (its consumers), stopped and built again.
    NotificationConsumer,
    /// The order instance that runs the outbox relay, stopped and built again.
    OrderRelay,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Stack(c) => c,
            Fault::NotificationConsumer => "notification consumer",
            Fault::OrderRelay => "order relay",
        }
    }
}

const FAULTS: [Fault; 5] = [
    Fault::Stack("kafka"),
    Fault::Stack("mariadb"),
    Fault::Stack("redis"),
    Fault::NotificationConsumer,
    Fault::OrderRelay,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_order_gets_one_assignment_and_one_email_through_faults() {
    if let Err(e) = run().await {
        panic!("fault suite: {e:#}");
    }
}

// =====================================================================================
// The stack script
// =====================================================================================

fn stack_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stack/stack")
}

/// Runs `tests/stack/stack <verb> <components>`; fails with its output.
async fn stack(verb: &str, components: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(stack_script())
        .arg(verb)
        .args(components)
        .output()
        .await
        .with_context(|| format!("run tests/stack/stack {verb}"))?;
    if !out.status.success() {
        bail!(
            "tests/stack/stack {verb} {}: {}\n{}{}",
            components.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `stack start <component>`, tried up to three times: the stack is shared, and another
/// `stack up` that sees the component down may be starting it at the same moment (the loser of
/// that race sees its process exit because the port is taken).
async fn start_again(component: &str) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..3 {
        match stack("start", &[component]).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("faults: {e:#}; trying again");
                last = Some(e);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("start {component}")))
}

/// Starts the killable components again when dropped (a panic mid-fault must not leave the
/// shared stack broken for the tests that run after this one).
struct Revive;

impl Drop for Revive {
    fn drop(&mut self) {
        let status = std::process::Command::new(stack_script())
            .args(["start", "kafka", "mariadb", "redis"])
            .stdout(std::process::Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("faults: could not start kafka/mariadb/redis again: {status:?}");
        }
    }
}

// =====================================================================================
// The services
// =====================================================================================

struct Services {
    issuer: TestIssuer,
    memory: MemoryBus,
    events_url: EventsUrl,
    search: String,
    cart: String,
    order: String,
    delivery: String,
    /// The order instance that runs the relay (relay_enabled = true).
    order_settings: storefront_order::Settings,
    notification_settings: storefront_notification::Settings,
    deliveries_topic: String,
    /// search, cart, the order API (relay off) and delivery.
    main: Platform,
    relay: Option<Platform>,
    notification: Option<Platform>,
    _dirs: Vec<tempfile::TempDir>,
}

fn platform(dir: &tempfile::TempDir, memory: &MemoryBus) -> Platform {
    Platform {
        memory_bus: memory.clone(),
        ..Platform::new(dir.path(), Duration::from_secs(10))
    }
}

async fn stop(platform: Platform) {
    platform.shutdown.trigger();
    if let Err(e) = platform.shutdown.drained().await {
        eprintln!("faults: {e}");
    }
}

async fn start_relay(
    settings: &storefront_order::Settings,
    issuer: &TestIssuer,
    dir: &tempfile::TempDir,
    memory: &MemoryBus,
) -> anyhow::Result<Platform> {
    let p = platform(dir, memory);
    let app = storefront_order::app::build_with(settings, &p, issuer.verifier())
        .await
        .context("build the order relay instance")?;
    tokio::spawn(app.run_until_stopped(p.clone()));
    Ok(p)
}

async fn start_notification(
    settings: &storefront_notification::Settings,
    issuer: &TestIssuer,
    dir: &tempfile::TempDir,
    memory: &MemoryBus,
) -> anyhow::Result<Platform> {
    let p = platform(dir, memory);
    let app = storefront_notification::app::build_with(settings, &p, issuer.verifier())
        .await
        .context("build the notification service")?;
    tokio::spawn(app.run_until_stopped(p.clone()));
    Ok(p)
}

/// Namespaces on the shared stack, cleaned up when dropped.
#[allow(dead_code)]
struct Namespaces {
    dbs: Vec<storefront_tests::MysqlDatabase>,
    topics: Vec<storefront_tests::KafkaTopic>,
    redis: storefront_tests::RedisNamespace,
    mailbox: storefront_tests::Mailbox,
}

async fn spawn_services(stack: &Stack) -> anyhow::Result<(Services, Namespaces)> {
    let run = unique_name("faults", '-');
    let catalog = stack.kafka_topic("catalog", 3).await?;
    let orders = stack.kafka_topic("orders", 3).await?;
    let deliveries = stack.kafka_topic("deliveries", 3).await?;
    let dlq = stack.kafka_topic("notifications-dlq", 1).await?;
    let cart_db = stack.mysql_database().await?;
    let order_db = stack.mysql_database().await?;
    let delivery_db = stack.mysql_database().await?;
    let notification_db = stack.mysql_database().await?;
    let redis = stack.redis_namespace().await?;
    let mailbox = stack.mailbox();
    let events_url = EventsUrl::parse(&stack.kafka_url())?;
    let issuer = TestIssuer::new();
    let memory = MemoryBus::new();
    let dirs = vec![tempfile::tempdir()?, tempfile::tempdir()?];
    let main = platform(&dirs[0], &memory);

    let search_settings = storefront_search::Settings {
        listen: "127.0.0.1:0".into(),
        seed_demo: false,
        demo_products: 0,
        cache_capacity: 1_000,
        events_url: Some(events_url.clone()),
        catalog_topic: catalog.name().to_string(),
        consumer_group: format!("{run}-indexer"),
        orders_topic: orders.name().to_string(),
        stock_consumer_group: format!("{run}-stock"),
        ..storefront_search::Settings::default()
    };
    let app = storefront_search::app::build_with(&search_settings, &main, issuer.verifier())
        .await
        .context("build search")?;
    let search = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(main.clone()));

    let cart_settings = storefront_cart::Settings {
        listen: "127.0.0.1:0".into(),
        database_url: Some(SqlUrl::parse(cart_db.url())?),
        cache_url: Some(CacheUrl::parse(&stack.redis_url)?),
        cache_prefix: redis.prefix().trim_end_matches(':').to_string(),
        search_url: search.clone(),
        ..storefront_cart::Settings::default()
    };
    let app = storefront_cart::app::build_with(&cart_settings, &main, issuer.verifier())
        .await
        .context("build cart")?;
    let cart = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(main.clone()));

    // The order service twice on one database: the API without the relay, and the relay in an
    // instance of its own that the test stops and starts.
    let api_settings = storefront_order::Settings {
        listen: "127.0.0.1:0".into(),
        database_url: Some(SqlUrl::parse(order_db.url())?),
        events_url: Some(events_url.clone()),
        cart_url: cart.clone(),
        relay_enabled: false,
        orders_topic: orders.name().to_string(),
        deliveries_topic: deliveries.name().to_string(),
        catalog_topic: catalog.name().to_string(),
        consumer_group: format!("{run}-order"),
        ..storefront_order::Settings::default()
    };
    let app = storefront_order::app::build_with(&api_settings, &main, issuer.verifier())
        .await
        .context("build the order API instance")?;
    let order = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(main.clone()));
    let order_settings = storefront_order::Settings {
        relay_enabled: true,
        ..api_settings
    };
    let relay = start_relay(&order_settings, &issuer, &dirs[1], &memory).await?;

    let delivery_settings = storefront_delivery::Settings {
        listen: "127.0.0.1:0".into(),
        database_url: Some(SqlUrl::parse(delivery_db.url())?),
        events_url: Some(events_url.clone()),
        orders_topic: orders.name().to_string(),
        deliveries_topic: deliveries.name().to_string(),
        consumer_group: format!("{run}-delivery"),
        retry_interval_secs: 2,
        ..storefront_delivery::Settings::default()
    };
    let app = storefront_delivery::app::build_with(&delivery_settings, &main, issuer.verifier())
        .await
        .context("build delivery")?;
    let delivery = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(main.clone()));

    let notification_settings = storefront_notification::Settings {
        listen: "127.0.0.1:0".into(),
        database_url: Some(SqlUrl::parse(notification_db.url())?),
        events_url: Some(events_url.clone()),
        mail_url: Some(MailUrl::parse(&stack.smtp_url)?),
        orders_topic: orders.name().to_string(),
        deliveries_topic: deliveries.name().to_string(),
        dlq_topic: dlq.name().to_string(),
        consumer_group: format!("{run}-notification"),
        retry_base_ms: 200,
        ..storefront_notification::Settings::default()
    };
    let notification =
        start_notification(&notification_settings, &issuer, &dirs[1], &memory).await?;

    Ok((
        Services {
            issuer,
            memory,
            events_url,
            search,
            cart,
            order,
            delivery,
            order_settings,
            notification_settings,
            deliveries_topic: deliveries.name().to_string(),
            main,
            relay: Some(relay),
            notification: Some(notification),
            _dirs: dirs,
        },
        Namespaces {
            dbs: vec![cart_db, order_db, delivery_db, notification_db],
            topics: vec![catalog, orders, deliveries, dlq],
            redis,
            mailbox,
        },
    ))
}

impl Services {
    fn admin(&self) -> String {
        self.issuer.token("admin-faults", &[Role::Admin])
    }

    /// Stops the fault's target (the stack component is killed with SIGKILL).
    async fn kill(&mut self, fault: Fault) -> anyhow::Result<()> {
        match fault {
            Fault::Stack(c) => stack("kill", &[c]).await,
            Fault::NotificationConsumer => {
                if let Some(p) = self.notification.take() {
                    stop(p).await;
                }
                Ok(())
            }
            Fault::OrderRelay => {
                if let Some(p) = self.relay.take() {
                    stop(p).await;
                }
                Ok(())
            }
        }
    }

    /// Starts the fault's target again and waits until it answers.
    async fn restart(&mut self, fault: Fault) -> anyhow::Result<()> {
        match fault {
            Fault::Stack(c) => start_again(c).await,
            Fault::NotificationConsumer => {
                self.notification = Some(
                    start_notification(
                        &self.notification_settings,
                        &self.issuer,
                        &self._dirs[1],
                        &self.memory,
                    )
                    .await?,
                );
                Ok(())
            }
            Fault::OrderRelay => {
                self.relay = Some(
                    start_relay(
                        &self.order_settings,
                        &self.issuer,
                        &self._dirs[1],
                        &self.memory,
                    )
                    .await?,
                );
                Ok(())
            }
        }
    }

    async fn shutdown(&mut self) {
        for p in [self.notification.take(), self.relay.take()]
            .into_iter()
            .flatten()
        {
            stop(p).await;
        }
        stop(self.main.clone()).await;
    }
}

// =====================================================================================
// Calls, samples, shoppers
// =====================================================================================

/// One API call: when it started, how long it took, its status (None: no answer in time or no
/// connection) and the fault phase it started in.
#[derive(Clone, Debug)]
struct Sample {
    started: Instant,
    took: Duration,
    status: Option<u16>,
    what: &'static str,
    phase: usize,
}

/// The phase: 0 = before the first fault; for fault `i`, `2i+1` while it is down (kill to
/// restarted), `2i+2` while recovering; the last value = after the faults.
fn down_phase(i: usize) -> usize {
    2 * i + 1
}

struct Client {
    http: reqwest::Client,
    phase: AtomicUsize,
    samples: Mutex<Vec<Sample>>,
}

struct Reply {
    status: Option<u16>,
    body: Value,
}

impl Client {
    async fn call(
        &self,
        what: &'static str,
        method: Method,
        url: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let phase = self.phase.load(Ordering::SeqCst);
        let started = Instant::now();
        let mut req = self.http.request(method, url).bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let (status, body) = match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = match r.bytes().await {
                    Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                (Some(status), body)
            }
            Err(_) => (None, Value::Null),
        };
        self.samples.lock().await.push(Sample {
            started,
            took: started.elapsed(),
            status,
            what,
            phase,
        });
        Reply { status, body }
    }
}

#[derive(Clone, Debug)]
enum Outcome {
    /// 2xx: the order's id and its recipient.
    Placed { order_id: String, email: String },
    /// A 4xx other than 409: the key was abandoned.
    Rejected { status: u16, body: Value },
    /// No 2xx within the shopper's retry bound.
    GaveUp,
}

struct Shop {
    client: Client,
    stop: AtomicBool,
    next: AtomicUsize,
    cart: String,
    order: String,
    products: Vec<String>,
    mailbox: String,
    issuer: TestIssuer,
    run: String,
}

fn order_body(email: &str) -> Value {
    json!({
        "customer": {"name": "Fault Test", "email": email},
        "shipping": {"name": "Fault Test", "phone": "+49 30 1234567", "line1": "1 Main Street",
                     "city": "Berlin", "postal_code": POSTAL_CODE, "country": "DE"}
    })
}

fn is_2xx(s: Option<u16>) -> bool {
    matches!(s, Some(200..=299))
}

/// Adds to the cart and places orders until `stop`; retries a key on 5xx, 409 (in progress)
/// and no answer, so each 2xx is counted once.
async fn shopper(shop: Arc<Shop>, index: usize) -> Vec<Outcome> {
    let user = format!("{}-shopper-{index}", shop.run);
    let token = shop.issuer.token(&user, &[Role::Customer]);
    let product = &shop.products[index % shop.products.len()];
    let mut outcomes = Vec::new();
    'orders: while !shop.stop.load(Ordering::SeqCst) {
        loop {
            if shop.stop.load(Ordering::SeqCst) {
                break 'orders;
            }
            let r = shop
                .client
                .call(
                    "add to cart",
                    Method::POST,
                    &format!("{}/v1/cart/items", shop.cart),
                    &token,
                    &[],
                    Some(&json!({"product_id": product, "quantity": 1})),
                )
                .await;
            if is_2xx(r.status) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let n = shop.next.fetch_add(1, Ordering::SeqCst);
        let email = format!("o{n}.{}", shop.mailbox);
        let key = uuid::Uuid::new_v4().to_string();
        let body = order_body(&email);
        let give_up = Instant::now() + Duration::from_secs(90);
        loop {
            let r = shop
                .client
                .call(
                    "place order",
                    Method::POST,
                    &format!("{}/v1/orders", shop.order),
                    &token,
                    &[("idempotency-key", &key)],
                    Some(&body),
                )
                .await;
            match r.status {
                Some(200..=299) => {
                    let order_id = r.body["id"].as_str().unwrap_or_default().to_string();
                    outcomes.push(Outcome::Placed { order_id, email });
                    break;
                }
                Some(s) if (400..500).contains(&s) && s != 409 && s != 429 => {
                    outcomes.push(Outcome::Rejected {
                        status: s,
                        body: r.body,
                    });
                    break;
                }
                _ if Instant::now() > give_up => {
                    outcomes.push(Outcome::GaveUp);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        tokio::time::sleep(PACE).await;
    }
    outcomes
}

/// Besides the shoppers, one prober per API path calls it every [`PROBE_EVERY`] for the whole
/// run, so each service's answer while a dependency is down is measured even when the
/// shoppers are stuck earlier in their flow. `also_fine` is a non-2xx answer that is the
/// normal one for the probe (placing an empty cart answers 422).
struct Probe {
    what: &'static str,
    method: Method,
    url: String,
    token: String,
    idempotent_key: bool,
    body: Option<Value>,
    also_fine: Option<u16>,
}

const PROBE_EVERY: Duration = Duration::from_millis(400);

async fn prober(shop: Arc<Shop>, probe: Probe) {
    while !shop.stop.load(Ordering::SeqCst) {
        let key = uuid::Uuid::new_v4().to_string();
        let headers: Vec<(&str, &str)> = if probe.idempotent_key {
            vec![("idempotency-key", key.as_str())]
        } else {
            Vec::new()
        };
        shop.client
            .call(
                probe.what,
                probe.method.clone(),
                &probe.url,
                &probe.token,
                &headers,
                probe.body.as_ref(),
            )
            .await;
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

fn probes(services: &Services, run: &str) -> Vec<Probe> {
    let customer = services
        .issuer
        .token(&format!("{run}-prober"), &[Role::Customer]);
    let admin = services.admin();
    vec![
        Probe {
            what: "probe cart GET /v1/cart",
            method: Method::GET,
            url: format!("{}/v1/cart", services.cart),
            token: customer.clone(),
            idempotent_key: false,
            body: None,
            also_fine: None,
        },
        Probe {
            what: "probe order GET /v1/orders",
            method: Method::GET,
            url: format!("{}/v1/orders", services.order),
            token: customer.clone(),
            idempotent_key: false,
            body: None,
            also_fine: None,
        },
        Probe {
            what: "probe order POST /v1/orders (empty cart)",
            method: Method::POST,
            url: format!("{}/v1/orders", services.order),
            token: customer,
            idempotent_key: true,
            body: Some(order_body(&format!("probe.{run}@storefront.test"))),
            also_fine: Some(422),
        },
        Probe {
            what: "probe delivery GET /v1/partners",
            method: Method::GET,
            url: format!("{}/v1/partners", services.delivery),
            token: admin,
            idempotent_key: false,
            body: None,
            also_fine: None,
        },
    ]
}

// =====================================================================================
// Checks: deliveries, emails
// =====================================================================================

/// `PartnerAssigned` envelopes on the deliveries topic per order: (raw records, distinct ids).
#[derive(Default)]
struct Assignments {
    records: HashMap<String, usize>,
    ids: HashMap<String, HashSet<uuid::Uuid>>,
}

impl Assignments {
    fn distinct(&self, order_id: &str) -> usize {
        self.ids.get(order_id).map_or(0, HashSet::len)
    }
}

/// Reads the deliveries topic from its beginning until every order in `want` has a
/// `PartnerAssigned` (or `deadline`), then for `quiet` more to catch duplicates.
async fn read_assignments(
    services: &Services,
    want: &HashSet<String>,
    deadline: Instant,
    quiet: Duration,
) -> anyhow::Result<Assignments> {
    let bus = Bus::connect(&services.events_url, "faults-check", &services.memory)?;
    let mut sub = bus.subscribe(
        &unique_name("faults-reader", '-'),
        &[services.deliveries_topic.as_str()],
    )?;
    let mut seen = Assignments::default();
    let mut all_seen_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if let Some(t) = all_seen_at
            && now >= t + quiet
        {
            break;
        }
        if all_seen_at.is_none() && now >= deadline {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            Ok(Ok(r)) => {
                let Ok(e) = Envelope::<Value>::from_json(&r.payload) else {
                    continue;
                };
                if e.event_type == "PartnerAssigned" {
                    *seen.records.entry(e.subject.clone()).or_default() += 1;
                    seen.ids.entry(e.subject.clone()).or_default().insert(e.id);
                }
            }
            Ok(Err(e)) => eprintln!("faults: reading deliveries: {e}"),
            Err(_) => {}
        }
        if all_seen_at.is_none() && want.iter().all(|id| seen.distinct(id) > 0) {
            all_seen_at = Some(Instant::now());
        }
    }
    Ok(seen)
}

/// One message as mailpit lists it.
#[derive(Clone, Debug)]
struct Mail {
    /// mailpit's own id of the stored message.
    id: String,
    to: String,
    subject: String,
    message_id: String,
    created: String,
}

/// The confirmation emails mailpit holds for addresses containing `mailbox`.
async fn mails(http: &reqwest::Client, api: &str, mailbox: &str) -> anyhow::Result<Vec<Mail>> {
    let mut out = Vec::new();
    let mut start = 0usize;
    loop {
        let page: Value = http
            .get(format!("{}/api/v1/search", api.trim_end_matches('/')))
            .query(&[
                (
                    "query",
                    format!("to:\"{mailbox}\" subject:\"is confirmed\""),
                ),
                ("start", start.to_string()),
                ("limit", "1000".to_string()),
            ])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("mailpit search")?
            .json()
            .await
            .context("mailpit search reply")?;
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        let total = usize::try_from(page["messages_count"].as_u64().unwrap_or(0)).unwrap_or(0);
        for m in &messages {
            let subject = m["Subject"].as_str().unwrap_or_default().to_string();
            for to in m["To"].as_array().into_iter().flatten() {
                out.push(Mail {
                    id: m["ID"].as_str().unwrap_or_default().to_string(),
                    to: to["Address"].as_str().unwrap_or_default().to_lowercase(),
                    subject: subject.clone(),
                    message_id: m["MessageID"].as_str().unwrap_or_default().to_string(),
                    created: m["Created"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
        start += messages.len();
        if messages.is_empty() || start >= total {
            // Messages arriving between two pages shift the offsets: list each stored
            // message once.
            let mut seen = HashSet::new();
            out.retain(|m| seen.insert((m.id.clone(), m.to.clone())));
            return Ok(out);
        }
    }
}

/// Confirmation emails per recipient address.
fn confirmations(mails: &[Mail]) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for m in mails.iter().filter(|m| is_confirmation(m)) {
        *by.entry(m.to.clone()).or_default() += 1;
    }
    by
}

fn is_confirmation(m: &Mail) -> bool {
    m.subject.ends_with("is confirmed")
}

/// Whether the delivery service shows a partner for the order.
async fn assigned(http: &reqwest::Client, services: &Services, admin: &str, id: &str) -> bool {
    let Ok(r) = http
        .get(format!("{}/v1/deliveries/{id}", services.delivery))
        .bearer_auth(admin)
        .send()
        .await
    else {
        return false;
    };
    if !r.status().is_success() {
        return false;
    }
    let body: Value = r.json().await.unwrap_or(Value::Null);
    !body["partner"].is_null() && body["status"] != "PENDING"
}

/// The order's status as the order service tells (None when not found).
async fn order_status(
    http: &reqwest::Client,
    services: &Services,
    admin: &str,
    id: &str,
) -> Option<String> {
    let r = http
        .get(format!("{}/v1/orders/{id}", services.order))
        .bearer_auth(admin)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    body["status"].as_str().map(str::to_owned)
}

// =====================================================================================
// Seeding
// =====================================================================================

async fn seed(services: &Services, http: &reqwest::Client) -> anyhow::Result<Vec<String>> {
    let admin = services.admin();
    let mut products = Vec::new();
    for i in 0..2 {
        let body = json!({
            "sku": unique_name("FAULT", '-').to_uppercase(),
            "title": format!("Fault suite product {i}"),
            "description": "A product for the fault suite.",
            "brand": "Testbrand",
            "category": "home/kitchen",
            "price": {"minor": 1_250 + i * 100, "currency": "EUR"},
            "attributes": {},
            "images": [],
            "stock_hint": 7
        });
        let r = http
            .post(format!("{}/v1/products", services.search))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let created: Value = r.json().await.unwrap_or(Value::Null);
        if status.as_u16() != 201 {
            bail!("create product: {status} {created}");
        }
        let id = created["id"].as_str().context("product id")?.to_string();
        // The order service creates the stock row from catalog.v1; then set it high.
        storefront_tests::wait_until(Duration::from_secs(60), || async {
            let r = http
                .get(format!("{}/v1/stock/{id}", services.order))
                .bearer_auth(&admin)
                .send()
                .await?;
            Ok(r.status().is_success().then_some(()))
        })
        .await
        .with_context(|| format!("stock row of {id}"))?;
        let r = http
            .put(format!("{}/v1/stock/{id}", services.order))
            .bearer_auth(&admin)
            .json(&json!({"available": 1_000_000}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "PUT stock: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        products.push(id);
    }
    for i in 0..3 {
        let account = unique_name(&format!("partner{i}"), '-');
        let body = json!({
            "account_id": account,
            "name": format!("Partner {i}"),
            "email": format!("{account}@partners.test"),
            "phone": "+49 30 1234",
            "on_shift": true,
            "service_area": {"postal_prefixes": ["10"]},
            "capacity": {"max_concurrent": 1000, "max_items": 10000}
        });
        let r = http
            .post(format!("{}/v1/partners", services.delivery))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            bail!(
                "create partner: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
    }
    Ok(products)
}

// =====================================================================================
// The run
// =====================================================================================

struct FaultReport {
    name: &'static str,
    restart_took: Duration,
    down_calls: usize,
    down_2xx: usize,
    down_503: usize,
    down_other: BTreeMap<String, usize>,
    down_max: Duration,
    down_slowest: &'static str,
    /// Per call kind while down: (calls, slowest, answers by status).
    down_by_call: BTreeMap<&'static str, (usize, Duration, BTreeMap<String, usize>)>,
    first_2xx_after: Option<Duration>,
}

#[allow(clippy::too_many_lines)]
async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    stack("up", &["mariadb", "redis", "kafka", "mailpit"]).await?;
    let revive = Revive;
    let stack_info = Stack::get();
    let (mut services, namespaces) = spawn_services(stack_info).await?;
    let http = reqwest::Client::builder().timeout(CLIENT_TIMEOUT).build()?;
    let products = seed(&services, &http).await?;
    let mailbox = namespaces.mailbox.address().to_lowercase();
    println!(
        "faults: services up and seeded in {:.1?}; mailbox {mailbox}",
        started.elapsed()
    );

    let shop = Arc::new(Shop {
        client: Client {
            http: http.clone(),
            phase: AtomicUsize::new(0),
            samples: Mutex::new(Vec::new()),
        },
        stop: AtomicBool::new(false),
        next: AtomicUsize::new(0),
        cart: services.cart.clone(),
        order: services.order.clone(),
        products,
        mailbox: mailbox.clone(),
        issuer: services.issuer.clone(),
        run: unique_name("run", '-'),
    });
    let shoppers: Vec<_> = (0..SHOPPERS)
        .map(|i| tokio::spawn(shopper(shop.clone(), i)))
        .collect();
    let mut fine_for: HashMap<&'static str, u16> = HashMap::new();
    let probers: Vec<_> = probes(&services, &shop.run)
        .into_iter()
        .map(|p| {
            if let Some(s) = p.also_fine {
                fine_for.insert(p.what, s);
            }
            tokio::spawn(prober(shop.clone(), p))
        })
        .collect();

    // Steady state first, then each fault: kill, down, restart, recover.
    tokio::time::sleep(RECOVER_FOR).await;
    let mut restarted_at = Vec::new();
    let mut restart_took = Vec::new();
    for (i, fault) in FAULTS.iter().enumerate() {
        shop.client.phase.store(down_phase(i), Ordering::SeqCst);
        let t = Instant::now();
        services.kill(*fault).await?;
        println!(
            "faults: {} down at {}",
            fault.name(),
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        tokio::time::sleep(DOWN_FOR.saturating_sub(t.elapsed())).await;
        let t = Instant::now();
        services.restart(*fault).await?;
        let took = t.elapsed();
        println!(
            "faults: {} back after {took:.1?} at {}",
            fault.name(),
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        restart_took.push(took);
        restarted_at.push(Instant::now());
        shop.client.phase.store(down_phase(i) + 1, Ordering::SeqCst);
        tokio::time::sleep(RECOVER_FOR).await;
    }
    shop.client
        .phase
        .store(down_phase(FAULTS.len()), Ordering::SeqCst);
    shop.stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for s in shoppers {
        outcomes.extend(s.await.context("shopper")?);
    }
    for p in probers {
        p.await.context("prober")?;
    }
    let faults_done = started.elapsed();
    println!("faults: fault sequence done at {faults_done:.1?}; checking");

    // ---- the checks ----------------------------------------------------------------
    let placed: Vec<(String, String)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Placed { order_id, email } => Some((order_id.clone(), email.clone())),
            _ => None,
        })
        .collect();
    let rejected: Vec<(u16, Value)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Rejected { status, body } => Some((*status, body.clone())),
            _ => None,
        })
        .collect();
    let gave_up = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::GaveUp))
        .count();
    let ids: HashSet<String> = placed.iter().map(|(id, _)| id.clone()).collect();
    let deadline = Instant::now() + SETTLE;
    let admin = services.admin();

    // Delivery: every order assigned (the delivery service's own view).
    let mut waiting: Vec<String> = ids.iter().cloned().collect();
    while !waiting.is_empty() && Instant::now() < deadline {
        let checked: Vec<(String, bool)> = futures::stream::iter(waiting.clone())
            .map(|id| {
                let http = &http;
                let services = &services;
                let admin = &admin;
                async move {
                    let ok = assigned(http, services, admin, &id).await;
                    (id, ok)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        waiting = checked
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(id, _)| id)
            .collect();
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let assigned_count = ids.len() - waiting.len();

    // Emails: every order's confirmation in mailpit.
    loop {
        let got = confirmations(&mails(&http, &stack_info.mailpit_url, &mailbox).await?);
        let missing = placed
            .iter()
            .filter(|(_, email)| !got.contains_key(email))
            .count();
        if missing == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // PartnerAssigned events (also waits a quiet period for late duplicates).
    let events = read_assignments(&services, &ids, deadline, Duration::from_secs(3)).await?;
    let all_mails = mails(&http, &stack_info.mailpit_url, &mailbox).await?;
    let got = confirmations(&all_mails);

    let one_assignment = ids.iter().filter(|id| events.distinct(id) == 1).count();
    let no_assignment_event = ids.iter().filter(|id| events.distinct(id) == 0).count();
    let several_assignments = ids.iter().filter(|id| events.distinct(id) > 1).count();
    let redelivered_records = ids
        .iter()
        .filter(|id| events.records.get(*id).copied().unwrap_or(0) > events.distinct(id))
        .count();
    let one_email = placed
        .iter()
        .filter(|(_, e)| got.get(e).copied() == Some(1))
        .count();
    let missing_email: Vec<&String> = placed
        .iter()
        .filter(|(_, e)| !got.contains_key(e))
        .map(|(id, _)| id)
        .collect();
    let duplicate_emails: usize = placed
        .iter()
        .map(|(_, e)| got.get(e).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    let placed_emails: HashSet<&str> = placed.iter().map(|(_, e)| e.as_str()).collect();
    let emails_for_unacknowledged = got
        .iter()
        .filter(|(to, _)| !placed_emails.contains(to.as_str()))
        .count();
    let statuses: Vec<Option<String>> = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let http = &http;
            let services = &services;
            let admin = &admin;
            async move { order_status(http, services, admin, &id).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let lost = statuses.iter().filter(|s| s.is_none()).count();
    let followed = statuses
        .iter()
        .filter(|s| s.as_deref() == Some("PARTNER_ASSIGNED"))
        .count();

    // Latency and statuses while each dependency was down.
    let samples = shop.client.samples.lock().await.clone();
    let mut reports = Vec::new();
    for (i, fault) in FAULTS.iter().enumerate() {
        let down: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.phase == down_phase(i))
            .collect();
        let mut other = BTreeMap::new();
        for s in &down {
            match s.status {
                Some(200..=299 | 503) => {}
                Some(c) if fine_for.get(s.what) == Some(&c) => {}
                Some(c) => *other.entry(format!("{} {c}", s.what)).or_default() += 1,
                None => *other.entry(format!("{} no answer", s.what)).or_default() += 1,
            }
        }
        let first_2xx_after = samples
            .iter()
            .filter(|s| s.what == "place order" && is_2xx(s.status) && s.started >= restarted_at[i])
            .map(|s| (s.started + s.took).duration_since(restarted_at[i]))
            .min();
        let mut by_call: BTreeMap<&'static str, (usize, Duration, BTreeMap<String, usize>)> =
            BTreeMap::new();
        for s in &down {
            let e = by_call.entry(s.what).or_default();
            e.0 += 1;
            e.1 = e.1.max(s.took);
            let status = s
                .status
                .map_or_else(|| "none".to_string(), |c| c.to_string());
            *e.2.entry(status).or_default() += 1;
        }
        reports.push(FaultReport {
            down_by_call: by_call,
            name: fault.name(),
            restart_took: restart_took[i],
            down_calls: down.len(),
            down_2xx: down.iter().filter(|s| is_2xx(s.status)).count(),
            down_503: down.iter().filter(|s| s.status == Some(503)).count(),
            down_other: other,
            down_max: down.iter().map(|s| s.took).max().unwrap_or_default(),
            down_slowest: down.iter().max_by_key(|s| s.took).map_or("-", |s| s.what),
            first_2xx_after,
        });
    }
    let max_down = reports.iter().map(|r| r.down_max).max().unwrap_or_default();
    let total_503 = samples.iter().filter(|s| s.status == Some(503)).count();
    let attempted = shop.next.load(Ordering::SeqCst);

    println!();
    println!("==================== fault suite ====================");
    println!("orders attempted (keys)            {attempted:>6}");
    println!("orders 2xx                         {:>6}", placed.len());
    println!("orders rejected 4xx                {:>6}", rejected.len());
    println!("orders given up (no 2xx in 90 s)   {gave_up:>6}");
    println!("orders lost (2xx, not found)       {lost:>6}");
    println!("assigned (delivery API)            {assigned_count:>6}");
    println!("exactly one PartnerAssigned        {one_assignment:>6}");
    println!("no PartnerAssigned event           {no_assignment_event:>6}");
    println!("several PartnerAssigned (ids)      {several_assignments:>6}");
    println!("orders with redelivered records    {redelivered_records:>6}");
    println!("order status PARTNER_ASSIGNED      {followed:>6}");
    println!("exactly one confirmation email     {one_email:>6}");
    println!(
        "missing confirmation emails        {:>6}",
        missing_email.len()
    );
    println!("duplicate confirmation emails      {duplicate_emails:>6}");
    println!("emails for orders without a 2xx    {emails_for_unacknowledged:>6}");
    println!("API calls                          {:>6}", samples.len());
    println!("503 answers (whole run)            {total_503:>6}");
    println!("max latency while down             {max_down:>6.2?}");
    println!("-----------------------------------------------------");
    println!(
        "{:<22} {:>8} {:>6} {:>5} {:>5} {:>9} {:>10}  other answers; slowest call",
        "fault", "restart", "calls", "2xx", "503", "max", "first 2xx"
    );
    for r in &reports {
        println!(
            "{:<22} {:>8.1?} {:>6} {:>5} {:>5} {:>9.2?} {:>10}  {:?}; {}",
            r.name,
            r.restart_took,
            r.down_calls,
            r.down_2xx,
            r.down_503,
            r.down_max,
            r.first_2xx_after
                .map_or_else(|| "never".to_string(), |d| format!("{d:.1?}")),
            r.down_other,
            r.down_slowest
        );
        if matches!(
            FAULTS.iter().find(|f| f.name() == r.name),
            Some(Fault::Stack(_))
        ) {
            for (what, (n, max, statuses)) in &r.down_by_call {
                println!("    {what:<42} {n:>4} calls, slowest {max:>8.2?}, answers {statuses:?}");
            }
        }
    }
    println!(
        "total {:.1?} (faults done at {faults_done:.1?})",
        started.elapsed()
    );
    println!("=====================================================");
    if !rejected.is_empty() {
        println!("first rejections: {:?}", &rejected[..rejected.len().min(3)]);
    }
    for (id, email) in &placed {
        if got.get(email).copied().unwrap_or(0) > 1 {
            let copies: Vec<String> = all_mails
                .iter()
                .filter(|m| &m.to == email && is_confirmation(m))
                .map(|m| {
                    format!(
                        "{} mailpit id {} Message-ID {}",
                        m.created, m.id, m.message_id
                    )
                })
                .collect();
            println!("duplicate confirmation for order {id}: {copies:?}");
        }
    }
    if !missing_email.is_empty() {
        println!(
            "orders without email (first 5): {:?}",
            &missing_email[..missing_email.len().min(5)]
        );
    }
    if !waiting.is_empty() {
        println!(
            "orders not assigned (first 5): {:?}",
            &waiting[..waiting.len().min(5)]
        );
    }

    services.shutdown().await;
    drop(namespaces);
    drop(revive);

    // ---- the verdict ---------------------------------------------------------------
    let mut failures = Vec::new();
    if placed.is_empty() {
        failures.push("no order got a 2xx".to_string());
    }
    if !rejected.is_empty() || gave_up > 0 {
        failures.push(format!(
            "{} order(s) rejected and {gave_up} given up",
            rejected.len()
        ));
    }
    if lost > 0 {
        failures.push(format!("{lost} acknowledged order(s) lost"));
    }
    if assigned_count != ids.len() || one_assignment != ids.len() {
        failures.push(format!(
            "assignments: {assigned_count} assigned, {one_assignment} with exactly one PartnerAssigned, of {}",
            ids.len()
        ));
    }
    if one_email != placed.len() || duplicate_emails > 0 {
        failures.push(format!(
            "emails: {one_email} orders with exactly one confirmation of {}; {} missing, {duplicate_emails} duplicate(s)",
            placed.len(),
            missing_email.len()
        ));
    }
    for r in &reports {
        if r.down_max >= DOWN_BOUND {
            failures.push(format!(
                "{} down: slowest call ({}) took {:.2?} (bound {DOWN_BOUND:?})",
                r.name, r.down_slowest, r.down_max
            ));
        }
        if !r.down_other.is_empty() {
            failures.push(format!(
                "{} down: answers other than 2xx/503: {:?}",
                r.name, r.down_other
            ));
        }
        if r.first_2xx_after.is_none() {
            failures.push(format!("{}: no order placed after the restart", r.name));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n  "));
    }
    Ok(())
}
