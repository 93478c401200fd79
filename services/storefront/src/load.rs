//! `storefront load`: a load generator that drives realistic shopper sessions against a running
//! shop, through the gateway's `/api/...` routes only.
//!
//! Each virtual shopper signs up (a unique e-mail) and logs in once, then loops: it picks a
//! task by weight, like Online Boutique's Locust file (`home` 1, `search` 2, `product` 10,
//! `add_to_cart` 2, `view_cart` 3, `checkout` 1), runs it, and thinks for a jittered pause.
//! A live progress line goes to stderr; at the end a Markdown summary (per task and per
//! endpoint: count, failures, rate, p50/p95/p99/max latency) goes to stdout.
//!
//! A checkout answered `409 Conflict` (out of stock: the demo catalog's stock may run out) is
//! counted apart, not as an error; the shopper empties the cart and goes on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `storefront load` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// The shop's gateway URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Concurrent virtual shoppers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub users: u32,
    /// How long to run: `60s`, `2m`, `1m30s`, or plain seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Mean pause between a shopper's tasks, in milliseconds (jittered ±50%).
    #[arg(long, default_value_t = 500)]
    pub think_ms: u64,
    /// Seed of the shoppers' choices (random when absent; printed in the summary).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Highest error rate that still exits 0: `1%` or a fraction like `0.01`.
    #[arg(long, default_value = "1%", value_parser = parse_rate)]
    pub max_error_rate: f64,
}

/// Parses `60s`, `2m`, `1m30s`, `500ms` (humantime) or plain seconds (`60`).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let duration = match raw.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(raw).map_err(|e| format!("`{raw}`: {e}"))?,
    };
    if duration.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(duration)
}

/// Parses `1%` (a percentage) or `0.01` (a fraction) into a fraction in `0 ..= 1`.
pub fn parse_rate(raw: &str) -> Result<f64, String> {
    let raw = raw.trim();
    let value = match raw.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
        None => raw.parse::<f64>(),
    }
    .map_err(|e| format!("`{raw}`: {e}"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("`{raw}` must be between 0% and 100%"));
    }
    Ok(value)
}

/// What a shopper does; [`Task::SignUp`] once, the others by weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Task {
    SignUp,
    Home,
    Search,
    Product,
    AddToCart,
    ViewCart,
    Checkout,
}

impl Task {
    /// The tasks a shopper loops over, with their weights (Online Boutique's locustfile:
    /// index 1, set currency 2 (a search here), browse product 10, add to cart 2, view
    /// cart 3, checkout 1).
    pub const WEIGHTED: [(Task, u32); 6] = [
        (Task::Home, 1),
        (Task::Search, 2),
        (Task::Product, 10),
        (Task::AddToCart, 2),
        (Task::ViewCart, 3),
        (Task::Checkout, 1),
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Task::SignUp => "sign_up",
            Task::Home => "home",
            Task::Search => "search",
            Task::Product => "product",
            Task::AddToCart => "add_to_cart",
            Task::ViewCart => "view_cart",
            Task::Checkout => "checkout",
        }
    }

    /// A task drawn by weight.
    pub fn pick(rng: &mut impl Rng) -> Task {
        let total: u32 = Self::WEIGHTED.iter().map(|(_, w)| w).sum();
        let mut roll = rng.random_range(0..total);
        for (task, weight) in Self::WEIGHTED {
            if roll < weight {
                return task;
            }
            roll -= weight;
        }
        Task::Product
    }
}

/// Categories of the demo catalog (`storefront-search`'s demo generator).
const CATEGORIES: &[&str] = &[
    "electronics/audio/headphones",
    "electronics/audio/speakers",
    "electronics/computers/laptops",
    "electronics/phones/smartphones",
    "electronics/cameras",
    "home/kitchen/cookware",
    "home/kitchen/appliances",
    "home/furniture",
    "fashion/shoes",
    "fashion/clothing",
    "sports/outdoor",
    "sports/fitness",
    "toys/games",
    "books/cooking",
];

/// What shoppers type.
const TERMS: &[&str] = &[
    "headphones",
    "earbuds",
    "speaker",
    "soundbar",
    "laptop",
    "notebook",
    "smartphone",
    "camera",
    "frying pan",
    "wok",
    "blender",
    "coffee maker",
    "kettle",
    "desk",
    "office chair",
    "lamp",
    "running shoes",
    "sneakers",
    "boots",
    "hoodie",
    "jacket",
    "jeans",
    "tent",
    "backpack",
    "sleeping bag",
    "yoga mat",
    "board game",
    "puzzle",
    "cookbook",
    "bluetooth",
    "wireless",
    "waterproof",
];

const CITIES: &[(&str, &str, &str)] = &[
    ("Berlin", "10115", "DE"),
    ("Paris", "75001", "FR"),
    ("Amsterdam", "1011", "NL"),
    ("Madrid", "28001", "ES"),
    ("Milan", "20121", "IT"),
];

/// A term as typed: one time in four with a typo (a dropped, doubled or swapped letter).
fn typed(term: &str, rng: &mut impl Rng) -> String {
    let mut chars: Vec<char> = term.chars().collect();
    if chars.len() < 4 || !rng.random_bool(0.25) {
        return term.to_string();
    }
    let at = rng.random_range(1..chars.len() - 1);
    match rng.random_range(0..3) {
        0 => {
            chars.remove(at);
        }
        1 => chars.insert(at, chars[at]),
        _ => chars.swap(at, at + 1),
    }
    chars.into_iter().collect()
}

// ---- measurements ----------------------------------------------------------------------

/// Latencies (microseconds) and counts of one task or endpoint.
struct Series {
    count: u64,
    failures: u64,
    latency: Histogram<u64>,
}

impl Series {
    fn new() -> Self {
        Self {
            count: 0,
            failures: 0,
            // 1 µs to 1 h at 3 significant digits.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds"),
        }
    }

    fn record(&mut self, took: Duration, ok: bool) {
        self.count += 1;
        if !ok {
            self.failures += 1;
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        self.latency.saturating_record(micros);
    }

    fn row(&self, name: &str, elapsed: Duration) -> Row {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        Row {
            name: name.to_string(),
            count: self.count,
            failures: self.failures,
            rate: self.count as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: self.latency.max() as f64 / 1000.0,
        }
    }
    fn merge(&mut self, other: &Series) {
        self.count += other.count;
        self.failures += other.failures;
        self.latency
            .add(&other.latency)
            .expect("histograms of the same bounds");
    }
}

/// Counters every shopper bumps, for the progress line and the summary.
struct Live {
    started: Instant,
    requests: AtomicU64,
    errors: AtomicU64,
    orders: AtomicU64,
    out_of_stock: AtomicU64,
}

impl Live {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            orders: AtomicU64::new(0),
            out_of_stock: AtomicU64::new(0),
        }
    }

    fn progress(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let requests = self.requests.load(Ordering::Relaxed);
        format!(
            "load: {secs:5.0}s  {requests} requests  {:.1} req/s  {} errors  {} orders  {} out of stock",
            requests as f64 / secs.max(1e-9),
            self.errors.load(Ordering::Relaxed),
            self.orders.load(Ordering::Relaxed),
            self.out_of_stock.load(Ordering::Relaxed),
        )
    }
}

/// One shopper's measurements (no locks: each shopper owns its own; merged at the end).
#[derive(Default)]
struct Stats {
    tasks: BTreeMap<Task, Series>,
    endpoints: BTreeMap<&'static str, Series>,
    total: Option<Series>,
    /// `endpoint → status` of failed requests, for the summary.
    failures: BTreeMap<String, u64>,
}

impl Stats {
    fn request(
        &mut self,
        endpoint: &'static str,
        took: Duration,
        outcome: Result<u16, String>,
        ok: bool,
    ) {
        if !ok {
            let what = match outcome {
                Ok(status) => format!("{endpoint} → {status}"),
                Err(e) => format!("{endpoint} → {e}"),
            };
            *self.failures.entry(what).or_default() += 1;
        }
        self.endpoints
            .entry(endpoint)
            .or_insert_with(Series::new)
            .record(took, ok);
        self.total.get_or_insert_with(Series::new).record(took, ok);
    }

    fn task(&mut self, task: Task, took: Duration, ok: bool) {
        self.tasks
            .entry(task)
            .or_insert_with(Series::new)
            .record(took, ok);
    }

    fn merge(&mut self, other: Stats) {
        for (task, series) in &other.tasks {
            self.tasks
                .entry(*task)
                .or_insert_with(Series::new)
                .merge(series);
        }
        for (endpoint, series) in &other.endpoints {
            self.endpoints
                .entry(endpoint)
                .or_insert_with(Series::new)
                .merge(series);
        }
        if let Some(total) = &other.total {
            self.total.get_or_insert_with(Series::new).merge(total);
        }
        for (what, n) in other.failures {
            *self.failures.entry(what).or_default() += n;
        }
    }

    fn report(&self, live: &Live, args: &LoadArgs, seed: u64) -> Report {
        let elapsed = live.started.elapsed();
        let empty = Series::new();
        let tasks = std::iter::once(Task::SignUp)
            .chain(Task::WEIGHTED.map(|(t, _)| t))
            .map(|task| {
                self.tasks
                    .get(&task)
                    .unwrap_or(&empty)
                    .row(task.name(), elapsed)
            })
            .collect();
        let endpoints = self
            .endpoints
            .iter()
            .map(|(name, series)| series.row(name, elapsed))
            .collect();
        let mut failures: Vec<(String, u64)> =
            self.failures.iter().map(|(k, v)| (k.clone(), *v)).collect();
        failures.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Report {
            url: args.url.clone(),
            users: args.users,
            think_ms: args.think_ms,
            seed,
            elapsed,
            tasks,
            endpoints,
            total: self.total.as_ref().unwrap_or(&empty).row("total", elapsed),
            orders: live.orders.load(Ordering::Relaxed),
            out_of_stock: live.out_of_stock.load(Ordering::Relaxed),
            failures,
            max_error_rate: args.max_error_rate,
        }
    }
}

/// One line of a summary table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub count: u64,
    pub failures: u64,
    /// Per second over the whole run.
    pub rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Report {
    pub url: String,
    pub users: u32,
    pub think_ms: u64,
    pub seed: u64,
    pub elapsed: Duration,
    /// `sign_up` then every weighted task, in that order (count 0 when never run).
    pub tasks: Vec<Row>,
    /// Every endpoint called, by name (`GET /api/search`).
    pub endpoints: Vec<Row>,
    /// Every request.
    pub total: Row,
    pub orders: u64,
    /// Checkouts answered 409 (not errors).
    pub out_of_stock: u64,
    /// `endpoint → status or error`, most frequent first.
    pub failures: Vec<(String, u64)>,
    pub max_error_rate: f64,
}

impl Report {
    /// Failed requests over all requests (0 when none were made).
    pub fn error_rate(&self) -> f64 {
        if self.total.count == 0 {
            return 0.0;
        }
        self.total.failures as f64 / self.total.count as f64
    }

    /// Whether the run stays within `--max-error-rate` (and made requests at all).
    pub fn passed(&self) -> bool {
        self.total.count > 0 && self.error_rate() <= self.max_error_rate
    }

    /// The summary as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Load on {} — {} users, think {} ms, {:.1} s, seed {}\n",
            self.url,
            self.users,
            self.think_ms,
            self.elapsed.as_secs_f64(),
            self.seed
        );
        table(&mut out, "task", &self.tasks, None);
        out.push('\n');
        table(&mut out, "endpoint", &self.endpoints, Some(&self.total));
        let _ = writeln!(
            out,
            "\nOrders placed: {}. Out of stock (409, not errors): {}. Error rate: {:.2}% (limit {:.2}%): {}.",
            self.orders,
            self.out_of_stock,
            self.error_rate() * 100.0,
            self.max_error_rate * 100.0,
            if self.passed() { "pass" } else { "FAIL" }
        );
        if !self.failures.is_empty() {
            let _ = writeln!(out, "\nFailures:");
            for (what, n) in self.failures.iter().take(10) {
                let _ = writeln!(out, "- {what}: {n}");
            }
        }
        out
    }
}

fn table(out: &mut String, first: &str, rows: &[Row], total: Option<&Row>) {
    let _ = writeln!(
        out,
        "| {first} | count | failures | rate/s | p50 ms | p95 ms | p99 ms | max ms |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let line = |out: &mut String, name: &str, r: &Row| {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.count, r.failures, r.rate, r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms
        );
    };
    for r in rows {
        line(out, &format!("`{}`", r.name), r);
    }
    if let Some(t) = total {
        line(out, "**total**", t);
    }
}

// ---- shoppers --------------------------------------------------------------------------

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot reach the shop at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A request's outcome: the status (or transport error) and the JSON body when there is one.
struct Answer {
    status: Option<StatusCode>,
    body: Value,
}

impl Answer {
    fn is(&self, status: u16) -> bool {
        self.status.map(|s| s.as_u16()) == Some(status)
    }
}

struct Shopper {
    http: reqwest::Client,
    base: String,
    live: Arc<Live>,
    stats: Stats,
    rng: StdRng,
    email: String,
    name: String,
    token: String,
    /// Product ids seen in results, most recent last.
    seen: Vec<String>,
    /// Lines in the cart, as last known.
    cart_lines: usize,
    checkouts: u64,
}

impl Shopper {
    /// Calls the shop and records the request; `ok` are the statuses that are not failures.
    async fn call(
        &mut self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
        ok: &[u16],
    ) -> (Answer, bool) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let started = Instant::now();
        let sent = req.send().await;
        let (answer, outcome) = match sent {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(bytes) => (
                        Answer {
                            status: Some(status),
                            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        },
                        Ok(status.as_u16()),
                    ),
                    Err(e) => (
                        Answer {
                            status: None,
                            body: Value::Null,
                        },
                        Err(error_kind(&e)),
                    ),
                }
            }
            Err(e) => (
                Answer {
                    status: None,
                    body: Value::Null,
                },
                Err(error_kind(&e)),
            ),
        };
        let took = started.elapsed();
        let good = matches!(outcome, Ok(s) if ok.contains(&s));
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        if !good {
            self.live.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.request(endpoint, took, outcome, good);
        (answer, good)
    }

    /// Signs up and logs in; false when the shopper cannot go on.
    async fn sign_up(&mut self) -> bool {
        let password = format!("load-{}-password", self.rng.random::<u32>());
        let (_, created) = self
            .call(
                "POST /api/accounts",
                Method::POST,
                "/api/accounts",
                Some(json!({"email": self.email, "password": password, "name": self.name})),
                &[],
                &[201],
            )
            .await;
        if !created {
            return false;
        }
        let (answer, logged_in) = self
            .call(
                "POST /api/sessions",
                Method::POST,
                "/api/sessions",
                Some(json!({"email": self.email, "password": password})),
                &[],
                &[200, 201],
            )
            .await;
        match answer.body["access_token"].as_str() {
            Some(token) if logged_in => {
                self.token = token.to_string();
                true
            }
            _ => false,
        }
    }

    fn remember(&mut self, results: &Value) {
        if let Some(hits) = results["hits"].as_array() {
            for id in hits.iter().filter_map(|h| h["id"].as_str()) {
                self.seen.push(id.to_string());
            }
        }
        let excess = self.seen.len().saturating_sub(60);
        self.seen.drain(..excess);
    }

    async fn search(&mut self, query: &str) -> bool {
        let (answer, ok) = self
            .call(
                "GET /api/search",
                Method::GET,
                &format!("/api/search?{query}"),
                None,
                &[],
                &[200],
            )
            .await;
        self.remember(&answer.body);
        ok
    }

    async fn known_product(&mut self) -> (Option<String>, bool) {
        if self.seen.is_empty() {
            let term = TERMS[self.rng.random_range(0..TERMS.len())];
            let ok = self.search(&format!("q={}", encode(term))).await;
            if self.seen.is_empty() {
                return (None, ok);
            }
        }
        let at = self.rng.random_range(0..self.seen.len());
        (Some(self.seen[at].clone()), true)
    }

    async fn home(&mut self) -> bool {
        let (_, page) = self
            .call("GET /", Method::GET, "/", None, &[], &[200])
            .await;
        let category = CATEGORIES[self.rng.random_range(0..CATEGORIES.len())];
        let listed = self
            .search(&format!("category={}&page_size=12", encode(category)))
            .await;
        page && listed
    }

    async fn search_task(&mut self) -> bool {
        let term = typed(TERMS[self.rng.random_range(0..TERMS.len())], &mut self.rng);
        let prefix: String = term
            .chars()
            .take(self.rng.random_range(2..=term.chars().count().max(2)))
            .collect();
        let (_, suggested) = self
            .call(
                "GET /api/suggest",
                Method::GET,
                &format!("/api/suggest?q={}", encode(&prefix)),
                None,
                &[],
                &[200],
            )
            .await;
        let searched = self.search(&format!("q={}", encode(&term))).await;
        suggested && searched
    }

    async fn product(&mut self) -> bool {
        let (id, ok) = self.known_product().await;
        let Some(id) = id else { return ok };
        let (_, viewed) = self
            .call(
                "GET /api/products/{id}",
                Method::GET,
                &format!("/api/products/{}", encode(&id)),
                None,
                &[],
                &[200],
            )
            .await;
        ok && viewed
    }

    async fn add_to_cart(&mut self) -> bool {
        let (id, ok) = self.known_product().await;
        let Some(id) = id else { return ok };
        let quantity = self.rng.random_range(1..=2);
        let (answer, added) = self
            .call(
                "POST /api/cart/items",
                Method::POST,
                "/api/cart/items",
                Some(json!({"product_id": id, "quantity": quantity})),
                &[],
                &[200],
            )
            .await;
        if let Some(items) = answer.body["items"].as_array() {
            self.cart_lines = items.len();
        }
        ok && added
    }

    async fn view_cart(&mut self) -> bool {
        let (answer, ok) = self
            .call("GET /api/cart", Method::GET, "/api/cart", None, &[], &[200])
            .await;
        if let Some(items) = answer.body["items"].as_array() {
            self.cart_lines = items.len();
        }
        ok
    }

    /// Like the locustfile: adds a product first when the cart is empty, then places it.
    async fn checkout(&mut self) -> bool {
        let mut ok = true;
        if self.cart_lines == 0 {
            ok = self.add_to_cart().await;
            if self.cart_lines == 0 {
                return ok;
            }
        }
        self.checkouts += 1;
        let key = format!(
            "load-{}-{}-{}",
            self.email.split('@').next().unwrap_or("shopper"),
            self.checkouts,
            self.rng.random::<u32>()
        );
        let (city, postal_code, country) = CITIES[self.rng.random_range(0..CITIES.len())];
        let body = json!({
            "customer": {"name": self.name, "email": self.email},
            "shipping": {
                "name": self.name,
                "line1": format!("{} Load Street", self.rng.random_range(1..200)),
                "city": city,
                "postal_code": postal_code,
                "country": country,
            },
        });
        let (answer, placed) = self
            .call(
                "POST /api/orders",
                Method::POST,
                "/api/orders",
                Some(body),
                &[("Idempotency-Key", key)],
                &[200, 201, 409],
            )
            .await;
        if answer.is(409) {
            self.live.out_of_stock.fetch_add(1, Ordering::Relaxed);
            let (_, cleared) = self
                .call(
                    "DELETE /api/cart",
                    Method::DELETE,
                    "/api/cart",
                    None,
                    &[],
                    &[204],
                )
                .await;
            ok &= cleared;
        } else if placed {
            self.live.orders.fetch_add(1, Ordering::Relaxed);
        }
        self.cart_lines = 0;
        ok && placed
    }

    async fn run(&mut self, task: Task) -> bool {
        match task {
            Task::SignUp => self.sign_up().await,
            Task::Home => self.home().await,
            Task::Search => self.search_task().await,
            Task::Product => self.product().await,
            Task::AddToCart => self.add_to_cart().await,
            Task::ViewCart => self.view_cart().await,
            Task::Checkout => self.checkout().await,
        }
    }

    async fn timed(&mut self, task: Task) -> bool {
        let started = Instant::now();
        let ok = self.run(task).await;
        self.stats.task(task, started.elapsed(), ok);
        ok
    }

    /// Signs up, then runs tasks until `deadline`; returns what it measured.
    async fn session(mut self, deadline: Instant, think: Duration) -> Stats {
        if !self.timed(Task::SignUp).await {
            return self.stats;
        }
        while Instant::now() < deadline {
            let task = Task::pick(&mut self.rng);
            self.timed(task).await;
            let pause = think.mul_f64(self.rng.random_range(0.5..1.5));
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
        }
        self.stats
    }
}

fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        "transport error".into()
    }
}

/// Percent-encodes a query or path value.
fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Runs the load: every shopper until `--duration` is over (tasks under way finish), with a
/// progress line on stderr. Fails only when the shop cannot be reached at all.
pub async fn run(args: &LoadArgs) -> Result<Report, LoadError> {
    let base = args.url.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(usize::try_from(args.users).unwrap_or(usize::MAX))
        .build()?;
    if let Err(e) = http.get(format!("{base}/")).send().await {
        return Err(LoadError::Unreachable {
            url: base,
            reason: error_kind(&e),
        });
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let run_id = format!(
        "{:x}{:04x}",
        chrono::Utc::now().timestamp_millis(),
        rand::random::<u16>()
    );
    let live = Arc::new(Live::new());
    let deadline = live.started + args.duration;
    let think = Duration::from_millis(args.think_ms);

    let progress = tokio::spawn(progress(live.clone()));
    let mut shoppers = tokio::task::JoinSet::new();
    for i in 0..args.users {
        let shopper = Shopper {
            http: http.clone(),
            base: base.clone(),
            live: live.clone(),
            stats: Stats::default(),
            rng: StdRng::seed_from_u64(seed.wrapping_add(u64::from(i))),
            email: format!("load-{run_id}-{i}@storefront.test"),
            name: format!("Load Shopper {i}"),
            token: String::new(),
            seen: Vec::new(),
            cart_lines: 0,
            checkouts: 0,
        };
        shoppers.spawn(shopper.session(deadline, think));
    }
    let mut stats = Stats::default();
    while let Some(joined) = shoppers.join_next().await {
        match joined {
            Ok(one) => stats.merge(one),
            Err(e) => eprintln!("storefront: a shopper failed: {e}"),
        }
    }
    progress.abort();
    if std::io::stderr().is_terminal() {
        eprintln!("\r{}\x1b[K", live.progress());
    } else {
        eprintln!("{}", live.progress());
    }
    Ok(stats.report(&live, args, seed))
}

/// The progress line: rewritten in place every second on a terminal, a line every 5 s else.
async fn progress(live: Arc<Live>) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal { 1 } else { 5 };
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    tick.tick().await;
    loop {
        tick.tick().await;
        if terminal {
            eprint!("\r{}\x1b[K", live.progress());
        } else {
            eprintln!("{}", live.progress());
        }
    }
}

/// `storefront load`: runs, prints the summary, and gives the exit code (0 within the error
/// budget, 1 over it, 2 when the shop cannot be reached).
pub fn main(args: &LoadArgs) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storefront: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            println!("{}", report.markdown());
            if report.passed() {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!(
                    "storefront: error rate {:.2}% is over the limit of {:.2}%",
                    report.error_rate() * 100.0,
                    report.max_error_rate * 100.0
                );
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("storefront: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_humantime_or_seconds() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn error_rates_take_percent_or_fraction() {
        assert_eq!(parse_rate("1%"), Ok(0.01));
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert_eq!(parse_rate("0%"), Ok(0.0));
        assert!(parse_rate("150%").is_err());
        assert!(parse_rate("x").is_err());
    }

    #[test]
    fn tasks_are_drawn_by_their_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts: BTreeMap<Task, u32> = BTreeMap::new();
        let n = 190_000;
        for _ in 0..n {
            *counts.entry(Task::pick(&mut rng)).or_default() += 1;
        }
        assert!(!counts.contains_key(&Task::SignUp));
        for (task, weight) in Task::WEIGHTED {
            let expected = f64::from(n) * f64::from(weight) / 19.0;
            let got = f64::from(counts[&task]);
            assert!(
                (got - expected).abs() < expected * 0.05,
                "{task:?}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn typos_keep_terms_recognisable() {
        let mut rng = StdRng::seed_from_u64(1);
        let terms: Vec<String> = (0..200).map(|_| typed("headphones", &mut rng)).collect();
        assert!(terms.iter().any(|t| t == "headphones"));
        assert!(terms.iter().any(|t| t != "headphones"));
        for t in &terms {
            assert!((9..=11).contains(&t.chars().count()), "{t}");
            assert!(t.starts_with('h'), "{t}");
        }
        assert_eq!(typed("wok", &mut rng), "wok");
    }

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("frying pan"), "frying%20pan");
        assert_eq!(encode("home/furniture"), "home%2Ffurniture");
        assert_eq!(encode("p-000001"), "p-000001");
    }

    #[test]
    fn the_summary_lists_tasks_endpoints_totals_and_the_verdict() {
        let live = Live::new();
        let mut rec = Stats::default();
        for ms in [10, 20, 30, 40, 1000] {
            rec.request("GET /api/search", Duration::from_millis(ms), Ok(200), true);
        }
        rec.request(
            "POST /api/orders",
            Duration::from_millis(50),
            Ok(500),
            false,
        );
        rec.task(Task::Search, Duration::from_millis(25), true);
        // A second shopper's measurements merge in.
        let mut other = Stats::default();
        other.task(Task::Search, Duration::from_millis(35), true);
        rec.merge(other);
        live.orders.fetch_add(3, Ordering::Relaxed);
        live.out_of_stock.fetch_add(1, Ordering::Relaxed);
        let args = LoadArgs {
            url: "http://shop".into(),
            users: 2,
            duration: Duration::from_secs(1),
            think_ms: 0,
            seed: Some(1),
            max_error_rate: 0.2,
        };
        let report = rec.report(&live, &args, 1);
        assert_eq!(report.tasks.len(), 7);
        assert_eq!(report.tasks[0].name, "sign_up");
        let search = report
            .tasks
            .iter()
            .find(|r| r.name == "search")
            .expect("search");
        assert_eq!(search.count, 2);
        assert_eq!(report.total.count, 6);
        assert_eq!(report.total.failures, 1);
        let endpoint = &report.endpoints[0];
        assert_eq!(endpoint.name, "GET /api/search");
        assert!((endpoint.p50_ms - 30.0).abs() < 0.1, "{endpoint:?}");
        assert!((endpoint.max_ms - 1000.0).abs() < 1.0, "{endpoint:?}");
        assert!(report.passed(), "1/6 is under 20%");
        let md = report.markdown();
        assert!(md.contains("| `checkout` | 0 |"), "{md}");
        assert!(md.contains("| **total** | 6 | 1 |"), "{md}");
        assert!(md.contains("Orders placed: 3."), "{md}");
        assert!(md.contains("POST /api/orders → 500: 1"), "{md}");
        let strict = Report {
            max_error_rate: 0.01,
            ..report
        };
        assert!(!strict.passed());
        assert!(strict.markdown().contains("FAIL"));
    }
}
