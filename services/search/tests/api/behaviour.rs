//! Behaviour every backend set must show, through the HTTP API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_search::demo;

use crate::helpers::{Backends, Options, TestApp, assert_problem, product_body, spawn, spawn_app};

fn counts(facet: &Value) -> BTreeMap<String, u64> {
    facet
        .as_array()
        .expect("facet list")
        .iter()
        .map(|c| {
            (
                c["value"].as_str().expect("value").to_string(),
                c["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

pub async fn crud_with_version_conflicts(backends: Backends) {
    let app = spawn_app(backends).await;
    let body = product_body("Studio Headphones", 4_999);

    // Auth: no token 401, customer 403.
    let r = app
        .send(Method::POST, "/v1/products", None, None, Some(&body))
        .await;
    assert_problem(r, 401, None).await;
    let r = app
        .send(
            Method::POST,
            "/v1/products",
            Some(&app.customer()),
            None,
            Some(&body),
        )
        .await;
    assert_problem(r, 403, None).await;

    let admin = app.admin();
    let create = || {
        app.send(
            Method::POST,
            "/v1/products",
            Some(&admin),
            None,
            Some(&body),
        )
    };
    let r = create().await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["etag"], "\"1\"");
    let created: Value = r.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["version"], 1);
    assert_eq!(created["sku"], body["sku"]);

    // A SKU names one product: a second product cannot be created with it, nor take it.
    let problem = assert_problem(create().await, 409, Some("sku")).await;
    let holder = created["id"].as_str().expect("id");
    assert!(
        problem["detail"].as_str().expect("detail").contains(holder),
        "names the product holding the SKU: {problem}"
    );
    let other = app.create(&product_body("Other Thing", 100)).await;
    let mut taking = product_body("Other Thing", 100);
    taking["sku"] = body["sku"].clone();
    let r = app
        .send(
            Method::PUT,
            &format!("/v1/products/{}", other["id"].as_str().expect("id")),
            Some(&admin),
            Some("\"1\""),
            Some(&taking),
        )
        .await;
    assert_problem(r, 409, Some("sku")).await;

    let r = app.get(&format!("/v1/products/{id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"1\"");
    // A client that holds the current tag gets 304 and no body; another tag gets the product.
    let path = format!("/v1/products/{id}");
    let r = app.get_if_none_match(&path, "W/\"1\"").await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], "\"1\"");
    assert!(r.bytes().await.expect("body").is_empty());
    let r = app.get_if_none_match(&path, "\"0\", \"7\"").await;
    assert_eq!(r.status(), StatusCode::OK);

    let mut changed = body.clone();
    changed["price"]["minor"] = json!(3_999);
    let r = app
        .send(
            Method::PUT,
            &path,
            Some(&admin),
            Some("\"1\""),
            Some(&changed),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let updated: Value = r.json().await.expect("json");
    assert_eq!(updated["price"]["minor"], 3_999);
    assert_eq!(updated["created_at"], created["created_at"]);

    // A stale If-Match is 412; a stale body version is 409; neither is 422 naming `version`.
    let r = app
        .send(
            Method::PUT,
            &path,
            Some(&admin),
            Some("\"1\""),
            Some(&changed),
        )
        .await;
    assert_problem(r, 412, None).await;
    let mut stale = changed.clone();
    stale["version"] = json!(1);
    let r = app
        .send(Method::PUT, &path, Some(&admin), None, Some(&stale))
        .await;
    assert_problem(r, 409, None).await;
    let r = app
        .send(Method::PUT, &path, Some(&admin), None, Some(&changed))
        .await;
    assert_problem(r, 422, Some("version")).await;
    let mut current = changed.clone();
    current["version"] = json!(2);
    let r = app
        .send(Method::PUT, &path, Some(&admin), None, Some(&current))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // Validation names every bad field.
    let mut bad = body.clone();
    bad["price"]["currency"] = json!("euro");
    bad["category"] = json!("Not A Path");
    let r = app
        .send(Method::POST, "/v1/products", Some(&admin), None, Some(&bad))
        .await;
    let problem = assert_problem(r, 422, Some("price.currency")).await;
    assert!(
        problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .any(|e| e["field"] == "category")
    );

    let r = app
        .send(Method::DELETE, &path, Some(&admin), Some("\"1\""), None)
        .await;
    assert_problem(r, 412, None).await;
    let r = app
        .send(Method::DELETE, &path, Some(&admin), Some("\"3\""), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.get(&path).await;
    assert_problem(r, 404, None).await;
    let r = app
        .send(Method::DELETE, &path, Some(&admin), None, None)
        .await;
    assert_problem(r, 404, None).await;

    // The deletion reaches the index.
    app.wait_for_search("/v1/search?q=Studio", |b| {
        b["hits"]
            .as_array()
            .is_some_and(|hs| hs.iter().all(|h| h["id"] != id.as_str()))
    })
    .await;
}

pub async fn typo_tolerant_relevance(backends: Backends) {
    let n = 1_000;
    let corpus = demo::products(demo::DEFAULT_SEED, n);
    assert!(
        corpus
            .iter()
            .any(|p| p.title.starts_with("Bluetooth Headphones")),
        "the corpus has Bluetooth Headphones"
    );
    let app = spawn(Options::new(backends).demo(n)).await;
    let body = app
        .get_json("/v1/search?q=blutooth%20hedphones&page_size=5")
        .await;
    let first = &body["hits"][0];
    assert_eq!(
        first["category"], "electronics/audio/headphones",
        "first hit is headphones: {body}"
    );
    let title = first["title"].as_str().expect("title");
    assert!(
        title.contains("Bluetooth") && (title.contains("Headphones")),
        "first hit is a pair of Bluetooth Headphones: {title}"
    );
    let highlighted = first["highlights"]["title"].as_str().expect("highlight");
    assert!(highlighted.contains("<em>"), "{highlighted}");
    assert!(first["score"].as_f64().is_some());
}

pub async fn facet_counts_are_exact(backends: Backends) {
    let n = 600;
    let corpus = demo::products(demo::DEFAULT_SEED, n);
    let app = spawn(Options::new(backends).demo(n)).await;

    let all = app.get_json("/v1/search?page_size=1").await;
    assert_eq!(all["total"], n as u64);
    let mut brands: BTreeMap<String, u64> = BTreeMap::new();
    for p in &corpus {
        *brands.entry(p.brand.clone()).or_default() += 1;
    }
    assert_eq!(counts(&all["facets"]["brand"]), brands);

    // Filtered: a category subtree, a price range and an attribute.
    let (lo, hi) = (5_000, 30_000);
    let body = app
        .get_json(&format!(
            "/v1/search?category=electronics/audio&price_min={lo}&price_max={hi}&attr=colour:black&page_size=100&sort=price_asc"
        ))
        .await;
    let matching: Vec<_> = corpus
        .iter()
        .filter(|p| {
            p.category.as_str().starts_with("electronics/audio/")
                && (lo..=hi).contains(&p.price.minor)
                && p.attributes.get("colour") == Some("black")
        })
        .collect();
    assert!(!matching.is_empty());
    assert_eq!(body["total"], matching.len() as u64);
    let mut categories: BTreeMap<String, u64> = BTreeMap::new();
    let mut connectivity: BTreeMap<String, u64> = BTreeMap::new();
    for p in &matching {
        for c in p.category.ancestors() {
            *categories.entry(c).or_default() += 1;
        }
        if let Some(v) = p.attributes.get("connectivity") {
            *connectivity.entry(v.to_string()).or_default() += 1;
        }
    }
    assert_eq!(counts(&body["facets"]["category"]), categories);
    assert_eq!(
        counts(&body["facets"]["attributes"]["connectivity"]),
        connectivity
    );
    let prices: Vec<i64> = body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["price"]["minor"].as_i64().expect("price"))
        .collect();
    assert!(
        prices.windows(2).all(|w| w[0] <= w[1]),
        "sorted: {prices:?}"
    );

    // Brand filter (any of), newest first.
    let body = app
        .get_json("/v1/search?brand=Sonora,Stride&sort=newest&page_size=3")
        .await;
    let expected = corpus
        .iter()
        .filter(|p| p.brand == "Sonora" || p.brand == "Stride")
        .count();
    assert_eq!(body["total"], expected as u64);
    let newest = corpus
        .iter()
        .filter(|p| p.brand == "Sonora" || p.brand == "Stride")
        .max_by_key(|p| p.created_at)
        .expect("one");
    assert_eq!(body["hits"][0]["id"], newest.id.as_str());
}

pub async fn update_is_searchable_once_consumed_and_never_stale(backends: Backends) {
    let app = spawn_app(backends).await;
    let created = app.create(&product_body("Quartz Metronome", 1_500)).await;
    let id = created["id"].as_str().expect("id").to_string();
    let search = "/v1/search?q=metronome";
    app.wait_for_search(search, |b| b["total"] == 1).await;
    // Fill the caches.
    let before = app.get_json(&format!("/v1/products/{id}")).await;
    assert_eq!(before["price"]["minor"], 1_500);
    app.get_json(search).await;

    let mut body = product_body("Quartz Metronome", 2_500);
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

    // Acknowledged: the product is never served with the old price again.
    let after = app.get_json(&format!("/v1/products/{id}")).await;
    assert_eq!(after["price"]["minor"], 2_500);
    // The index follows once the event is consumed, and the cached search is not served.
    app.wait_for_search(search, |b| b["hits"][0]["price"]["minor"] == 2_500)
        .await;
    for _ in 0..5 {
        let b = app.get_json(search).await;
        assert_eq!(b["hits"][0]["price"]["minor"], 2_500);
        assert_eq!(b["hits"][0]["version"], 2);
    }
}

pub async fn reindex_under_query_load_drops_no_query(backends: Backends) {
    let n = 400;
    let app = spawn(Options::new(backends).demo(n)).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, served) = (stop.clone(), served.clone());
        let (base, http) = (app.base.clone(), app.http.clone());
        workers.push(tokio::spawn(async move {
            let get = |path: String| http.get(format!("{base}{path}")).send();
            let mut failures = Vec::new();
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                // Vary the query so the cache does not answer for the index.
                let path = format!(
                    "/v1/search?q=headphones&page_size=1&page={}",
                    1 + (i + w) % 5
                );
                let Ok(r) = get(path).await else {
                    failures.push("transport error".to_string());
                    continue;
                };
                let status = r.status();
                let body: Value = r.json().await.unwrap_or_default();
                if status != StatusCode::OK || body["total"].as_u64().unwrap_or(0) == 0 {
                    failures.push(format!("{status}: {body}"));
                }
                let Ok(all) = get("/v1/search?page_size=1&sort=price_desc".into()).await else {
                    failures.push("transport error".to_string());
                    continue;
                };
                let total = all.json::<Value>().await.unwrap_or_default()["total"].clone();
                if total != n as u64 {
                    failures.push(format!("total {total}"));
                }
                served.fetch_add(2, Ordering::SeqCst);
            }
            failures
        }));
    }
    for _ in 0..2 {
        let r = app
            .send(
                Method::POST,
                "/v1/admin/reindex",
                Some(&app.admin()),
                None,
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["indexed"], n as u64);
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let failures = w.await.expect("worker");
        assert!(failures.is_empty(), "dropped queries: {failures:?}");
    }
    assert!(served.load(Ordering::SeqCst) > 0);
    let r = app
        .send(
            Method::POST,
            "/v1/admin/reindex",
            Some(&app.customer()),
            None,
            None,
        )
        .await;
    assert_problem(r, 403, None).await;
}

pub async fn bad_input_is_a_problem_naming_the_field(backends: Backends) {
    let app: TestApp = spawn_app(backends).await;
    app.create(&product_body("Only Product", 100)).await;
    let long = "x".repeat(201);
    for (path, field) in [
        (format!("/v1/search?q={long}"), "q"),
        ("/v1/search?price_min=500&price_max=100".into(), "price_max"),
        ("/v1/search?price_min=-5".into(), "price_min"),
        ("/v1/search?price_max=abc".into(), "price_max"),
        ("/v1/search?sort=cheapest".into(), "sort"),
        ("/v1/search?page=0".into(), "page"),
        ("/v1/search?page=-1".into(), "page"),
        ("/v1/search?page=9999".into(), "page"),
        ("/v1/search?page_size=0".into(), "page_size"),
        ("/v1/search?colour=red".into(), "colour"),
        ("/v1/search?attr=colour".into(), "attr"),
        ("/v1/search?category=Bad%20Cat".into(), "category"),
        ("/v1/suggest".into(), "q"),
        ("/v1/suggest?q=ab&limit=500".into(), "limit"),
        ("/v1/products/bad%20id".into(), "id"),
        ("/v1/products".into(), "ids"),
        ("/v1/products?ids=".into(), "ids"),
        ("/v1/products?ids=p-1,bad%20id".into(), "ids"),
        (
            format!(
                "/v1/products?ids={}",
                (0..101)
                    .map(|i| format!("p-{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "ids",
        ),
        ("/v1/products?id=p-1".into(), "id"),
    ] {
        let r = app.get(&path).await;
        assert_problem(r, 422, Some(field)).await;
    }
    // Page past the end of the results.
    app.wait_for_search("/v1/search?q=Only", |b| b["total"] == 1)
        .await;
    let r = app.get("/v1/search?q=Only&page=3").await;
    assert_problem(r, 422, Some("page")).await;

    let admin = app.admin();
    let r = app
        .http
        .post(format!("{}/v1/products", app.base))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"sku\": ")
        .send()
        .await
        .expect("post");
    assert_problem(r, 400, None).await;
    let mut unknown = product_body("X", 1);
    unknown["colour"] = json!("red");
    let r = app
        .send(
            Method::POST,
            "/v1/products",
            Some(&admin),
            None,
            Some(&unknown),
        )
        .await;
    let problem = assert_problem(r, 422, None).await;
    assert!(problem.to_string().contains("colour"), "{problem}");
    let mut wrong_type = product_body("X", 1);
    wrong_type["price"]["minor"] = json!("ten");
    let r = app
        .send(
            Method::POST,
            "/v1/products",
            Some(&admin),
            None,
            Some(&wrong_type),
        )
        .await;
    assert_problem(r, 422, Some("price.minor")).await;
    let r = app
        .send(
            Method::PUT,
            "/v1/products/p-1",
            Some(&admin),
            Some("not-a-tag"),
            Some(&product_body("X", 1)),
        )
        .await;
    assert_problem(r, 422, Some("If-Match")).await;
}

pub async fn suggestions_complete_prefixes(backends: Backends) {
    let app = spawn(Options::new(backends).demo(300)).await;
    let body = app.get_json("/v1/suggest?q=blue&limit=5").await;
    let suggestions = body["suggestions"].as_array().expect("suggestions");
    assert!(!suggestions.is_empty(), "{body}");
    assert!(suggestions.len() <= 5);
    for s in suggestions {
        let text = s["text"].as_str().expect("text").to_lowercase();
        assert!(
            text.split(|c: char| !c.is_alphanumeric())
                .any(|w| w.starts_with("blue")),
            "{text}"
        );
    }
    let body = app.get_json("/v1/suggest?q=cast%20ir").await;
    let suggestions = body["suggestions"].as_array().expect("suggestions");
    assert!(!suggestions.is_empty(), "{body}");
    for s in suggestions {
        assert!(
            s["text"].as_str().expect("text").contains("Cast Iron"),
            "{s}"
        );
    }
}

fn stock_changed(
    product_id: &str,
    available: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> storefront_kit::event::Envelope {
    let mut event = storefront_kit::event::Envelope::new(
        "StockChanged",
        "order",
        product_id,
        json!({ "product_id": product_id, "available": available }),
    );
    event.time = at;
    event
}

/// `StockChanged` events on `orders.v1` (a real Kafka topic on the real stack, the in-process
/// bus on the embedded one) show as the products' availability, in the product response and
/// in search hits, with an `in_stock` filter; older and redelivered reports change nothing.
pub async fn stock_reports_show_availability_in_order(backends: Backends) {
    let mut options = Options::new(backends);
    options.kafka = backends == Backends::Real;
    let app = spawn(options).await;
    let a = app.create(&product_body("Stocked Theremin", 9_900)).await;
    let b = app.create(&product_body("Restocked Theremin", 8_900)).await;
    assert!(a["availability"].is_null(), "unknown until reported: {a}");
    let (a, b) = (
        a["id"].as_str().expect("id").to_string(),
        b["id"].as_str().expect("id").to_string(),
    );
    let body = app
        .wait_for_search("/v1/search?q=theremin", |r| r["total"] == 2)
        .await;
    assert!(body["hits"][0]["availability"].is_null());
    // Cached now: the report must invalidate it (the wait is shorter than the cache TTL).
    let product = app.get_json(&format!("/v1/products/{a}")).await;
    assert!(product["availability"].is_null());

    let t0 = chrono::Utc::now();
    let first = stock_changed(&a, 5, t0);
    app.publish_order_event(&first).await;
    let product = app
        .wait_for_json(&format!("/v1/products/{a}"), |p| {
            p["availability"]["available"] == 5
        })
        .await;
    assert_eq!(product["availability"]["in_stock"], true);
    let as_of: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(product["availability"]["as_of"].clone()).expect("as_of");
    assert_eq!(as_of.timestamp_micros(), t0.timestamp_micros());
    // The report changed what the product reads, so its ETag changed with it: the tag held
    // from before the report is not current, the new one is.
    let stocked = format!("\"1.5.{}\"", t0.timestamp_micros());
    let path = format!("/v1/products/{a}");
    let r = app.get_if_none_match(&path, "\"1\"").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], stocked.as_str());
    let r = app.get_if_none_match(&path, &stocked).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let body = app
        .wait_for_search("/v1/search?q=theremin&in_stock=true", |r| r["total"] == 1)
        .await;
    assert_eq!(body["hits"][0]["id"], a.as_str());
    assert_eq!(body["hits"][0]["availability"]["available"], 5);

    // Another order event is skipped; an older report and a redelivery change nothing. The
    // topic keeps its order (one partition, or the in-process log), so once the report for
    // `b` that follows them shows, they were all handled.
    app.publish_order_event(&storefront_kit::event::Envelope::new(
        "OrderCancelled",
        "order",
        "order-1",
        json!({ "order_id": "order-1" }),
    ))
    .await;
    app.publish_order_event(&first).await;
    app.publish_order_event(&stock_changed(&a, 99, t0 - chrono::Duration::seconds(1)))
        .await;
    app.publish_order_event(&stock_changed(&b, 0, t0)).await;
    let other = app
        .wait_for_json(&format!("/v1/products/{b}"), |p| {
            p["availability"]["available"] == 0
        })
        .await;
    assert_eq!(other["availability"]["in_stock"], false);
    let product = app.get_json(&format!("/v1/products/{a}")).await;
    assert_eq!(product["availability"]["available"], 5, "{product}");
    let body = app.get_json("/v1/search?q=theremin&in_stock=true").await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["hits"][0]["availability"]["available"], 5);

    // Sold out: gone from the in-stock results, still found without the filter.
    app.publish_order_event(&stock_changed(&a, 0, t0 + chrono::Duration::seconds(1)))
        .await;
    app.wait_for_search("/v1/search?q=theremin&in_stock=true", |r| r["total"] == 0)
        .await;
    let body = app.get_json("/v1/search?q=theremin").await;
    assert_eq!(body["total"], 2);
    for hit in body["hits"].as_array().expect("hits") {
        assert_eq!(hit["availability"]["in_stock"], false, "{hit}");
    }

    // A product write keeps the stock, in the catalog and in the index. Its If-Match may be
    // the ETag read before the last report: only the version part is compared, as a write
    // never changes the stock.
    let update = product_body("Stocked Theremin", 10_900);
    let r = app
        .send(
            Method::PUT,
            &format!("/v1/products/{a}"),
            Some(&app.admin()),
            Some(&stocked),
            Some(&update),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let sold_out = format!(
        "\"2.0.{}\"",
        (t0 + chrono::Duration::seconds(1)).timestamp_micros()
    );
    assert_eq!(r.headers()["etag"], sold_out.as_str());
    let updated: Value = r.json().await.expect("json");
    assert_eq!(updated["availability"]["available"], 0);
    let body = app
        .wait_for_search("/v1/search?q=stocked+theremin&sort=price_desc", |r| {
            r["hits"][0]["price"]["minor"] == 10_900
        })
        .await;
    assert_eq!(body["hits"][0]["availability"]["available"], 0);
    let product = app.get_json(&format!("/v1/products/{a}")).await;
    assert_eq!(product["availability"]["available"], 0);

    // A malformed filter value is a problem naming it.
    let r = app.get("/v1/search?in_stock=maybe").await;
    assert_problem(r, 422, Some("in_stock")).await;
}

pub async fn products_by_ids_in_one_call(backends: Backends) {
    let app: TestApp = spawn_app(backends).await;
    let a = app.create(&product_body("Batch Lamp", 1200)).await;
    let b = app.create(&product_body("Batch Desk", 8900)).await;
    let (a, b) = (a["id"].as_str().expect("id"), b["id"].as_str().expect("id"));
    // The order asked, repeats once, missing ids left out.
    let list = app
        .get_json(&format!("/v1/products?ids={b},no-such-product,{a},{b}"))
        .await;
    let items = list["items"].as_array().expect("items");
    let ids: Vec<&str> = items
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [b, a], "{list}");
    assert_eq!(items[0]["price"]["minor"], 8900);
    assert_eq!(items[1]["title"], "Batch Lamp");
    // What one product's GET answers, field for field.
    assert_eq!(items[1], app.get_json(&format!("/v1/products/{a}")).await);
    let none = app.get_json("/v1/products?ids=no-such-product").await;
    assert_eq!(none["items"], json!([]));
    // A change is seen at once, as by the single read.
    let admin = app.admin();
    let mut changed = product_body("Batch Lamp", 1500);
    changed["version"] = json!(1);
    let r = app
        .send(
            Method::PUT,
            &format!("/v1/products/{a}"),
            Some(&admin),
            None,
            Some(&changed),
        )
        .await;
    assert_eq!(r.status(), 200);
    let list = app.get_json(&format!("/v1/products?ids={a}")).await;
    assert_eq!(list["items"][0]["price"]["minor"], 1500, "{list}");
}
