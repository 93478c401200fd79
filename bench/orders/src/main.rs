//! `bench-orders`: orders per second and p50/p99 placement latency of `POST /v1/orders`
//! through the order service, next to a bare sqlx loop doing the same inserts on the same
//! MariaDB, in one run on the real local stack (`tests/stack/stack up`).
//!
//! Search (embedded), cart (MariaDB) and order (MariaDB, Kafka) run in this process on
//! loopback ports, in namespaces of their own that are deleted at the end. See
//! `bench/README.md` for what is measured and how to read it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use serde_json::{Value, json};
use sqlx::MySqlPool;
use storefront_kit::auth::Role;
use storefront_kit::event::Envelope;
use storefront_tests::{Stack, load_average};

mod cpu;
#[path = "../../common/shop.rs"]
mod shop;
use shop::Shop;

#[derive(Debug, Parser)]
#[command(about = "Order placement through the service vs a bare sqlx loop, on the local stack")]
struct Args {
    /// Orders per measured pass.
    #[arg(long, default_value_t = 400)]
    orders: usize,
    /// Closed-loop workers (placements in flight).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Measured passes per phase (service and bare passes alternate). Fewer passes run faster,
    /// but their ratio moves by ±5% from run to run on a shared machine.
    #[arg(long, default_value_t = 8)]
    rounds: usize,
    /// Products (lines) per order.
    #[arg(long, default_value_t = 2)]
    lines: usize,
    /// Products in the catalog the orders draw their lines from, in turn (order `i` takes
    /// products `i * lines ..` modulo this). The default, `lines`, puts the same products in
    /// every order: every placement then waits for the stock row locks of the one before.
    #[arg(long)]
    products: Option<usize>,
    /// Orders of the unmeasured warm-up pass of each phase (default: `--orders`), enough for
    /// every pool to open its connections and prepare its statements, and for Kafka's JIT.
    #[arg(long)]
    warmup: Option<usize>,
    /// A `perf record --control fifo:PATH` control FIFO: the profile is enabled during the
    /// measured service passes only (see bench/orders/README.md, "Profiling").
    #[arg(long)]
    perf_ctl: Option<std::path::PathBuf>,
    /// Do not view each filled cart before placing its order: by default a cart is read once
    /// after filling, as the web UI's checkout page does, so the placement finds it cached.
    #[arg(long)]
    cold_cart: bool,
    /// Do not run the order service's outbox relay (events stay in the outbox), to see what
    /// publishing to Kafka meanwhile costs the placements.
    #[arg(long)]
    no_relay: bool,
}

/// The products of order `i`: `lines` of the catalog in turn, distinct when it has that many.
fn lines_of(products: &[String], lines: usize, i: usize) -> Vec<String> {
    (0..lines)
        .map(|j| products[(i * lines + j) % products.len()].clone())
        .collect()
}

/// What one or more passes measured.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

impl Sample {
    fn requests(&self) -> u64 {
        self.latencies.len() as u64 + self.errors
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
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

    fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
    }
}

/// Runs `job(i)` for i in 0..n from `concurrency` workers, timing each.
async fn closed_loop<F, Fut>(n: usize, concurrency: usize, job: F) -> Sample
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (job, next) = (job.clone(), next.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    out.push(job(i).await.map(|()| t.elapsed()));
                }
                out
            })
        })
        .collect();
    let mut sample = Sample::default();
    for w in futures::future::join_all(workers).await {
        for r in w.unwrap_or_else(|e| vec![Err(format!("worker failed: {e}"))]) {
            match r {
                Ok(d) => sample.latencies.push(d),
                Err(e) => {
                    sample.errors += 1;
                    sample.first_error.get_or_insert(e);
                }
            }
        }
    }
    sample.elapsed = started.elapsed();
    sample
}

/// Sum and count of a metric series on `/metrics` (one registry for every in-process service),
/// selected by name prefix and label fragments.
async fn series(http: &reqwest::Client, base: &str, name: &str, labels: &[&str]) -> (f64, f64) {
    let Ok(r) = http.get(format!("{base}/metrics")).send().await else {
        return (0.0, 0.0);
    };
    let text = r.text().await.unwrap_or_default();
    let pick = |suffix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{suffix}")))
            .filter(|l| labels.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (pick("_sum"), pick("_count"))
}

/// Mean milliseconds per call of the parts of a placement, measured during the service passes.
#[derive(Default)]
struct Parts {
    values: Vec<(&'static str, f64, f64)>,
}

const PARTS: [(&str, &str, &[&str]); 3] = [
    (
        "POST /v1/orders (order, whole)",
        "http_request_duration_seconds",
        &[
            "service=\"order\"",
            "method=\"POST\"",
            "route=\"/v1/orders\"",
        ],
    ),
    ("  of which the transaction", "order_place_tx_seconds", &[]),
    (
        "  of which GET /v1/cart (cart, prices via search)",
        "http_request_duration_seconds",
        &["service=\"cart\"", "method=\"GET\"", "route=\"/v1/cart\""],
    ),
];

/// Carts in the cart service's database, and those of them still holding items.
async fn carts(db: &MySqlPool) -> (i64, i64) {
    sqlx::query_as("SELECT COUNT(*), COUNT(CASE WHEN lines_json <> '[]' THEN 1 END) FROM carts")
        .fetch_one(db)
        .await
        .unwrap_or((-1, -1))
}

impl Parts {
    async fn snapshot(http: &reqwest::Client, base: &str) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for (_, name, labels) in PARTS {
            out.push(series(http, base, name, labels).await);
        }
        out
    }

    fn add(&mut self, before: &[(f64, f64)], after: &[(f64, f64)]) {
        if self.values.is_empty() {
            self.values = PARTS.iter().map(|(n, _, _)| (*n, 0.0, 0.0)).collect();
        }
        for (i, v) in self.values.iter_mut().enumerate() {
            v.1 += after[i].0 - before[i].0;
            v.2 += after[i].1 - before[i].1;
        }
    }
}

/// MariaDB's own counters of the commands it ran (`SHOW GLOBAL STATUS`), so a phase's
/// statements per order can be compared with the other's. Read over the bare loop's pool; the
/// other databases on the server are idle during the bench.
const DB_COUNTERS: [&str; 10] = [
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_begin",
    "Com_commit",
    "Com_rollback",
    "Com_stmt_prepare",
    "Com_admin_commands",
    "Questions",
];

async fn db_counters(pool: &MySqlPool) -> Vec<f64> {
    let rows: Vec<(String, String)> = sqlx::query_as("SHOW GLOBAL STATUS")
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    DB_COUNTERS
        .iter()
        .map(|name| {
            rows.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0.0)
        })
        .collect()
}

fn add_counts(total: &mut Vec<f64>, before: &[f64], after: &[f64]) {
    total.resize(DB_COUNTERS.len(), 0.0);
    for (i, t) in total.iter_mut().enumerate() {
        *t += after[i] - before[i];
    }
}

/// Sends `command` to `perf record`'s control FIFO, when one was given.
fn perf_control(fifo: Option<&std::path::Path>, command: &str) {
    use std::io::Write as _;
    let Some(fifo) = fifo else { return };
    let sent = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .and_then(|mut f| f.write_all(format!("{command}\n").as_bytes()));
    if let Err(e) = sent {
        eprintln!("perf control {}: {e}", fifo.display());
    }
}

fn order_body() -> Value {
    json!({
        "customer": {"name": "Bench Buyer", "email": "bench@example.com"},
        "shipping": {"name": "Bench Buyer", "phone": "+49 30 1234567", "line1": "1 Main Street",
                     "city": "Berlin", "postal_code": "10115", "country": "DE"}
    })
}

/// The bare loop's transaction: the statements `OrderRepo::place` runs, in its order, with
/// the same row sizes, written straight with sqlx (no HTTP, no JWT, no cart).
async fn bare_place(
    pool: &MySqlPool,
    user: &str,
    products: &[String],
    sample_order: &Value,
) -> Result<(), sqlx::Error> {
    let now = chrono::Utc::now().timestamp_millis();
    let id = uuid::Uuid::now_v7().to_string();
    let mut order = sample_order.clone();
    order["id"] = json!(id);
    order["user_id"] = json!(user);
    let body = order.to_string();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, idem_key, request_hash, status, response, \
         created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(user)
    .bind(uuid::Uuid::new_v4().to_string())
    .bind("0".repeat(64))
    .bind(201_i64)
    .bind(&body)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, customer, shipping, partner, item_count, \
         total_minor, currency, placed_at, updated_at) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(user)
    .bind("CONFIRMED")
    .bind(order["customer"].to_string())
    .bind(order["shipping"].to_string())
    .bind(products.len() as i64)
    .bind(1_000_i64)
    .bind("EUR")
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; products.len()].join(", ");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO order_lines (order_id, line_no, product_id, sku, title, quantity, \
         unit_minor, line_minor, currency) VALUES {values}"
    )));
    for (n, p) in products.iter().enumerate() {
        q = q
            .bind(&id)
            .bind(n as i64)
            .bind(p)
            .bind("BENCH-SKU")
            .bind("Bench product")
            .bind(1_i64)
            .bind(500_i64)
            .bind(500_i64)
            .bind("EUR");
    }
    q.execute(&mut *tx).await?;
    // Products are distinct and sorted, as the service's reservation takes them.
    let mut sorted: Vec<&String> = products.iter().collect();
    sorted.sort();
    let marks = vec!["?"; sorted.len()].join(", ");
    let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(format!(
        "SELECT product_id, available FROM stock WHERE product_id IN ({marks}) \
         ORDER BY product_id FOR UPDATE"
    )));
    for p in &sorted {
        q = q.bind(*p);
    }
    let have = q.fetch_all(&mut *tx).await?;
    if have.len() != sorted.len() || have.iter().any(|(_, a)| *a < 1) {
        return Err(sqlx::Error::RowNotFound);
    }
    let cases = vec!["WHEN ? THEN ?"; sorted.len()].join(" ");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE stock SET available = available - CASE product_id {cases} END, \
         updated_at = ? WHERE product_id IN ({marks})"
    )));
    for p in &sorted {
        q = q.bind(*p).bind(1_i64);
    }
    q = q.bind(now);
    for p in &sorted {
        q = q.bind(*p);
    }
    q.execute(&mut *tx).await?;
    let mut rows: Vec<(Envelope, &str)> = ["OrderPlaced", "OrderConfirmed"]
        .into_iter()
        .map(|kind| (Envelope::new(kind, "order", &id, order.clone()), kind))
        .collect();
    for (p, available) in &have {
        let e = Envelope::new(
            "StockChanged",
            "order",
            p,
            json!({"product_id": p, "available": available - 1}),
        );
        rows.push((e, "StockChanged"));
    }
    let values = vec!["(?, ?, ?, ?, ?, ?, NULL)"; rows.len()].join(", ");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO outbox (event_id, topic, event_key, event_type, payload, created_at, \
         sent_at) VALUES {values}"
    )));
    for (e, kind) in &rows {
        q = q
            .bind(e.id.to_string())
            .bind("bench-bare")
            .bind(e.subject.clone())
            .bind(*kind)
            .bind(serde_json::to_string(e).unwrap_or_default())
            .bind(now);
    }
    q.execute(&mut *tx).await?;
    tx.commit().await
}

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

    // --- search, cart and order on the real stack, in namespaces of their own --------------
    let stack = Stack::get();
    let shop = Shop::start(stack, "bench", |o| o.relay_enabled = !args.no_relay).await?;
    let bare_db = stack.mysql_database().await?;
    let (issuer, platform) = (shop.issuer.clone(), shop.platform.clone());
    let (cart_base, order_base) = (shop.cart.clone(), shop.order.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1) * 2)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;

    // --- products with plenty of stock, in the service and in the bare database ------------
    let catalog = args.products.unwrap_or(args.lines).max(args.lines);
    let products = shop.stocked_products(&http, catalog, "BENCH").await?;
    // The bare database gets the service's schema (its migrations) and the same stock.
    drop(
        storefront_order::adapters::mysql::MysqlOrders::connect(bare_db.url(), "bench-bare")
            .await
            .map_err(|e| anyhow::anyhow!("bare schema: {e}"))?,
    );
    // The same pool settings as the services' (kit's), so both sides ping alike.
    let bare = storefront_kit::sql::mysql_pool_options(16)
        .connect(bare_db.url())
        .await?;
    for p in &products {
        sqlx::query("INSERT INTO stock (product_id, available, updated_at) VALUES (?, ?, 0)")
            .bind(p)
            .bind(1_000_000_000_i64)
            .execute(&bare)
            .await?;
    }

    // --- warm-up (not measured), then alternate service and bare passes --------------------
    let load_before = load_average();
    let products = Arc::new(products);
    let mut sample_order = Value::Null;
    let mut service = Sample::default();
    let mut bare_sample = Sample::default();
    let mut parts = Parts::default();
    // Orders placed in every pass, warm-up included: all of them must leave their carts.
    let mut placed_total = 0usize;
    let meter = cpu::CpuMeter::new(stack.stack_dir.as_deref());
    let (mut service_cpu, mut bare_cpu) = (cpu::CpuUse::default(), cpu::CpuUse::default());
    let (mut service_db, mut bare_db_counts) = (Vec::new(), Vec::new());
    let passes: Vec<(usize, bool)> =
        std::iter::once((args.warmup.unwrap_or(args.orders).max(1), false))
            .chain((1..=args.rounds).map(|r| (r, true)))
            .collect();
    for (round, measured) in passes {
        let n = if measured { args.orders } else { round };
        let tag = if measured {
            format!("r{round}")
        } else {
            "warm".into()
        };
        // Fill one cart per order (not measured).
        let tokens: Arc<Vec<String>> = Arc::new(
            (0..n)
                .map(|i| issuer.token(&format!("bench-{tag}-{i}"), &[Role::Customer]))
                .collect(),
        );
        let fill = {
            let (http, tokens, products, cart_base) = (
                http.clone(),
                tokens.clone(),
                products.clone(),
                cart_base.clone(),
            );
            let lines = args.lines;
            let view = !args.cold_cart;
            closed_loop(n, args.concurrency, move |i| {
                let (http, tokens, products, cart_base) = (
                    http.clone(),
                    tokens.clone(),
                    products.clone(),
                    cart_base.clone(),
                );
                async move {
                    for p in lines_of(&products, lines, i) {
                        let r = http
                            .post(format!("{cart_base}/v1/cart/items"))
                            .bearer_auth(&tokens[i])
                            .json(&json!({"product_id": p, "quantity": 1}))
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if !r.status().is_success() {
                            return Err(format!("cart add: {}", r.status()));
                        }
                    }
                    if view {
                        let r = http
                            .get(format!("{cart_base}/v1/cart"))
                            .bearer_auth(&tokens[i])
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if !r.status().is_success() {
                            return Err(format!("cart view: {}", r.status()));
                        }
                    }
                    Ok(())
                }
            })
            .await
        };
        if fill.errors > 0 {
            bail!("filling carts failed: {:?}", fill.first_error);
        }
        let metrics_before = Parts::snapshot(&http, &order_base).await;
        let db_before = db_counters(&bare).await;
        if measured {
            perf_control(args.perf_ctl.as_deref(), "enable");
        }
        let cpu_before = meter.snapshot();
        let placed = {
            let (http, tokens, order_base) = (http.clone(), tokens.clone(), order_base.clone());
            let first = Arc::new(tokio::sync::Mutex::new(None::<Value>));
            let keep = first.clone();
            let s = closed_loop(n, args.concurrency, move |i| {
                let (http, tokens, order_base, keep) = (
                    http.clone(),
                    tokens.clone(),
                    order_base.clone(),
                    keep.clone(),
                );
                async move {
                    let r = http
                        .post(format!("{order_base}/v1/orders"))
                        .bearer_auth(&tokens[i])
                        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                        .json(&order_body())
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = r.status();
                    let body = r.bytes().await.map_err(|e| e.to_string())?;
                    if status != reqwest::StatusCode::CREATED {
                        return Err(format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        ));
                    }
                    let mut k = keep.lock().await;
                    if k.is_none() {
                        *k = serde_json::from_slice(&body).ok();
                    }
                    Ok(())
                }
            })
            .await;
            if let Some(v) = first.lock().await.take() {
                sample_order = v;
            }
            s
        };
        let cpu_between = meter.snapshot();
        if measured {
            perf_control(args.perf_ctl.as_deref(), "disable");
        }
        placed_total += placed.latencies.len();
        let db_between = db_counters(&bare).await;
        let metrics_after = Parts::snapshot(&http, &order_base).await;
        if measured {
            parts.add(&metrics_before, &metrics_after);
            service_cpu.add(&cpu_before, &cpu_between);
            add_counts(&mut service_db, &db_before, &db_between);
        }
        let db_before = db_counters(&bare).await;
        let cpu_before = meter.snapshot();
        let bare_pass = {
            let (pool, products, sample) = (bare.clone(), products.clone(), sample_order.clone());
            let tag = tag.clone();
            let lines = args.lines;
            closed_loop(n, args.concurrency, move |i| {
                let (pool, products, sample, user) = (
                    pool.clone(),
                    products.clone(),
                    sample.clone(),
                    format!("bench-{tag}-{i}"),
                );
                async move {
                    bare_place(&pool, &user, &lines_of(&products, lines, i), &sample)
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await
        };
        if measured {
            bare_cpu.add(&cpu_before, &meter.snapshot());
            add_counts(&mut bare_db_counts, &db_before, &db_counters(&bare).await);
            service.merge(placed);
            bare_sample.merge(bare_pass);
        } else if placed.errors > 0 || bare_pass.errors > 0 {
            bail!(
                "warm-up failed: {:?} {:?}",
                placed.first_error,
                bare_pass.first_error
            );
        }
    }
    let load_after = load_average();
    // The cart empties a placed order's cart when `OrderPlaced` reaches it, moments later.
    let cart_db = MySqlPool::connect(shop.cart_db.url()).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut filled, mut holding) = carts(&cart_db).await;
    while holding != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (filled, holding) = carts(&cart_db).await;
    }

    // --- report ----------------------------------------------------------------------------
    println!(
        "\n{} orders per pass, {} lines each from {} products; {} closed-loop workers; {} measured passes per phase (alternating); {}; outbox relay {}; load average {load_before} before, {load_after} after.\n",
        args.orders,
        args.lines,
        products.len(),
        args.concurrency,
        args.rounds,
        if args.cold_cart {
            "carts not viewed before placing (--cold-cart)"
        } else {
            "each cart viewed once before placing, as the checkout page does"
        },
        if args.no_relay { "off" } else { "on" }
    );
    println!("| phase | orders | errors | orders/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, s) in [
        ("order service (HTTP)", &service),
        ("bare sqlx transaction", &bare_sample),
    ] {
        println!(
            "| {name} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            s.requests(),
            s.errors,
            s.per_second(),
            s.percentile_ms(50.0),
            s.percentile_ms(99.0),
            s.max_ms()
        );
    }
    let ratio = service.per_second() / bare_sample.per_second().max(1e-9);
    println!(
        "\n- service orders/s / bare orders/s = **{:.0}%** (goal ≥ 50%: {})",
        ratio * 100.0,
        if ratio >= 0.5 { "met" } else { "not met" }
    );
    println!(
        "- p50 service / bare = {:.1}×; p99 service / bare = {:.1}×",
        service.percentile_ms(50.0) / bare_sample.percentile_ms(50.0),
        service.percentile_ms(99.0) / bare_sample.percentile_ms(99.0)
    );
    println!("\nWhere a placement's time goes (service's own metrics, measured passes):\n");
    println!("| part | calls | mean ms |");
    println!("|---|---:|---:|");
    for (name, sum, count) in &parts.values {
        println!(
            "| {name} | {count:.0} | {:.2} |",
            sum / count.max(1.0) * 1e3
        );
    }
    println!(
        "\nCarts still holding items after the run (the cart service empties a placed order's \
         cart when `OrderPlaced` reaches it; its work is in the CPU below): {holding} of the \
         {filled} filled for the {placed_total} orders placed{}.",
        if holding == 0 {
            ""
        } else {
            " (NOT all emptied)"
        }
    );
    println!(
        "\nCPU per order (ms, from /proc: the whole machine and each process, during the measured passes):\n"
    );
    println!("| phase | machine | {} |", cpu::NAMES.join(" | "));
    println!("|---|---:|{}", "---:|".repeat(cpu::NAMES.len()));
    for (name, s, used) in [
        ("order service (HTTP)", &service, &service_cpu),
        ("bare sqlx transaction", &bare_sample, &bare_cpu),
    ] {
        let (machine, procs) = used.per_order_ms(s.requests());
        let cells: Vec<String> = procs
            .iter()
            .enumerate()
            .map(|(i, ms)| {
                if meter.found(i) {
                    format!("{ms:.2}")
                } else {
                    "?".into()
                }
            })
            .collect();
        println!("| {name} | {machine:.2} | {} |", cells.join(" | "));
    }
    println!(
        "\nMariaDB commands per order (`SHOW GLOBAL STATUS`, measured passes; `Com_stmt_prepare` counts statements sqlx had not cached, `Com_admin_commands` pings):\n"
    );
    println!("| phase | {} |", DB_COUNTERS.join(" | "));
    println!("|---|{}", "---:|".repeat(DB_COUNTERS.len()));
    for (name, s, counts) in [
        ("order service (HTTP)", &service, &service_db),
        ("bare sqlx transaction", &bare_sample, &bare_db_counts),
    ] {
        let n = s.requests().max(1) as f64;
        let cells: Vec<String> = counts.iter().map(|c| format!("{:.2}", c / n)).collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    for (name, s) in [("service", &service), ("bare", &bare_sample)] {
        if let Some(e) = &s.first_error {
            println!("- first {name} error: {e}");
        }
    }

    platform.shutdown.trigger();
    // The workers (relays, followers) finish before the data directory goes.
    if platform.shutdown.drained().await.is_err() {
        eprintln!("some workers did not stop within the shutdown deadline");
    }
    bare.close().await;
    let failed = service.errors + bare_sample.errors;
    drop((shop, bare_db));
    tokio::time::sleep(Duration::from_secs(1)).await;
    if failed > 0 {
        bail!("{failed} placements failed");
    }
    Ok(())
}
