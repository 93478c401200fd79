//! `bench-pipeline`: end-to-end latency from `POST /v1/orders` to the order-confirmation
//! e-mail accepted by the SMTP server (p50/p99) at a fixed rate, next to Kafka's own
//! produce→consume latency and the time of one SMTP send, all measured in the same run on the
//! real local stack (`tests/stack/stack up`).
//!
//! Search (embedded), cart (MariaDB), order (MariaDB, Kafka, outbox relay), delivery (MariaDB,
//! Kafka) and notification (MariaDB, Kafka, mailpit over SMTP) run in this process on loopback
//! ports, in namespaces of their own that are deleted at the end. See `bench/README.md` for
//! what is measured and how to read it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::Parser;
use futures::StreamExt as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::{Value, json};
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::backend::{MailUrl, SqlUrl};
use storefront_kit::event::Envelope;
use storefront_notification::adapters::smtp::SmtpMailer;
use storefront_notification::domain::plan::context;
use storefront_notification::domain::{OrderSnapshot, Rendered, TemplateKind, Templates, plan};
use storefront_notification::ports::{Mailer as _, OutgoingMail};
use storefront_order::domain::Order;
use storefront_order::domain::events::order_confirmed;
use storefront_tests::{Stack, load_average};

#[path = "../../common/shop.rs"]
mod shop;
use shop::{Shop as Services, local};

#[derive(Debug, Parser)]
#[command(
    about = "POST /v1/orders → confirmation e-mail accepted by SMTP, next to Kafka produce→consume and one SMTP send, on the local stack"
)]
struct Args {
    /// Orders (and Kafka messages, and SMTP sends) started per second, open loop.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds each measured phase lasts (pipeline, Kafka reference, SMTP reference).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Products (lines) per order.
    #[arg(long, default_value_t = 2)]
    lines: usize,
    /// Orders placed (and e-mails awaited) before measuring, not counted.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// How long to wait for the last confirmation e-mail after the last order was placed.
    #[arg(long, default_value_t = 120)]
    mail_timeout_secs: u64,
}

/// What one phase measured.
#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

impl Stats {
    fn ok(&mut self, d: Duration) {
        self.latencies.push(d);
    }

    fn err(&mut self, e: impl Into<String>) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.into());
    }

    fn count(&self) -> u64 {
        self.latencies.len() as u64 + self.errors
    }

    /// Nearest-rank percentile in milliseconds.
    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
    }

    fn max_ms(&self) -> f64 {
        self.latencies
            .iter()
            .max()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }
}

/// Starts `job(i)` for i in 0..n at `rate` per second — open loop: a slow answer never delays
/// the next start. Returns the results in order (`None` for a job that panicked) and the
/// largest delay of a start behind its schedule (the generator's own lag).
async fn open_loop<F, Fut, T>(n: usize, rate: f64, job: F) -> (Vec<Option<T>>, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut lag = Duration::ZERO;
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let at = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(at).await;
        lag = lag.max(at.elapsed());
        handles.push(tokio::spawn(job(i)));
    }
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.ok());
    }
    (out, lag)
}

/// The pids of the stack's servers the pipeline uses (from its `run/<name>.pid` files): a
/// change between two reads means one was restarted (e.g. by the fault suite, which kills
/// them) and the run's numbers are not comparable.
fn stack_pids(stack: &Stack) -> Vec<(&'static str, String)> {
    let dir = stack.stack_dir.clone().or_else(|| {
        let cache = std::env::var_os("STOREFRONT_CACHE")
            .filter(|c| !c.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| std::path::PathBuf::from(h).join(".cache/storefront"))
            })?;
        Some(cache.join("stack"))
    });
    ["kafka", "mariadb", "mailpit"]
        .into_iter()
        .map(|name| {
            let pid = dir
                .as_ref()
                .and_then(|d| {
                    std::fs::read_to_string(d.join("run").join(format!("{name}.pid"))).ok()
                })
                .map_or_else(|| "?".to_string(), |p| p.trim().to_string());
            (name, pid)
        })
        .collect()
}

// ---- mailpit --------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MailAddress {
    address: String,
}

/// One entry of mailpit's `GET /api/v1/search` answer (fields used here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MailSummary {
    #[serde(default)]
    to: Vec<MailAddress>,
    subject: String,
    /// When mailpit received the message (at the end of SMTP DATA), millisecond resolution.
    created: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct MailPage {
    messages: Vec<MailSummary>,
}

/// Every message mailpit holds whose To contains `fragment` (all pages).
async fn mails_to(
    http: &reqwest::Client,
    api: &str,
    fragment: &str,
) -> anyhow::Result<Vec<MailSummary>> {
    const PAGE: usize = 500;
    let mut out = Vec::new();
    loop {
        let page: MailPage = http
            .get(format!("{api}/api/v1/search"))
            .query(&[
                ("query", format!("to:\"{fragment}\"")),
                ("start", out.len().to_string()),
                ("limit", PAGE.to_string()),
            ])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("mailpit search")?
            .json()
            .await
            .context("mailpit search reply")?;
        let n = page.messages.len();
        out.extend(page.messages);
        if n < PAGE {
            return Ok(out);
        }
    }
}

async fn delete_mails_to(http: &reqwest::Client, api: &str, fragment: &str) {
    let r = http
        .delete(format!("{api}/api/v1/search"))
        .query(&[("query", format!("to:\"{fragment}\""))])
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    if let Err(e) = r {
        eprintln!("could not delete the run's messages from mailpit: {e}");
    }
}

// ---- the pipeline ---------------------------------------------------------------------------

/// The services of one run and what a placement needs.
struct Shop {
    http: reqwest::Client,
    issuer: TestIssuer,
    cart: String,
    order: String,
    mailpit: String,
    /// Put in every recipient address of this run (`<run>-o<i>@…`, `<run>-s<i>@…`).
    run: String,
    products: Vec<String>,
    /// When an observer (a consumer group of its own on the orders topic) first read each
    /// order's `OrderConfirmed`, by order id (wall clock).
    confirmed_seen: Arc<tokio::sync::Mutex<HashMap<String, DateTime<Utc>>>>,
}

/// What one pipeline pass measured.
struct PipelineResult {
    /// `POST /v1/orders` → confirmation e-mail accepted by SMTP.
    e2e: Stats,
    /// `POST /v1/orders` → `201` read.
    post: Stats,
    /// `POST /v1/orders` → `OrderConfirmed` read from the orders topic by the observer.
    to_event: Stats,
    /// `OrderConfirmed` read by the observer → e-mail accepted by SMTP.
    event_to_mail: Stats,
    sample: Option<Order>,
    lag: Duration,
}

/// One placement as the generator saw it.
struct Placement {
    /// Wall-clock time just before `POST /v1/orders` (compared with mailpit's `Created`).
    t0: DateTime<Utc>,
    /// Until the `201` answer was read.
    post: Duration,
    order: Result<Order, String>,
}

impl Shop {
    fn user(&self, tag: &str, i: usize) -> String {
        format!("bench-{tag}-{i}")
    }

    fn recipient(&self, tag: &str, i: usize) -> String {
        format!("{}-{tag}{i}@bench.storefront.test", self.run)
    }

    /// Fills one cart per order (`lines` products, one each); not measured.
    async fn fill_carts(&self, tag: &str, n: usize) -> anyhow::Result<()> {
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
            .map(|i| async move {
                let token = self.issuer.token(&self.user(tag, i), &[Role::Customer]);
                for p in &self.products {
                    self.http
                        .post(format!("{}/v1/cart/items", self.cart))
                        .bearer_auth(&token)
                        .json(&json!({"product_id": p, "quantity": 1}))
                        .send()
                        .await?
                        .error_for_status()?;
                }
                Ok(())
            })
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<()>>()
    }

    async fn place(self: Arc<Self>, tag: String, i: usize) -> Placement {
        let token = self.issuer.token(&self.user(&tag, i), &[Role::Customer]);
        let body = json!({
            "customer": {"name": "Bench Buyer", "email": self.recipient(&tag, i)},
            "shipping": {"name": "Bench Buyer", "phone": "+49 30 1234567", "line1": "1 Main Street",
                         "city": "Berlin", "postal_code": "10115", "country": "DE"}
        });
        let t0 = Utc::now();
        let started = Instant::now();
        let answer = async {
            let r = self
                .http
                .post(format!("{}/v1/orders", self.order))
                .bearer_auth(&token)
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let bytes = r.bytes().await.map_err(|e| e.to_string())?;
            if status != reqwest::StatusCode::CREATED {
                return Err(format!(
                    "POST /v1/orders {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                ));
            }
            serde_json::from_slice::<Order>(&bytes).map_err(|e| format!("order answer: {e}"))
        }
        .await;
        Placement {
            t0,
            post: started.elapsed(),
            order: answer,
        }
    }

    /// Places `n` orders at `rate` per second (carts filled first, not measured), then waits
    /// for their confirmation e-mails in mailpit. Returns (end to end, POST answered, an
    /// order, generator lag).
    async fn run(
        self: &Arc<Self>,
        tag: &str,
        n: usize,
        rate: f64,
        confirmation_subject: &dyn Fn(&Order) -> String,
        mail_timeout: Duration,
    ) -> anyhow::Result<PipelineResult> {
        self.fill_carts(tag, n).await.context("filling carts")?;
        let (placements, lag) =
            open_loop(n, rate, |i| self.clone().place(tag.to_string(), i)).await;

        let mut post = Stats::default();
        let mut expected = Vec::with_capacity(n);
        let mut sample = None;
        for (i, p) in placements.into_iter().enumerate() {
            match p {
                Some(Placement {
                    t0,
                    post: d,
                    order: Ok(order),
                }) => {
                    post.ok(d);
                    expected.push((i, t0, confirmation_subject(&order), order.id.clone()));
                    sample.get_or_insert(order);
                }
                Some(Placement { order: Err(e), .. }) => post.err(e),
                None => post.err("placement task panicked"),
            }
        }

        // Wait until every placed order's confirmation is in mailpit (or the timeout).
        let fragment = format!("{}-{tag}", self.run);
        let deadline = Instant::now() + mail_timeout;
        let arrived = loop {
            let mails = mails_to(&self.http, &self.mailpit, &fragment).await?;
            let found = expected
                .iter()
                .filter(|(i, _, subject, _)| {
                    let to = self.recipient(tag, *i);
                    mails
                        .iter()
                        .any(|m| m.subject == *subject && m.to.iter().any(|a| a.address == to))
                })
                .count();
            if found == expected.len() || Instant::now() >= deadline {
                break mails;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };

        let seen = self.confirmed_seen.lock().await.clone();
        let mut to_event = Stats::default();
        let mut event_to_mail = Stats::default();
        let mut e2e = Stats::default();
        for _ in 0..post.errors {
            e2e.err(post.first_error.clone().unwrap_or_default());
        }
        for (i, t0, subject, order_id) in &expected {
            let event = seen.get(order_id).copied();
            let to = self.recipient(tag, *i);
            // The first copy counts (delivery is at-least-once).
            let first = arrived
                .iter()
                .filter(|m| m.subject == *subject && m.to.iter().any(|a| a.address == to))
                .map(|m| m.created)
                .min();
            match first {
                // mailpit's Created is truncated to the millisecond: clamp the rare -1 ms.
                Some(t1) => {
                    e2e.ok((t1 - *t0).to_std().unwrap_or_default());
                    if let Some(te) = event {
                        to_event.ok((te - *t0).to_std().unwrap_or_default());
                        event_to_mail.ok((t1 - te).to_std().unwrap_or_default());
                    }
                }
                None => e2e.err(format!(
                    "no confirmation e-mail to {to} within {mail_timeout:?} after the last order"
                )),
            }
        }
        Ok(PipelineResult {
            e2e,
            post,
            to_event,
            event_to_mail,
            sample,
            lag,
        })
    }
}

/// Records when each order's `OrderConfirmed` is first read from `topic` by a consumer group of
/// its own (the same client settings as the services' consumers).
fn observe_confirmations(
    stack: &Stack,
    topic: &str,
    seen: Arc<tokio::sync::Mutex<HashMap<String, DateTime<Utc>>>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka_brokers)
        .set("client.id", "bench-pipeline-observer")
        .set("group.id", format!("{topic}-observer"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok(m) = consumer.recv().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let at = Utc::now();
            if let Some(e) = m
                .payload()
                .and_then(|p| Envelope::<Value>::from_json(p).ok())
                && e.event_type == "OrderConfirmed"
            {
                seen.lock().await.entry(e.subject).or_insert(at);
            }
        }
    }))
}

// ---- Kafka reference ------------------------------------------------------------------------

/// Produce→consume latency of `n` messages of `payload`'s size on a fresh 3-partition topic at
/// `rate` per second: a producer configured like the kit's bus (idempotent, `acks=all`,
/// `linger.ms=2`) and one consumer in a group (committing each message, like the services'
/// consumers). Returns (produce→consume, produce acknowledged, generator lag).
async fn kafka_reference(
    stack: &Stack,
    n: usize,
    rate: f64,
    payload: Vec<u8>,
) -> anyhow::Result<(Stats, Stats, Duration)> {
    let topic = stack.kafka_topic("bench-pipeline-ref", 3).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka_brokers)
        .set("client.id", "bench-pipeline")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .create()?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka_brokers)
        .set("client.id", "bench-pipeline")
        .set("group.id", format!("{}-group", topic.name()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()?;
    consumer.subscribe(&[topic.name()])?;

    // The consumer reports (key, produce→consume) for every message.
    let base = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Duration)>();
    let reader = tokio::spawn(async move {
        while let Ok(m) = consumer.recv().await {
            let now = base.elapsed();
            let sent = m.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == "sent-ns")
                    .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<u64>().ok())
            });
            let key = m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            if let Some(sent) = sent {
                let _ = tx.send((key, now.saturating_sub(Duration::from_nanos(sent))));
            }
            let _ = consumer.commit_message(&m, CommitMode::Async);
        }
    });

    let payload = Arc::new(payload);
    let name = Arc::new(topic.name().to_string());
    let send = |key: String| {
        let (producer, payload, name) = (producer.clone(), payload.clone(), name.clone());
        async move {
            let sent = base.elapsed();
            let stamp = sent.as_nanos().to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: "sent-ns",
                value: Some(stamp.as_bytes()),
            });
            let record = FutureRecord::to(name.as_str())
                .key(&key)
                .payload(payload.as_slice())
                .headers(headers);
            let started = Instant::now();
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map(|_| started.elapsed())
                .map_err(|(e, _)| e.to_string())
        }
    };

    // Warm-up (not measured): until the consumer has joined and read what was sent.
    let warm = 20;
    for i in 0..warm {
        send(format!("w{i}"))
            .await
            .map_err(|e| anyhow::anyhow!("Kafka warm-up send: {e}"))?;
    }
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < warm {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((key, _))) if key.starts_with('w') => seen += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                bail!("the Kafka reference consumer read {seen}/{warm} warm-up messages in 60 s")
            }
        }
    }

    let (sends, lag) = open_loop(n, rate, |i| send(format!("m{i}"))).await;
    let mut acked = Stats::default();
    for s in sends {
        match s {
            Some(Ok(d)) => acked.ok(d),
            Some(Err(e)) => acked.err(e),
            None => acked.err("send task panicked"),
        }
    }
    let expected = acked.latencies.len();
    let mut consumed = Stats::default();
    let mut got = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < expected {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((key, d))) if key.starts_with('m') => {
                if got.insert(key) {
                    consumed.ok(d);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    for _ in got.len()..expected {
        consumed.err("not consumed within 60 s");
    }
    for _ in 0..acked.errors {
        consumed.err(acked.first_error.clone().unwrap_or_default());
    }
    reader.abort();
    drop(topic);
    Ok((consumed, acked, lag))
}

// ---- SMTP reference -------------------------------------------------------------------------

/// `n` sends of the rendered confirmation at `rate` per second through the notification
/// service's own mailer (`SmtpMailer`, pooled like the service: 4 connections, 10 s timeout),
/// each timed from the call to the server's `250` after DATA. Returns (send, generator lag).
async fn smtp_reference(
    stack: &Stack,
    shop: &Shop,
    n: usize,
    rate: f64,
    message: &Rendered,
) -> anyhow::Result<(Stats, Duration)> {
    let defaults = storefront_notification::Settings::default();
    let mailer = Arc::new(
        SmtpMailer::new(
            &stack.smtp_url,
            Duration::from_secs(defaults.smtp_timeout_secs),
            defaults.smtp_pool_size,
        )
        .map_err(|e| anyhow::anyhow!("SMTP mailer: {e}"))?,
    );
    let mail = |i: usize| OutgoingMail {
        from: defaults.from.clone(),
        to: format!("\"Bench Buyer\" <{}>", shop.recipient("s", i)),
        subject: message.subject.clone(),
        text: message.text.clone(),
        html: message.html.clone(),
        message_id: format!("<{}@storefront>", uuid::Uuid::now_v7()),
    };
    // Warm-up (not measured): opens the pool's connections.
    let warm: Vec<_> = (0..defaults.smtp_pool_size as usize * 2)
        .map(|i| {
            let (mailer, mail) = (mailer.clone(), mail(1_000_000 + i));
            async move { mailer.send(&mail).await }
        })
        .collect();
    for r in futures::future::join_all(warm).await {
        r.map_err(|e| anyhow::anyhow!("SMTP warm-up send: {e}"))?;
    }
    let (sends, lag) = open_loop(n, rate, |i| {
        let (mailer, mail) = (mailer.clone(), mail(i));
        async move {
            let started = Instant::now();
            mailer
                .send(&mail)
                .await
                .map(|()| started.elapsed())
                .map_err(|e| e.to_string())
        }
    })
    .await;
    let mut stats = Stats::default();
    for s in sends {
        match s {
            Some(Ok(d)) => stats.ok(d),
            Some(Err(e)) => stats.err(e),
            None => stats.err("send task panicked"),
        }
    }
    Ok((stats, lag))
}

// ---- main -----------------------------------------------------------------------------------

/// The allocator the `storefront` binary uses, so the in-process services run as they ship.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.rate.is_nan() || args.rate <= 0.0 || args.seconds == 0 {
        bail!("--rate and --seconds must be positive");
    }
    let n = (args.rate * args.seconds as f64).round() as usize;

    // --- five services on the real stack, in namespaces of their own -----------------------
    let stack = Stack::get();
    let shop_services = Services::start(stack, "bench-pipe", |o| {
        o.relay_enabled = true;
        o.auto_confirm = true;
    })
    .await?;
    let dlq = stack.kafka_topic("bench-pipe-dlq", 1).await?;
    let delivery_db = stack.mysql_database().await?;
    let notification_db = stack.mysql_database().await?;
    let (platform, issuer, events) = (
        shop_services.platform.clone(),
        shop_services.issuer.clone(),
        shop_services.events.clone(),
    );
    let (orders, deliveries) = (&shop_services.orders, &shop_services.deliveries);
    let (cart_base, order_base) = (shop_services.cart.clone(), shop_services.order.clone());
    let delivery = storefront_delivery::app::build_with(
        &storefront_delivery::Settings {
            listen: "127.0.0.1:0".into(),
            database_url: Some(SqlUrl::parse(delivery_db.url())?),
            events_url: Some(events.clone()),
            orders_topic: orders.name().to_string(),
            deliveries_topic: deliveries.name().to_string(),
            consumer_group: format!("{}-delivery", orders.name()),
            ..storefront_delivery::Settings::default()
        },
        &platform,
        issuer.verifier(),
    )
    .await
    .context("delivery")?;
    let delivery_base = local(delivery.port());
    tokio::spawn(delivery.run_until_stopped(platform.clone()));
    let notification = storefront_notification::app::build_with(
        &storefront_notification::Settings {
            listen: "127.0.0.1:0".into(),
            database_url: Some(SqlUrl::parse(notification_db.url())?),
            events_url: Some(events.clone()),
            mail_url: Some(MailUrl::parse(&stack.smtp_url)?),
            orders_topic: orders.name().to_string(),
            deliveries_topic: deliveries.name().to_string(),
            dlq_topic: dlq.name().to_string(),
            consumer_group: format!("{}-notification", orders.name()),
            ..storefront_notification::Settings::default()
        },
        &platform,
        issuer.verifier(),
    )
    .await
    .context("notification")?;
    tokio::spawn(notification.run_until_stopped(platform.clone()));

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    let admin = issuer.token("bench-admin", &[Role::Admin]);

    // --- products with plenty of stock; partners covering 10115 with room for every order ----
    let products = shop_services
        .stocked_products(&http, args.lines, "PIPE")
        .await?;
    // A partner holds at most 1,000 deliveries at once: enough partners for every order.
    for k in 0..(args.warmup + n).div_ceil(1000).max(1) {
        let account = storefront_tests::unique_name(&format!("bench-partner-{k}"), '-');
        http.post(format!("{delivery_base}/v1/partners"))
            .bearer_auth(&admin)
            .json(&json!({
                "account_id": account, "name": format!("Partner {k}"),
                "email": format!("{account}@partners.test"), "phone": "+49 30 1234",
                "on_shift": true,
                "service_area": {"postal_prefixes": ["10"]},
                "capacity": {"max_concurrent": 1000, "max_items": 10_000}
            }))
            .send()
            .await?
            .error_for_status()
            .context("create delivery partner")?;
    }

    let shop = Arc::new(Shop {
        http: http.clone(),
        issuer: issuer.clone(),
        cart: cart_base.clone(),
        order: order_base.clone(),
        mailpit: stack.mailpit_url.trim_end_matches('/').to_string(),
        run: storefront_tests::unique_name("pipe", '-'),
        products,
        confirmed_seen: Arc::default(),
    });
    let observer = observe_confirmations(stack, orders.name(), shop.confirmed_seen.clone())?;
    let templates = Templates::load(None).map_err(|e| anyhow::anyhow!("templates: {e}"))?;
    // The confirmation of an order as the notification service renders it.
    let render = |o: &Order| -> anyhow::Result<Rendered> {
        let event = order_confirmed(o);
        let plan = plan(&event)?.context("OrderConfirmed has a plan")?;
        let snapshot = OrderSnapshot::from_data(&event.data)?;
        Ok(templates.render(TemplateKind::OrderConfirmation, &context(&snapshot, &plan))?)
    };
    let subject_of = |o: &Order| render(o).map(|r| r.subject).unwrap_or_default();
    let mail_timeout = Duration::from_secs(args.mail_timeout_secs);
    let result = async {
        // --- warm-up: the whole chain once, not measured -----------------------------------
        let PipelineResult {
            e2e: warm, sample, ..
        } = shop
            .run("w", args.warmup.max(1), args.rate, &subject_of, mail_timeout)
            .await?;
        if warm.errors > 0 {
            bail!(
                "warm-up: {} of {} orders without a confirmation e-mail: {:?}",
                warm.errors,
                warm.count(),
                warm.first_error
            );
        }
        let sample = sample.context("a warm-up order")?;
        let event_size = order_confirmed(&sample).to_json()?.len();
        let message = render(&sample)?;

        let load_before = load_average();
        let pids_before = stack_pids(stack);
        let started = Utc::now();
        let mut restarted = Vec::new();
        let mut pids = pids_before;
        let mut check = |phase: &str| {
            let now = stack_pids(stack);
            for ((name, a), (_, b)) in now.iter().zip(&pids) {
                if a != b {
                    restarted.push(format!("{name} (during the {phase} phase)"));
                }
            }
            pids = now;
        };
        let (kafka, kafka_ack, kafka_lag) =
            kafka_reference(stack, n, args.rate, vec![b'x'; event_size]).await?;
        check("Kafka");
        let PipelineResult {
            e2e: pipeline,
            post,
            to_event,
            event_to_mail,
            lag: pipeline_lag,
            ..
        } = shop
            .run("o", n, args.rate, &subject_of, mail_timeout)
            .await?;
        check("pipeline");
        let (smtp, smtp_lag) = smtp_reference(stack, &shop, n, args.rate, &message).await?;
        check("SMTP");
        let load_after = load_average();


        // --- report -------------------------------------------------------------------------
        println!(
            "\n{} UTC; {:.0} per second for {} s per phase ({n} each), open loop; {} lines per order; OrderConfirmed event {event_size} bytes; confirmation e-mail: \"{}\"; {} cores; load average {load_before} before, {load_after} after.\n",
            started.format("%Y-%m-%d %H:%M"),
            args.rate,
            args.seconds,
            shop.products.len(),
            message.subject,
            std::thread::available_parallelism().map_or(0, |p| p.get()),
        );
        println!("| phase | count | errors | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (name, s) in [
            (
                "pipeline: POST /v1/orders → confirmation accepted by SMTP",
                &pipeline,
            ),
            ("  (POST /v1/orders answered 201)", &post),
            (
                "  (POST → OrderConfirmed read from the orders topic)",
                &to_event,
            ),
            ("  (OrderConfirmed read → e-mail accepted by SMTP)", &event_to_mail),
            ("Kafka produce→consume (same size, same rate)", &kafka),
            ("  (Kafka produce acknowledged, acks=all)", &kafka_ack),
            ("SMTP send (notification's mailer → mailpit)", &smtp),
        ] {
            println!(
                "| {name} | {} | {} | {:.2} | {:.2} | {:.2} |",
                s.count(),
                s.errors,
                s.percentile_ms(50.0),
                s.percentile_ms(99.0),
                s.max_ms()
            );
        }
        let budget = 3.0 * kafka.percentile_ms(99.0) + smtp.percentile_ms(99.0);
        let p99 = pipeline.percentile_ms(99.0);
        println!(
            "\n- goal: pipeline p99 ≤ 3 × Kafka p99 + SMTP p99: {p99:.2} ms vs 3 × {:.2} + {:.2} = {budget:.2} ms → **{}** ({:.2}× the budget)",
            kafka.percentile_ms(99.0),
            smtp.percentile_ms(99.0),
            if p99 <= budget { "met" } else { "not met" },
            p99 / budget
        );
        println!(
            "- generator lag (latest start behind schedule): pipeline {:.1} ms, Kafka {:.1} ms, SMTP {:.1} ms",
            pipeline_lag.as_secs_f64() * 1e3,
            kafka_lag.as_secs_f64() * 1e3,
            smtp_lag.as_secs_f64() * 1e3
        );
        if !restarted.is_empty() {
            println!(
                "- **NOT VALID: {} restarted** (another run killed it); run again",
                restarted.join(", ")
            );
        }
        for (name, s) in [("pipeline", &pipeline), ("Kafka", &kafka), ("SMTP", &smtp)] {
            if let Some(e) = &s.first_error {
                println!("- first {name} error: {e}");
            }
        }
        Ok(pipeline.errors + kafka.errors + smtp.errors)
    }
    .await;

    observer.abort();
    delete_mails_to(&http, &shop.mailpit, &shop.run).await;
    platform.shutdown.trigger();
    // The workers (relays, followers) finish before the data directory goes.
    if platform.shutdown.drained().await.is_err() {
        eprintln!("some workers did not stop within the shutdown deadline");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop((dlq, delivery_db, notification_db));
    drop(shop_services);
    let failed = result?;
    if failed > 0 {
        bail!("{failed} measurements failed");
    }
    Ok(())
}
