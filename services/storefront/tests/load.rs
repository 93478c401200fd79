//! `storefront load` against a real `storefront up`: every task runs, orders are placed, the
//! summary is printed and the exit code says the error budget held.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEMO_PRODUCTS: usize = 300;

const SERVICES: [&str; 6] = [
    "auth",
    "search",
    "cart",
    "order",
    "delivery",
    "notification",
];

/// Stops `storefront up` when the test ends, however it ends.
struct Shop(Child);

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `storefront up` with the gateway on a free port; returns once the shop is open.
fn up(data_dir: &std::path::Path) -> (Shop, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storefront"));
    cmd.env("STOREFRONT_DATA_DIR", data_dir)
        .env("STOREFRONT_DRAIN_TIMEOUT_SECS", "5")
        .env("STOREFRONT_TELEMETRY__LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        // A small demo catalog, so the test can stock all of it quickly.
        .env(
            "STOREFRONT_SEARCH__DEMO_PRODUCTS",
            DEMO_PRODUCTS.to_string(),
        )
        .args(["up", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for s in SERVICES {
        cmd.env(
            format!("STOREFRONT_{}__LISTEN", s.to_uppercase()),
            "127.0.0.1:0",
        );
    }
    let mut child = cmd.spawn().expect("spawn storefront up");
    let stdout = child.stdout.take().expect("stdout");
    let shop = Shop(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("the shop opens");
        if let Some((_, url)) = line.split_once("the shop is open at ") {
            let url = url.trim().trim_end_matches('/').to_string();
            assert_eq!(url, format!("http://127.0.0.1:{port}"));
            // Keep draining stdout so the shop never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return (shop, url);
        }
    }
}

/// Waits until the demo catalog is indexed (search finds headphones).
async fn wait_for_catalog(shop: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(resp) = http
            .get(format!("{shop}/api/search?q=headphones"))
            .send()
            .await
            && resp.status() == 200
            && let Ok(body) = resp.json::<serde_json::Value>().await
            && body["total"].as_u64().unwrap_or(0) > 0
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the demo catalog was not indexed in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Gives every demo product plenty of stock through the admin route, so checkouts can succeed
/// (`up` does not initialise the order service's stock rows from the demo catalog).
async fn stock_the_catalog(shop: &str) {
    use futures::StreamExt as _;
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{shop}/api/sessions"))
        .json(&serde_json::json!({"email": "admin@storefront.test", "password": "storefront-demo"}))
        .send()
        .await
        .expect("login")
        .error_for_status()
        .expect("the demo admin logs in")
        .json()
        .await
        .expect("tokens");
    let token = login["access_token"].as_str().expect("access token");
    futures::stream::iter(1..=DEMO_PRODUCTS)
        .map(|n| {
            let http = http.clone();
            async move {
                let resp = http
                    .put(format!("{shop}/api/admin/stock/p-{n:06}"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({"available": 1000}))
                    .send()
                    .await
                    .expect("put stock");
                assert_eq!(resp.status(), 200, "stock of p-{n:06}");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn load_runs_every_task_places_orders_and_exits_zero() {
    let data = tempfile::tempdir().expect("tempdir");
    let (_shop, url) = up(data.path());
    wait_for_catalog(&url).await;
    stock_the_catalog(&url).await;

    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_storefront"))
            .args([
                "load",
                "--url",
                &url,
                "--users",
                "4",
                "--duration",
                "8s",
                "--think-ms",
                "100",
                "--seed",
                "42",
            ])
            .output()
            .expect("run storefront load")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );

    // A progress line went to stderr (not a terminal: a plain line).
    assert!(stderr.contains("requests"), "{stderr}");
    assert!(stderr.contains("req/s"), "{stderr}");

    // Every task ran at least once.
    for task in [
        "sign_up",
        "home",
        "search",
        "product",
        "add_to_cart",
        "view_cart",
        "checkout",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| `{task}` |")))
            .unwrap_or_else(|| panic!("no row for {task}:\n{stdout}"));
        let count: u64 = row
            .split('|')
            .nth(2)
            .expect("count")
            .trim()
            .parse()
            .expect("a number");
        assert!(count > 0, "{task} never ran:\n{stdout}");
    }
    // Endpoints and totals.
    for endpoint in [
        "GET /api/search",
        "GET /api/suggest",
        "GET /api/products/{id}",
        "POST /api/cart/items",
        "GET /api/cart",
        "POST /api/orders",
    ] {
        assert!(
            stdout.contains(&format!("| `{endpoint}` |")),
            "{endpoint} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("| **total** |"), "{stdout}");
    let orders: u64 = stdout
        .split("Orders placed: ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("orders placed in the summary");
    assert!(orders > 0, "no order was placed:\n{stdout}");
}

#[test]
fn an_unreachable_shop_exits_2_with_a_clear_message() {
    let port = free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args([
            "load",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--duration",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
        .wait_with_output()
        .expect("wait");
    assert_eq!(output.status.code(), Some(2));
    let mut stderr = String::new();
    output
        .stderr
        .as_slice()
        .read_to_string(&mut stderr)
        .expect("utf-8");
    assert!(stderr.contains("cannot reach the shop"), "{stderr}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        ["--duration", "soon"],
        ["--max-error-rate", "200%"],
        ["--users", "0"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_storefront"))
            .arg("load")
            .args(args)
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}
