//! Routing by longest prefix, rewriting, 404/405 problems, the body limit, the web UI, CORS.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Options, Upstream, answer, config, route, spawn, spawn_with};

const PROBLEM: &str = "application/problem+json";

#[tokio::test]
async fn the_longest_prefix_wins_and_rewrite_replaces_it() {
    let search = Upstream::start("search");
    let admin = Upstream::start("admin");
    let gw = spawn(&config(
        &[
            route(
                "/api/products",
                "search",
                &[&search],
                "rewrite: /v1/products, methods: [GET, HEAD], auth: public",
            ),
            route(
                "/api/products/special",
                "admin",
                &[&admin],
                "rewrite: /v2/special, methods: [GET], auth: public",
            ),
            route(
                "/.well-known/jwks.json",
                "search",
                &[&search],
                "methods: [GET], auth: public",
            ),
        ],
        "",
    ))
    .await;

    let r = gw
        .http
        .get(gw.url("/api/products/42?q=red+shoes&page=2"))
        .header("x-user-id", "spoofed-admin")
        .header("x-forwarded-for", "1.2.3.4")
        .send()
        .await
        .expect("GET");
    let (status, _, body) = answer(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"], "search");
    assert_eq!(body["path"], "/v1/products/42?q=red+shoes&page=2");
    assert!(
        body["headers"].get("x-user-id").is_none(),
        "client identity headers are dropped"
    );
    assert_eq!(
        body["headers"]["x-forwarded-for"], "127.0.0.1",
        "untrusted peer: no spoofed hops"
    );
    assert_eq!(body["headers"]["x-forwarded-proto"], "http");
    assert!(body["headers"]["x-request-id"].is_string());
    assert!(body["headers"]["traceparent"].is_string());

    let (_, _, body) = answer(gw.get("/api/products/special/7").await).await;
    assert_eq!(body["instance"], "admin");
    assert_eq!(body["path"], "/v2/special/7");
    let (_, _, body) = answer(gw.get("/api/products").await).await;
    assert_eq!(body["path"], "/v1/products");
    let (_, _, body) = answer(gw.get("/api/productsx").await).await;
    assert_ne!(
        body["instance"], "search",
        "prefixes match whole segments only"
    );
    // No rewrite: the path is kept.
    let (_, _, body) = answer(gw.get("/.well-known/jwks.json").await).await;
    assert_eq!(body["path"], "/.well-known/jwks.json");
}

/// Writes `request` on a new connection to the gateway and reads until it closes the
/// connection or sends nothing more for 500 ms.
async fn raw_exchange(base: &str, request: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n @ 1..)) =
        tokio::time::timeout(std::time::Duration::from_millis(500), stream.read(&mut buf)).await
    {
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response's status line, its header fields (lower-case names, sorted) and its body.
fn parse_response(text: &str) -> (String, Vec<(String, String)>, String) {
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let mut fields: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    fields.sort();
    (status, fields, body.to_string())
}

#[tokio::test]
async fn the_fast_path_forwards_and_answers_as_hypers_does() {
    let up = Upstream::start("u");
    let gw = spawn(&config(
        &[route(
            "/api/things",
            "things",
            &[&up],
            "rewrite: /v1/things, methods: [GET, HEAD], auth: public",
        )],
        "rateLimit:
  enabled: true
  rules:
  - {name: things, match: {pathPrefix: /api/things}, key: ip, rate: 1000, per: second, burst: 1000}
",
    ))
    .await;
    // The same request both ways: with `Connection: keep-alive` the kit's fast path takes it,
    // with `Connection: close` hyper does. Both carry what a client may not set (identity,
    // forwarding) and hop-by-hop fields, which neither forwards.
    let request = |connection: &str| {
        format!(
            "GET /api/things/1?colour=red HTTP/1.1\r\nHost: shop.example\r\nAccept: application/json\r\n\
             X-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Host: evil.example\r\nX-User-Id: spoofed\r\n\
             X-User-Roles: admin\r\nX-Request-Id: same-id\r\nProxy-Authorization: Basic c2VjcmV0\r\n\
             Keep-Alive: timeout=5\r\nX-Custom: kept\r\nConnection: {connection}\r\n\r\n"
        )
    };
    let fast = parse_response(&raw_exchange(&gw.base, &request("keep-alive")).await);
    let hyper = parse_response(&raw_exchange(&gw.base, &request("close")).await);
    assert_eq!(fast.0, "HTTP/1.1 200 OK");
    assert_eq!(fast.0, hyper.0);
    // What the upstream got: the same, but for the trace context, new on each hop.
    let received = |body: &str| {
        let mut echo: Value = serde_json::from_str(body).expect("echo JSON");
        let traceparent = echo["headers"]
            .as_object_mut()
            .and_then(|h| h.remove("traceparent"));
        assert!(traceparent.is_some(), "{body}");
        echo
    };
    let (from_fast, from_hyper) = (received(&fast.2), received(&hyper.2));
    assert_eq!(from_fast, from_hyper);
    assert_eq!(from_fast["path"], "/v1/things/1?colour=red");
    let forwarded = &from_fast["headers"];
    for gone in [
        "x-user-id",
        "x-user-roles",
        "proxy-authorization",
        "keep-alive",
        "connection",
    ] {
        assert!(forwarded.get(gone).is_none(), "{gone}: {forwarded}");
    }
    assert_eq!(forwarded["x-forwarded-for"], "127.0.0.1");
    assert_eq!(forwarded["x-forwarded-host"], "shop.example");
    assert_eq!(forwarded["x-request-id"], "same-id");
    assert_eq!(forwarded["x-custom"], "kept");
    // What the client got: the same fields, but for those of the connection (hyper's path
    // answers `Connection: close` with its own), the trace context, and the budget left (the
    // second request has one less).
    let fields = |(_, fields, _): &(String, Vec<(String, String)>, String)| {
        fields
            .iter()
            .filter(|(n, _)| !matches!(n.as_str(), "traceparent" | "connection" | "date"))
            .map(|(n, v)| match n.as_str() {
                "ratelimit" => (n.clone(), v.split(";r=").next().unwrap_or_default().into()),
                _ => (n.clone(), v.clone()),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(&fast), fields(&hyper));
    for answer in [&fast, &hyper] {
        let value = |name: &str| answer.1.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        assert_eq!(
            value("ratelimit-policy").map(String::as_str),
            Some("\"things\";q=1000;w=1")
        );
        assert!(value("ratelimit").is_some_and(|v| v.starts_with("\"things\";r=99")));
    }
    assert!(
        fast.1
            .iter()
            .any(|(n, v)| n == "x-request-id" && v == "same-id"),
        "{:?}",
        fast.1
    );

    // UTF-8 in the path, as some clients send it: forwarded both ways.
    for connection in ["keep-alive", "close"] {
        let sent = format!(
            "GET /api/things/caf\u{e9} HTTP/1.1\r\nHost: a\r\nConnection: {connection}\r\n\r\n"
        );
        let (status, _, body) = parse_response(&raw_exchange(&gw.base, &sent).await);
        assert_eq!(status, "HTTP/1.1 200 OK", "{connection}: {body}");
        let echo: Value = serde_json::from_str(&body).expect("echo JSON");
        assert_eq!(echo["path"], "/v1/things/caf\u{e9}", "{connection}");
    }

    // A `HEAD`: the `GET`'s length, no body, and the connection goes on to the next request.
    let text = raw_exchange(
        &gw.base,
        "HEAD /api/things/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /api/things/2 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let (head, get) = text.split_at(text.rfind("HTTP/1.1 200").expect("two answers"));
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{text}"
    );
    assert!(head.contains("content-length: "), "{text}");
    assert!(get.contains("/v1/things/2"), "{text}");

    // A body the upstream streams in chunks comes through whole, chunked, and the connection is
    // used again after it.
    let text = raw_exchange(
        &gw.base,
        "GET /api/things/stream HTTP/1.1\r\nHost: a\r\n\r\nGET /api/things/3 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let (streamed, next) = text.split_at(text.rfind("HTTP/1.1 200").expect("two answers"));
    assert!(
        streamed.contains("transfer-encoding: chunked\r\n"),
        "{text}"
    );
    assert!(streamed.contains("part one, \r\n"), "{text}");
    assert!(streamed.ends_with("part two\r\n0\r\n\r\n"), "{text}");
    assert!(next.contains("/v1/things/3"), "{text}");
}

#[tokio::test]
async fn no_route_is_404_and_a_wrong_method_405_as_problems() {
    let up = Upstream::start("u");
    let gw = spawn(&config(
        &[route(
            "/api/products",
            "search",
            &[&up],
            "rewrite: /v1/products, methods: [GET, HEAD], auth: public",
        )],
        "",
    ))
    .await;
    for path in ["/api/nothing-here", "/api", "/api/productsx"] {
        let (status, ct, body) = answer(gw.get(path).await).await;
        assert_eq!((status, ct.as_str()), (404, PROBLEM), "{path}");
        assert_eq!(body["status"], 404);
    }
    let r = gw
        .http
        .delete(gw.url("/api/products/1"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let (status, ct, body) = answer(r).await;
    assert_eq!((status, ct.as_str()), (405, PROBLEM));
    assert_eq!(body["status"], 405);
    // Dot segments (which URL libraries normalize away, so sent raw) are refused.
    for path in [
        "/api/products/../admin",
        "/api/products/%2e%2e/admin",
        "/api/products%2f..%2fx",
    ] {
        let head = raw_get(&gw.base, path).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{path}: {head}");
        assert!(head.contains("application/problem+json"), "{path}: {head}");
    }
    assert_eq!(
        up.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing was forwarded"
    );
}

#[tokio::test]
async fn an_oversized_body_is_413_and_a_small_one_streams_through() {
    let up = Upstream::start("u");
    let gw = spawn_with(
        &config(
            &[route(
                "/api/cart",
                "cart",
                &[&up],
                "rewrite: /v1/cart, methods: [GET, POST, PUT], auth: public",
            )],
            "",
        ),
        Options {
            max_body_bytes: Some(64 * 1024),
            ..Options::default()
        },
    )
    .await;
    let ok = gw
        .http
        .post(gw.url("/api/cart/items"))
        .body(vec![b'x'; 60 * 1024])
        .send()
        .await
        .expect("POST");
    let (status, _, body) = answer(ok).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body_len"], 60 * 1024);

    for method in [reqwest::Method::POST, reqwest::Method::PUT] {
        let big = gw
            .http
            .request(method.clone(), gw.url("/api/cart/items"))
            .body(vec![b'x'; 65 * 1024])
            .send()
            .await
            .expect("send");
        // The body is left unread, so the connection closes after the answer and says so.
        assert_eq!(big.headers()["connection"], "close", "{method}");
        let (status, ct, _) = answer(big).await;
        assert_eq!((status, ct.as_str()), (413, PROBLEM), "{method}");
    }
    // Without a Content-Length (chunked), the limit holds while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'y'; 8 * 1024])).collect();
    let streamed = gw
        .http
        .post(gw.url("/api/cart/items"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("POST chunked");
    assert_eq!(streamed.status().as_u16(), 413);
}

#[tokio::test]
async fn the_ui_is_served_at_the_root_with_a_spa_fallback() {
    let up = Upstream::start("u");
    let gw = spawn_with(
        &config(
            &[route(
                "/api/products",
                "search",
                &[&up],
                "methods: [GET], auth: public",
            )],
            "",
        ),
        Options {
            cors_origins: vec!["https://shop.example".into()],
            ..Options::default()
        },
    )
    .await;
    let r = gw.get("/").await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );
    let etag = r.headers()["etag"].clone();
    let index = r.text().await.expect("text");
    assert!(index.contains("<title>Storefront</title>"), "{index}");
    let deep = gw
        .get("/account/orders/17")
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(deep, index, "client-side routes get index.html");
    let cached = gw
        .http
        .get(gw.url("/"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("GET");
    assert_eq!(cached.status().as_u16(), 304);

    // CORS for the configured origin only.
    let preflight = gw
        .http
        .request(reqwest::Method::OPTIONS, gw.url("/api/products"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    // With CORS on, a proxied request goes through the CORS layer too, with an `Origin` or
    // without (a response says what it varies by either way).
    let plain = gw.get("/api/products").await;
    assert_eq!(plain.status().as_u16(), 200);
    assert!(
        plain.headers()["vary"]
            .to_str()
            .expect("vary")
            .contains("origin")
    );
    let allowed = gw
        .http
        .get(gw.url("/api/products"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(allowed.status().as_u16(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let other = gw
        .http
        .get(gw.url("/api/products"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("GET");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let body: Value = other.json().await.expect("json");
    assert_eq!(body["instance"], "u");
}

/// A GET with the path sent exactly as given; returns the response head.
async fn raw_get(base: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}
