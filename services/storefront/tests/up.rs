//! The `storefront` binary as a user runs it: `up` starts every service, each answers its
//! operational endpoints, and Ctrl-C (SIGINT) stops everything within the drain deadline.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SERVICES: [&str; 7] = [
    "gateway",
    "auth",
    "search",
    "cart",
    "order",
    "delivery",
    "notification",
];

fn storefront(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storefront"));
    cmd.env("STOREFRONT_DATA_DIR", data_dir)
        .env("STOREFRONT_DRAIN_TIMEOUT_SECS", "5")
        .env("STOREFRONT_TELEMETRY__LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for s in SERVICES {
        cmd.env(
            format!("STOREFRONT_{}__LISTEN", s.to_uppercase()),
            "127.0.0.1:0",
        );
    }
    cmd
}

/// Reads stdout lines on a thread so the test can wait with a timeout.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn up_serves_every_service_and_stops_on_ctrl_c_within_the_deadline() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = storefront(data.path())
        .arg("up")
        .spawn()
        .expect("spawn storefront up");
    let rx = lines(&mut child);
    // The services log to stderr (JSON): drain it, or a full pipe would block every logger.
    let mut logs = child.stderr.take().expect("stderr");
    std::thread::spawn(move || std::io::copy(&mut logs, &mut std::io::sink()));

    let mut urls = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while urls.len() < SERVICES.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("every service announces its URL");
        if let Some(rest) = line.strip_prefix("storefront: ")
            && let Some((name, url)) = rest.split_once(" listening on ")
        {
            urls.insert(name.to_string(), url.to_string());
        }
    }

    let http = reqwest::Client::new();
    for service in SERVICES {
        let base = &urls[service];
        let health = http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200, "{service} /healthz");

        let ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 200, "{service} /readyz");
        let report: serde_json::Value = ready.json().await.expect("readyz json");
        assert_eq!(report["service"], service);
        assert_eq!(report["status"], "ready");
        let checks = report["checks"].as_object().expect("checks");
        assert!(!checks.is_empty(), "{service} reports its dependencies");
        for (name, check) in checks {
            assert_eq!(check["status"], "up", "{service}/{name}: {check}");
        }

        assert!(
            storefront_tests::metrics_text(&http, base)
                .await
                .contains("http_requests_total")
        );

        let doc: serde_json::Value = http
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .expect("openapi")
            .json()
            .await
            .expect("openapi json");
        assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
        assert!(
            doc["info"]["title"]
                .as_str()
                .expect("title")
                .contains(service)
        );
    }

    // The embedded defaults live in the data directory.
    let search = &urls["search"];
    let report: serde_json::Value = http
        .get(format!("{search}/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert!(
        report["checks"]["index"]["target"]
            .as_str()
            .expect("target")
            .starts_with("tantivy://"),
        "{report}"
    );

    // `up` seeds the demo accounts and opens the shop: the gateway serves the UI and routes the
    // API to services that listen on ephemeral ports (each was handed the others' addresses).
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !said
        .iter()
        .any(|l: &String| l.contains("shopper@storefront.test"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        said.push(rx.recv_timeout(left).expect("up announces the shop"));
    }
    let gateway = &urls["gateway"];
    assert!(
        said.iter()
            .any(|l| l.contains(&format!("the shop is open at {gateway}/"))),
        "{said:?}"
    );
    assert!(
        said.iter().any(|l| l.contains("shopper@storefront.test")),
        "{said:?}"
    );
    let page = http.get(format!("{gateway}/")).send().await.expect("ui");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("<html"));
    let login: serde_json::Value = http
        .post(format!("{gateway}/api/sessions"))
        .json(&serde_json::json!({"email": "admin@storefront.test", "password": "storefront-demo"}))
        .send()
        .await
        .expect("login")
        .error_for_status()
        .expect("the demo admin logs in through the gateway")
        .json()
        .await
        .expect("tokens");
    let token = login["access_token"].as_str().expect("access token");
    let cart = http
        .get(format!("{gateway}/api/cart"))
        .bearer_auth(token)
        .send()
        .await
        .expect("cart");
    assert_eq!(cart.status(), 200, "the cart answers through the gateway");
    let partner = http
        .get(format!("{gateway}/api/admin/partners"))
        .bearer_auth(token)
        .send()
        .await
        .expect("partners")
        .text()
        .await
        .expect("text");
    assert!(partner.contains("partner@storefront.test"), "{partner}");
    // The demo catalog can be bought at once: its stock rows were seeded.
    let stock: serde_json::Value = http
        .get(format!("{gateway}/api/admin/stock/p-000001"))
        .bearer_auth(token)
        .send()
        .await
        .expect("stock")
        .error_for_status()
        .expect("the first demo product has stock")
        .json()
        .await
        .expect("json");
    assert!(stock["available"].as_i64().unwrap_or(0) > 0, "{stock}");

    // Checkout through the gateway: the demo shopper's order is placed and the cart emptied.
    let shopper: serde_json::Value = http
        .post(format!("{gateway}/api/sessions"))
        .json(
            &serde_json::json!({"email": "shopper@storefront.test", "password": "storefront-demo"}),
        )
        .send()
        .await
        .expect("login")
        .error_for_status()
        .expect("the demo shopper logs in")
        .json()
        .await
        .expect("tokens");
    let shopper = shopper["access_token"].as_str().expect("access token");
    http.post(format!("{gateway}/api/cart/items"))
        .bearer_auth(shopper)
        .json(&serde_json::json!({"product_id": "p-000001", "quantity": 1}))
        .send()
        .await
        .expect("add")
        .error_for_status()
        .expect("added to the cart");
    let placed = http
        .post(format!("{gateway}/api/orders"))
        .bearer_auth(shopper)
        .header("idempotency-key", "up-test-order-1")
        .json(&serde_json::json!({
            "customer": {"name": "Demo Shopper", "email": "shopper@storefront.test"},
            "shipping": {"name": "Demo Shopper", "line1": "1 Main Street", "city": "Berlin",
                         "postal_code": "10115", "country": "DE"}
        }))
        .send()
        .await
        .expect("order");
    assert_eq!(
        placed.status(),
        201,
        "{}",
        placed.text().await.unwrap_or_default()
    );
    // The order leaves the cart through its `OrderPlaced` event, moments later.
    let cart = || async {
        let cart: serde_json::Value = http
            .get(format!("{gateway}/api/cart"))
            .bearer_auth(shopper)
            .send()
            .await?
            .json()
            .await?;
        Ok((cart["item_count"] == 0).then_some(()))
    };
    storefront_tests::wait_until(Duration::from_secs(10), cart)
        .await
        .expect("the cart is emptied by the order");

    let pid = child.id().to_string();
    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status =
        wait_exit(&mut child, Duration::from_secs(5)).expect("exits within the 5 s drain deadline");
    let took = started.elapsed();
    assert!(status.success(), "clean exit: {status:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.starts_with("storefront: stopped in")),
        "{rest:?}"
    );
    eprintln!("stopped {} services in {took:?}", SERVICES.len());
}

#[test]
fn an_unknown_backend_scheme_is_a_clear_startup_error() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = storefront(data.path())
        .env(
            "STOREFRONT_CART__DATABASE_URL",
            "postgres://shop:pw@db/cart",
        )
        .args(["run", "cart"])
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits at once");
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    assert!(stderr.contains("unknown scheme `postgres`"), "{stderr}");
    assert!(stderr.contains("mysql://, sqlite://"), "{stderr}");
    assert!(!stderr.contains(":pw@"), "password leaked: {stderr}");
}

#[test]
fn a_taken_port_is_reported_with_the_service_name() {
    let data = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut child = storefront(data.path())
        .env("STOREFRONT_AUTH__LISTEN", format!("127.0.0.1:{port}"))
        .args(["run", "auth"])
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits at once");
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    assert!(stderr.contains("auth failed to start"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_spans_reach_the_configured_otlp_endpoint() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let posts = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post({
            let posts = posts.clone();
            move || {
                posts.fetch_add(1, Ordering::SeqCst);
                async { "" }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let data = tempfile::tempdir().expect("tempdir");
    let mut child = storefront(data.path())
        .env(
            "STOREFRONT_TELEMETRY__OTLP_ENDPOINT",
            format!("http://{collector}/v1/traces"),
        )
        .args(["run", "cart"])
        .spawn()
        .expect("spawn");
    let rx = lines(&mut child);
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("cart announces its URL");
    let url = line.rsplit(' ').next().expect("url").to_string();
    for _ in 0..5 {
        reqwest::get(format!("{url}/healthz"))
            .await
            .expect("healthz");
    }
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    // The exporter flushes on shutdown.
    assert!(posts.load(Ordering::SeqCst) >= 1, "no spans exported");
}
