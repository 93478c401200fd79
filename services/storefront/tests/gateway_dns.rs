//! `storefront run gateway` with a route whose upstream is a host name that resolves to two
//! addresses, as a headless Service's name resolves to its pods: both are balanced over, and
//! when one dies the other takes every request.
//!
//! The name resolves through glibc's own resolver; the two addresses come from a hosts file
//! handed to the gateway process with nss_wrapper (Debian's `libnss-wrapper`, which
//! `tests/stack/stack` installs), so no system file is touched.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use storefront_tests::IsolatedServer;

const NSS_WRAPPER: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
    "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
];

fn nss_wrapper() -> PathBuf {
    NSS_WRAPPER
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libnss-wrapper is not installed (tests/stack/stack up installs it); looked in {NSS_WRAPPER:?}")
        })
}

/// An upstream on `ip:port` answering `/healthz` and `/v1/who` (its id).
fn upstream(ip: &str, port: u16, id: &'static str) -> IsolatedServer {
    let listener =
        std::net::TcpListener::bind((ip, port)).unwrap_or_else(|e| panic!("bind {ip}:{port}: {e}"));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/who", get(move || async move { id }));
    IsolatedServer::start(listener, app)
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_with_two_addresses_is_two_instances_and_one_left_takes_every_request() {
    let wrapper = nss_wrapper();
    // A port free on 127.0.0.1 is almost always free on 127.0.0.2 too (both loopback).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let _first = upstream("127.0.0.1", port, "first");
    let mut second = upstream("127.0.0.2", port, "second");

    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 pods.storefront.test\n127.0.0.2 pods.storefront.test\n",
    )
    .expect("hosts");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nroutes:\n- {{pathPrefix: /api/who, service: who, upstream: \"http://pods.storefront.test:{port}\", rewrite: /v1/who, methods: [GET], auth: public, loadBalancing: roundRobin, retries: 2}}\nupstreamDefaults:\n  dnsRefreshMs: 200\n  healthCheck: {{path: /healthz, intervalMs: 100, timeoutMs: 200}}\n  outlier: {{consecutiveFailures: 1, baseEjectionMs: 30000, maxEjectionMs: 30000}}\n"
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(["run", "gateway"])
        .env("LD_PRELOAD", &wrapper)
        .env("NSS_WRAPPER_HOSTS", &hosts)
        .env("STOREFRONT_DATA_DIR", dir.path())
        .env("STOREFRONT_GATEWAY__LISTEN", "127.0.0.1:0")
        .env("STOREFRONT_GATEWAY__CONFIG_PATH", &config)
        .env("STOREFRONT_GATEWAY__SERVE_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn storefront run gateway");
    let stdout = child.stdout.take().expect("stdout");
    let gateway = Gateway(child);
    let url = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("storefront: gateway listening on ")
                    .map(str::to_string)
            })
    })
    .await
    .expect("reader")
    .expect("the gateway announces its URL");

    let http = reqwest::Client::new();
    let who = |http: reqwest::Client, url: String| async move {
        let r = http
            .get(format!("{url}/api/who"))
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    // Both addresses become instances and take turns.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "only {seen:?} answered");
        let (status, body) = who(http.clone(), url.clone()).await;
        assert_eq!(status, 200, "{body}");
        seen.insert(body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        BTreeSet::from(["first".to_string(), "second".to_string()])
    );
    let two = "gateway_upstream_instances{service=\"who\"} 2";
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = storefront_tests::metrics_text(&http, &url).await;
        if metrics.lines().any(|l| l.starts_with(two)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.lines().any(|l| l.starts_with(two)), "{metrics}");

    // One pod gone: every request is answered by the other.
    second.kill();
    for i in 0..20 {
        let (status, body) = who(http.clone(), url.clone()).await;
        assert_eq!((status, body.as_str()), (200, "first"), "request {i}");
    }
    drop(gateway);
}
