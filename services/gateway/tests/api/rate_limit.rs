//! Rate limits: per user and per client IP, X-Forwarded-For only from trusted proxies, a
//! budget shared by two replicas through Redis, and Redis down with failureMode open/closed.

use storefront_kit::auth::Role;

use crate::helpers::{
    Options, Upstream, answer, auth, config, dead_address, redis, route, spawn, spawn_replica,
    spawn_with,
};

fn routes(up: &Upstream) -> Vec<String> {
    vec![
        route(
            "/api/cart",
            "cart",
            &[up],
            "rewrite: /v1/cart, methods: [GET], auth: authenticated",
        ),
        route(
            "/api/products",
            "search",
            &[up],
            "rewrite: /v1/products, methods: [GET], auth: public",
        ),
    ]
}

#[tokio::test]
async fn per_user_limits_count_each_user_and_per_ip_limits_each_address() {
    let up = Upstream::start("u");
    let gw = spawn(&config(
        &routes(&up),
        "rateLimit:
  enabled: true
  rules:
  - {name: carts, match: {upstream: cart}, key: user, rate: 1, per: minute, burst: 2}
  - {name: catalog, match: {pathPrefix: /api/products}, key: ip, rate: 1, per: minute, burst: 3}
",
    ))
    .await;
    let alice = auth().token("alice", &[Role::Customer]);
    let bob = auth().token("bob", &[Role::Customer]);
    for _ in 0..2 {
        let r = gw.get_as("/api/cart", &alice).await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["ratelimit-policy"], "\"carts\";q=2;w=120");
    }
    let limited = gw.get_as("/api/cart", &alice).await;
    assert_eq!(limited.status().as_u16(), 429);
    assert_eq!(limited.headers()["retry-after"], "60");
    assert_eq!(limited.headers()["ratelimit"], "\"carts\";r=0;t=120");
    assert_eq!(limited.headers()["ratelimit-policy"], "\"carts\";q=2;w=120");
    let (_, ct, body) = answer(limited).await;
    assert_eq!(ct, "application/problem+json");
    assert_eq!(body["status"], 429);
    // Bob has a budget of his own.
    let r = gw.get_as("/api/cart", &bob).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["ratelimit"], "\"carts\";r=1;t=60");

    // Per IP: different users from one address share the address's budget.
    let tokens = [&alice, &bob, &alice];
    for t in tokens {
        assert_eq!(gw.get_as("/api/products", t).await.status().as_u16(), 200);
    }
    assert_eq!(
        gw.get_as("/api/products", &bob).await.status().as_u16(),
        429
    );

    let metrics = gw.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gateway_rate_limited_total") && l.contains("rule=\"carts\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn refused_tokens_spend_the_address_budget_and_leave_users_theirs() {
    let up = Upstream::start("u");
    let gw = spawn(&config(
        &routes(&up),
        "rateLimit:
  enabled: true
  rules:
  - {name: carts, match: {upstream: cart}, key: user, rate: 1, per: minute, burst: 2}
",
    ))
    .await;
    // Garbage, missing and forged tokens from one address: 401 while the address has budget,
    // then 429 with the rule's headers.
    let forged = auth().token("mallory", &[Role::Admin]).replace('.', ".x");
    let mut statuses = Vec::new();
    for bad in ["not-a-jwt", "", forged.as_str()] {
        let mut call = gw.http.get(gw.url("/api/cart"));
        if !bad.is_empty() {
            call = call.bearer_auth(bad);
        }
        let r = call.send().await.expect("GET");
        statuses.push(r.status().as_u16());
        if r.status().as_u16() == 429 {
            assert_eq!(r.headers()["ratelimit-policy"], "\"carts\";q=2;w=120");
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, vec![401, 401, 429]);
    // A signed-in user from the same address keeps a budget of their own.
    let alice = auth().token("alice", &[Role::Customer]);
    assert_eq!(gw.get_as("/api/cart", &alice).await.status().as_u16(), 200);
}

#[tokio::test]
async fn a_spoofed_forwarded_for_buys_no_fresh_bucket_but_a_trusted_proxy_is_believed() {
    let up = Upstream::start("u");
    let limits = "rateLimit:
  enabled: true
  defaults: {key: ip, rate: 1, per: minute, burst: 2}
";
    // The test client (127.0.0.1) is not a trusted proxy: whatever it claims, it is 127.0.0.1.
    let untrusted = spawn(&config(&routes(&up), limits)).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let r = untrusted
            .http
            .get(untrusted.url("/api/products"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .send()
            .await
            .expect("GET");
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 429, 429]);

    // Now 127.0.0.1 is a trusted proxy: the right-most untrusted hop is the client.
    let trusted = spawn(&config(
        &routes(&up),
        &format!("{limits}trustedProxies: [127.0.0.0/8]\n"),
    ))
    .await;
    let get = |xff: &'static str| {
        let gw = &trusted;
        async move {
            gw.http
                .get(gw.url("/api/products"))
                .header("x-forwarded-for", xff)
                .send()
                .await
                .expect("GET")
                .status()
                .as_u16()
        }
    };
    assert_eq!(get("198.51.100.1").await, 200);
    assert_eq!(get("198.51.100.1").await, 200);
    assert_eq!(get("198.51.100.1").await, 429);
    // The client may prepend anything: the proxy appended the real address last.
    assert_eq!(get("192.0.2.77, 198.51.100.1").await, 429);
    // Another client behind the proxy has its own bucket.
    assert_eq!(get("198.51.100.2").await, 200);
}

#[tokio::test]
async fn two_replicas_share_one_cluster_wide_budget() {
    let up = Upstream::start("u");
    let (url, prefix, _ns) = redis().await;
    let text = config(
        &routes(&up),
        "rateLimit:
  enabled: true
  clusterWide: true
  store: redis
  failureMode: closed
  storeTimeoutMs: 500
  defaults: {key: global, rate: 1, per: minute, burst: 10}
",
    );
    let options = Options {
        cache_url: Some(url),
        cache_prefix: Some(prefix),
        ..Options::default()
    };
    let one = spawn_with(&text, options.clone()).await;
    let two = spawn_replica(&one, options).await;
    let mut admitted = 0;
    let mut limited = 0;
    for i in 0..30 {
        let gw = if i % 2 == 0 { &one } else { &two };
        match gw.get("/api/products").await.status().as_u16() {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // Burst 10, plus at most one token refilled during the run.
    assert!(
        (10..=11).contains(&admitted),
        "admitted {admitted}, limited {limited}"
    );
    assert_eq!(admitted + limited, 30);
}

#[tokio::test]
async fn with_redis_down_open_admits_and_closed_refuses_with_503() {
    let up = Upstream::start("u");
    let dead = format!("redis://{}", dead_address());
    let limits = |mode: &str| {
        format!(
            "rateLimit:
  enabled: true
  clusterWide: true
  store: redis
  failureMode: {mode}
  storeTimeoutMs: 100
  defaults: {{key: ip, rate: 1, per: minute, burst: 1}}
"
        )
    };
    let options = Options {
        cache_url: Some(dead),
        ..Options::default()
    };
    let open = spawn_with(&config(&routes(&up), &limits("open")), options.clone()).await;
    for _ in 0..5 {
        let r = open.get("/api/products").await;
        assert_eq!(r.status().as_u16(), 200, "fail open admits");
    }
    let closed = spawn_with(&config(&routes(&up), &limits("closed")), options).await;
    for _ in 0..3 {
        let r = closed.get("/api/products").await;
        assert_eq!(r.headers()["retry-after"], "1");
        let (status, ct, _) = answer(r).await;
        assert_eq!(
            (status, ct.as_str()),
            (503, "application/problem+json"),
            "fail closed refuses"
        );
    }
}
