//! Pools: retries on another instance, outlier ejection when an instance dies, retries for
//! idempotent methods only, timeouts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::helpers::{Upstream, answer, config, route, spawn};

#[tokio::test]
async fn a_dead_instance_is_retried_around_and_ejected() {
    let a = Upstream::start("a");
    let mut b = Upstream::start("b");
    let gw = spawn(&config(
        &[route(
            "/api/search",
            "search",
            &[&a, &b],
            "rewrite: /v1/search, methods: [GET, POST], auth: public, loadBalancing: roundRobin, retries: 2",
        )],
        "",
    ))
    .await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let (status, _, body) = answer(gw.get("/api/search?q=x").await).await;
        assert_eq!(status, 200);
        seen.insert(body["instance"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        seen.len(),
        2,
        "round robin reaches both instances: {seen:?}"
    );

    let dead = b.addr.to_string();
    b.kill();
    // Every GET still succeeds: a try on the dead instance is retried on the live one.
    for i in 0..20 {
        let (status, _, body) = answer(gw.get("/api/search?q=y").await).await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body["instance"], "a");
    }
    // Out of rotation: ejected by a failed request, or failed by the active health check
    // (whichever noticed first).
    let metrics = gw.metrics().await;
    let out = metrics.lines().any(|l| {
        l.contains(&dead)
            && (l.starts_with("gateway_upstream_ejections_total")
                || (l.starts_with("gateway_upstream_healthy") && l.ends_with(" 0")))
    });
    assert!(out, "the dead instance is out of rotation:\n{metrics}");
    // Once ejected, even requests that may not be retried go to the live instance.
    for _ in 0..10 {
        let r = gw
            .http
            .post(gw.url("/api/search"))
            .body("{}")
            .send()
            .await
            .expect("POST");
        let (status, _, body) = answer(r).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["instance"], "a");
    }
}

#[tokio::test]
async fn only_idempotent_methods_are_retried() {
    let up = Upstream::start("u");
    let gw = spawn(&config(
        &[route(
            "/api/x",
            "x",
            &[&up],
            "rewrite: /v1, methods: [GET, PUT, POST], auth: public, retries: 2",
        )],
        "upstreamDefaults: {outlier: {consecutiveFailures: 100}}",
    ))
    .await;
    let r = gw.get("/api/x/fail").await;
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        up.hits.swap(0, Ordering::SeqCst),
        3,
        "GET: one try and two retries"
    );
    let r = gw
        .http
        .put(gw.url("/api/x/fail"))
        .body("same")
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        up.hits.swap(0, Ordering::SeqCst),
        3,
        "PUT is idempotent too"
    );
    let r = gw
        .http
        .post(gw.url("/api/x/fail"))
        .body("once")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        up.hits.swap(0, Ordering::SeqCst),
        1,
        "POST is never sent twice"
    );
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_problem_and_a_dead_one_a_502() {
    let up = Upstream::start("slow");
    let gw = spawn(&config(
        &[
            route("/api/slow", "slow", &[&up], "rewrite: /v1, methods: [GET], auth: public, timeoutMs: 300, retries: 0"),
            format!(
                "- {{pathPrefix: /api/dead, service: dead, upstream: \"http://{}\", methods: [POST], auth: public}}\n",
                crate::helpers::dead_address()
            ),
        ],
        "",
    ))
    .await;
    let started = std::time::Instant::now();
    let (status, ct, _) = answer(gw.get("/api/slow/slow").await).await;
    assert_eq!((status, ct.as_str()), (504, "application/problem+json"));
    assert!(started.elapsed() < Duration::from_millis(1_500));
    let r = gw
        .http
        .post(gw.url("/api/dead/x"))
        .send()
        .await
        .expect("POST");
    let (status, ct, _) = answer(r).await;
    assert_eq!((status, ct.as_str()), (502, "application/problem+json"));
}

#[tokio::test]
async fn an_instance_failing_its_health_check_leaves_the_rotation_until_it_recovers() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let gw = spawn(&config(
        &[route(
            "/api/x",
            "x",
            &[&a, &b],
            "methods: [GET], auth: public, loadBalancing: powerOfTwo",
        )],
        "",
    ))
    .await;
    b.healthy.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = b.hits.load(Ordering::SeqCst);
    for _ in 0..20 {
        let (status, _, body) = answer(gw.get("/api/x").await).await;
        assert_eq!(status, 200);
        assert_eq!(body["instance"], "a");
    }
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        before,
        "no request reached the unhealthy instance"
    );
    b.healthy.store(true, Ordering::SeqCst);
    storefront_tests::wait_until(Duration::from_secs(5), || async {
        let (_, _, body) = answer(gw.get("/api/x").await).await;
        Ok((body["instance"] == "b").then_some(()))
    })
    .await
    .expect("the recovered instance is back in rotation");
}

/// An instance URL with a host name becomes one instance per address it resolves to (the
/// system resolver, every `dnsRefreshMs`); with `dnsRefreshMs: 0` the name is one instance.
#[tokio::test]
async fn a_host_name_is_resolved_into_an_instance_per_address() {
    let a = Upstream::start("a");
    let port = a.addr.port();
    let line = format!(
        "- {{pathPrefix: /api/search, service: search, upstream: \"http://localhost:{port}\", methods: [GET], auth: public}}\n"
    );
    let defaults = "upstreamDefaults:\n  dnsRefreshMs: 100\n  healthCheck: {path: /healthz, intervalMs: 100, timeoutMs: 200}\n";
    let gw = spawn(&config(&[line], defaults)).await;
    // localhost's IPv4 address is an instance of its own, health-checked under that address
    // (where localhost also names ::1, that instance fails its checks: nothing listens there).
    let by_address = format!("instance=\"127.0.0.1:{port}\"");
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = gw.metrics().await;
        if metrics.lines().any(|l| {
            l.starts_with("gateway_upstream_healthy")
                && l.contains(&by_address)
                && l.ends_with(" 1")
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gateway_upstream_healthy")
                && l.contains(&by_address)
                && l.ends_with(" 1")),
        "an instance at 127.0.0.1:{port}:\n{metrics}"
    );
    for _ in 0..5 {
        let (status, _, body) = answer(gw.get("/api/search").await).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["instance"], "a");
    }

    // Off: the name itself is the one instance (another upstream, so that no metric of the
    // first gateway can answer for this one).
    let b = Upstream::start("b");
    let port = b.addr.port();
    let line = format!(
        "- {{pathPrefix: /api/search, service: search, upstream: \"http://localhost:{port}\", methods: [GET], auth: public}}\n"
    );
    let off = "upstreamDefaults:\n  dnsRefreshMs: 0\n  healthCheck: {path: /healthz, intervalMs: 100, timeoutMs: 200}\n";
    let gw = spawn(&config(&[line], off)).await;
    let (status, _, body) = answer(gw.get("/api/search").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["instance"], "b");
    // Several health-check rounds later, still under its name only.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let metrics = gw.metrics().await;
    let healthy = |label: &str| {
        metrics
            .lines()
            .any(|l| l.starts_with("gateway_upstream_healthy") && l.contains(label))
    };
    assert!(
        healthy(&format!("instance=\"localhost:{port}\"")),
        "{metrics}"
    );
    assert!(
        !healthy(&format!("instance=\"127.0.0.1:{port}\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_upstream_closing_its_connections_loses_no_request() {
    let up = Upstream::start("u");
    let gw = spawn(&config(
        &[route(
            "/api/x",
            "x",
            &[&up],
            "rewrite: /v1, methods: [GET, POST], auth: public, retries: 0",
        )],
        "",
    ))
    .await;
    // Every answer closes its connection: a kept one must never be used again, or a POST
    // (never retried) would fail.
    for i in 0..20 {
        let r = gw
            .http
            .post(gw.url("/api/x/close"))
            .body(format!("order {i}"))
            .send()
            .await
            .expect("POST");
        let (status, _, body) = answer(r).await;
        assert_eq!(status, 200, "POST {i}: {body}");
        assert_eq!(
            body["headers"]["host"],
            up.addr.to_string(),
            "the instance's Host"
        );
        let (status, _, body) = answer(gw.get("/api/x/close").await).await;
        assert_eq!(status, 200, "GET {i}: {body}");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 40);
}
