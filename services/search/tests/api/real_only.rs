//! Behaviour that only the real engines have: a Redis that is down, events over Kafka.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backends, Options, product_body, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_still_answers_quickly() {
    // Nothing listens on port 1: every cache call fails.
    let mut options = Options::new(Backends::Real).demo(200);
    options.cache_url = Some("redis://127.0.0.1:1".into());
    let app = spawn(options).await;
    let started = Instant::now();
    for _ in 0..5 {
        let body = app.get_json("/v1/search?q=headphones").await;
        assert!(body["total"].as_u64().expect("total") > 0);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "uncached answers stay fast: {:?}",
        started.elapsed()
    );
    let created = app.create(&product_body("Cacheless Kazoo", 999)).await;
    let id = created["id"].as_str().expect("id");
    let mut body = product_body("Cacheless Kazoo", 1_999);
    body["version"] = json!(1);
    let r = app
        .send(
            Method::PUT,
            &format!("/v1/products/{id}"),
            Some(&app.admin()),
            None,
            Some(&body),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let product = app.get_json(&format!("/v1/products/{id}")).await;
    assert_eq!(product["price"]["minor"], 1_999);
    // Still ready: the cache is optional.
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let ready: serde_json::Value = r.json().await.expect("json");
    assert_eq!(ready["checks"]["catalog"]["status"], "up");
    assert_eq!(ready["checks"]["index"]["status"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_travel_over_kafka_to_the_index() {
    let mut options = Options::new(Backends::Real);
    options.kafka = true;
    let app = spawn(options).await;
    let created = app.create(&product_body("Kafkaesque Ukulele", 4_200)).await;
    let body = app
        .wait_for_search("/v1/search?q=ukulele", |b| b["total"] == 1)
        .await;
    assert_eq!(body["hits"][0]["id"], created["id"]);
    assert_eq!(
        body["hits"][0]["highlights"]["title"],
        "Kafkaesque <em>Ukulele</em>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_checks_the_real_protocols() {
    let app = spawn(Options::new(Backends::Real)).await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::OK);
    let ready: serde_json::Value = r.json().await.expect("json");
    for check in ["catalog", "index", "events"] {
        assert_eq!(ready["checks"][check]["status"], "up", "{ready}");
    }
    let doc = app.get_json("/openapi.json").await;
    for path in [
        "/v1/search",
        "/v1/suggest",
        "/v1/products/{id}",
        "/v1/admin/reindex",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["Availability"].is_object(),
        "availability documented"
    );
    assert!(schemas["Product"]["properties"]["availability"].is_object());
    assert!(schemas["Hit"]["properties"]["availability"].is_object());
    let params = doc["paths"]["/v1/search"]["get"]["parameters"]
        .as_array()
        .expect("search parameters");
    assert!(
        params.iter().any(|p| p["name"] == "in_stock"),
        "the in_stock filter is documented"
    );
}
