//! Integration tests of the cart service against the real local stack (MariaDB, Redis) and a
//! real search service as its catalog; the embedded twins (SQLite, memory) pass the same flow.

mod helpers;
mod migrations;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_cart::CartClient;
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::client::{ClientError, ClientSettings};
use storefront_kit::context::{Credentials, RequestContext};

use helpers::{Cache, Options, TestApp, assert_problem, spawn_app};

fn item<'a>(cart: &'a Value, product: &str) -> &'a Value {
    cart["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["product_id"] == product)
        .unwrap_or_else(|| panic!("{product} in {cart}"))
}

/// Add, add again, patch, remove, clear, checking lines and totals at every step.
async fn flow(app: &TestApp) {
    let user = "shopper-1";
    let empty = app.cart(user).await;
    assert_eq!(empty["items"], json!([]));
    assert_eq!(empty["total"], json!({"minor": 0, "currency": "EUR"}));
    assert_eq!(empty["item_count"], 0);

    let mug = app.product("Mug", 1999, "EUR").await;
    let pan = app.product("Pan", 4550, "EUR").await;

    let r = app.add(user, &mug, 2).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cart: Value = r.json().await.expect("json");
    assert_eq!(cart["items"].as_array().map(Vec::len), Some(1));
    let line = item(&cart, &mug);
    assert_eq!(line["title"], "Mug");
    assert_eq!(line["quantity"], 2);
    assert_eq!(
        line["unit_price"],
        json!({"minor": 1999, "currency": "EUR"})
    );
    assert_eq!(
        line["line_total"],
        json!({"minor": 3998, "currency": "EUR"})
    );
    assert_eq!(cart["total"], json!({"minor": 3998, "currency": "EUR"}));
    assert_eq!(cart["item_count"], 2);
    assert!(
        chrono::DateTime::parse_from_rfc3339(cart["updated_at"].as_str().expect("time")).is_ok()
    );

    // Adding again adds to the line; a second product gets its own line, in order.
    assert_eq!(app.add(user, &mug, 1).await.status(), StatusCode::OK);
    assert_eq!(app.add(user, &pan, 1).await.status(), StatusCode::OK);
    let cart = app.cart(user).await;
    assert_eq!(cart["items"][0]["product_id"], mug.as_str());
    assert_eq!(cart["items"][1]["product_id"], pan.as_str());
    assert_eq!(item(&cart, &mug)["quantity"], 3);
    assert_eq!(cart["total"]["minor"], 3 * 1999 + 4550);
    assert_eq!(cart["item_count"], 4);

    // PATCH sets the quantity.
    let r = app.set(user, &pan, 4).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cart: Value = r.json().await.expect("json");
    assert_eq!(item(&cart, &pan)["line_total"]["minor"], 4 * 4550);
    assert_eq!(cart["total"]["minor"], 3 * 1999 + 4 * 4550);
    assert_eq!(
        app.cart(user).await,
        cart,
        "GET agrees with the PATCH answer"
    );

    // PATCH to 0 removes the line; DELETE removes one.
    let r = app.set(user, &mug, 0).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cart = app.cart(user).await;
    assert_eq!(cart["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(cart["total"]["minor"], 4 * 4550);
    assert_eq!(
        app.remove(user, &pan).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.cart(user).await["items"], json!([]));
    assert_eq!(
        app.remove(user, &pan).await.status(),
        StatusCode::NOT_FOUND,
        "not in the cart any more"
    );

    // Clear empties the cart.
    app.add(user, &mug, 1).await;
    app.add(user, &pan, 2).await;
    assert_eq!(app.clear(user).await.status(), StatusCode::NO_CONTENT);
    let cart = app.cart(user).await;
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["total"], json!({"minor": 0, "currency": "EUR"}));
    assert_eq!(
        app.clear(user).await.status(),
        StatusCode::NO_CONTENT,
        "clearing an empty cart is fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_patch_remove_clear_flow_on_mariadb_and_redis() {
    let app = spawn_app(Options::real()).await;
    flow(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_twin_with_the_memory_cache_passes_the_same_flow() {
    let app = spawn_app(Options::embedded()).await;
    flow(&app).await;
    assert!(
        app.platform.data_dir.join("cart.db").exists(),
        "carts in <data-dir>/cart.db"
    );
}

/// Quantities of a cart's lines by product.
fn lines(cart: &Value) -> Vec<(String, u64)> {
    cart["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let id = i["product_id"].as_str().expect("id").to_string();
            (id, i["quantity"].as_u64().expect("quantity"))
        })
        .collect()
}

/// `OrderPlaced` events take their orders out of the carts: a cart still at the order's
/// version is emptied (its cached copy dropped); one changed since loses only what the
/// order bought; a redelivered event, or one overtaken by a later order's, changes nothing;
/// an event the cart cannot read is passed over without holding up those after it.
async fn placed_orders_leave_their_carts(app: &TestApp) {
    let mug = app.product("Mug", 1000, "EUR").await;
    let pan = app.product("Pan", 2000, "EUR").await;

    // Unchanged since the order read it: emptied, and the cached copy goes.
    app.add("ann", &mug, 2).await;
    app.add("ann", &pan, 1).await;
    let read = app.cart("ann").await;
    assert_eq!(read["version"], 2);
    app.order_placed("o-ann", "ann", 2, &[(&mug, 2), (&pan, 1)])
        .await;
    let cart = app
        .cart_when("ann", "emptied", |c| c["item_count"] == 0)
        .await;
    assert_eq!(cart["version"], 3, "one write");

    // Changed after the order read it: only what the order bought comes off.
    app.add("ben", &mug, 2).await; // version 1: the order buys these two
    app.add("ben", &mug, 1).await;
    app.order_placed("o-ben", "ben", 1, &[(&mug, 2)]).await;
    let cart = app
        .cart_when("ben", "taken out", |c| c["item_count"] == 1)
        .await;
    assert_eq!(lines(&cart), [(mug.clone(), 1)]);
    app.add("ben", &pan, 1).await;
    app.add("ben", &mug, 2).await;
    // Redelivered (the same event again): nothing changes. A later event on the same key
    // (partition) shows it was handled.
    app.order_placed("o-ben", "ben", 1, &[(&mug, 2)]).await;
    app.add("cal", &pan, 1).await;
    app.order_placed("o-ben", "cal", 1, &[(&pan, 1)]).await;
    app.cart_when("cal", "emptied", |c| c["item_count"] == 0)
        .await;
    assert_eq!(
        lines(&app.cart("ben").await),
        [(mug.clone(), 3), (pan.clone(), 1)],
        "a redelivered order is not taken out twice"
    );

    // Two orders, the later one's event first: the earlier one's is passed over, so what
    // the shopper added after both stays.
    app.add("dee", &mug, 1).await; // version 1: order A
    app.add("dee", &pan, 1).await; // version 2: order B, both products
    app.order_placed("o-dee-b", "dee", 2, &[(&mug, 1), (&pan, 1)])
        .await;
    app.cart_when("dee", "emptied", |c| c["item_count"] == 0)
        .await;
    app.add("dee", &mug, 1).await;
    app.order_placed("o-dee-b", "dee", 1, &[(&mug, 1)]).await;
    // Unreadable events are passed over; those after them still apply.
    app.publish("o-dee-b", b"not json".to_vec()).await;
    let no_version = json!({"user_id": "dee", "lines": [{"product_id": mug, "quantity": 1}]});
    let old = storefront_kit::event::Envelope::new("OrderPlaced", "order", "o-old", no_version);
    app.publish("o-dee-b", old.to_json().expect("json")).await;
    app.add("eve", &pan, 1).await;
    app.order_placed("o-dee-b", "eve", 1, &[(&pan, 1)]).await;
    app.cart_when("eve", "emptied", |c| c["item_count"] == 0)
        .await;
    assert_eq!(
        lines(&app.cart("dee").await),
        [(mug.clone(), 1)],
        "an older order's event after a newer one's changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placed_orders_leave_their_carts_through_kafka_on_mariadb_and_redis() {
    let app = spawn_app(Options::real()).await;
    placed_orders_leave_their_carts(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placed_orders_leave_their_carts_through_the_in_process_bus_on_sqlite() {
    let app = spawn_app(Options::embedded()).await;
    placed_orders_leave_their_carts(&app).await;
}

/// Kafka keeps what the cart service missed: an order placed while it was down leaves its
/// cart once the service is back (the consumer group resumes from its committed offset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_while_the_cart_service_is_down_leaves_its_cart_once_it_is_back() {
    let app = spawn_app(Options::real()).await;
    let mug = app.product("Mug", 1000, "EUR").await;
    // The follower has joined its group and committed: one event went all the way through.
    app.add("gus", &mug, 1).await;
    app.order_placed("o-gus", "gus", 1, &[(&mug, 1)]).await;
    app.cart_when("gus", "emptied", |c| c["item_count"] == 0)
        .await;
    app.add("fay", &mug, 2).await;

    app.platform.shutdown.trigger();
    app.platform
        .shutdown
        .drained()
        .await
        .expect("the cart service stopped");
    // Placed while no cart service runs.
    app.order_placed("o-fay", "fay", 1, &[(&mug, 2)]).await;
    let (platform, base) = app.restart().await;
    let token = app.token("fay");
    let emptied = storefront_tests::wait_until(Duration::from_secs(30), || async {
        let cart: Value = app
            .http
            .get(format!("{base}/v1/cart"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        Ok((cart["item_count"] == 0).then_some(cart))
    })
    .await
    .expect("the order placed meanwhile leaves the cart");
    assert_eq!(emptied["version"], 2);
    platform.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_can_neither_see_nor_change_another_users_cart() {
    let app = spawn_app(Options::real()).await;
    let mug = app.product("Mug", 1000, "EUR").await;
    let pan = app.product("Pan", 2000, "EUR").await;
    assert_eq!(app.add("alice", &mug, 2).await.status(), StatusCode::OK);
    assert_eq!(app.add("alice", &pan, 1).await.status(), StatusCode::OK);
    let alices = app.cart("alice").await;

    // GET: bob sees his own (empty) cart.
    assert_eq!(app.cart("bob").await["items"], json!([]));
    // PATCH and DELETE of alice's lines: not in bob's cart.
    assert_problem(app.set("bob", &mug, 5).await, 404, None).await;
    assert_problem(app.set("bob", &mug, 0).await, 404, None).await;
    assert_problem(app.remove("bob", &pan).await, 404, None).await;
    // POST and DELETE /v1/cart change bob's cart only.
    assert_eq!(app.add("bob", &mug, 1).await.status(), StatusCode::OK);
    assert_eq!(app.clear("bob").await.status(), StatusCode::NO_CONTENT);
    // There is no way to name another user's cart.
    let r = app
        .send(Method::GET, "/v1/cart/alice", Some(&app.token("bob")), None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    assert_eq!(app.cart("alice").await, alices, "alice's cart untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_endpoint_is_a_problem_naming_the_field() {
    let app = spawn_app(Options::real()).await;
    let mug = app.product("Mug", 1000, "EUR").await;
    let token = app.token("u1");
    let t = Some(token.as_str());
    let post = |body: Value| {
        let app = &app;
        async move {
            app.send(Method::POST, "/v1/cart/items", t, Some(&body))
                .await
        }
    };
    // POST /v1/cart/items
    assert_problem(post(json!({"quantity": 1})).await, 422, Some("product_id")).await;
    assert_problem(
        post(json!({"product_id": "bad id!", "quantity": 1})).await,
        422,
        Some("product_id"),
    )
    .await;
    assert_problem(
        post(json!({"product_id": 42, "quantity": 1})).await,
        422,
        Some("product_id"),
    )
    .await;
    for q in [
        json!(0),
        json!(-1),
        json!(100),
        json!(1.5),
        json!("two"),
        json!(1e30),
    ] {
        assert_problem(
            post(json!({"product_id": mug, "quantity": q})).await,
            422,
            Some("quantity"),
        )
        .await;
    }
    let both = assert_problem(
        post(json!({"product_id": "", "quantity": 0})).await,
        422,
        None,
    )
    .await;
    assert_eq!(both["errors"].as_array().map(Vec::len), Some(2), "{both}");
    let r = app
        .http
        .post(format!("{}/v1/cart/items", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"product_id\": ")
        .send()
        .await
        .expect("send");
    assert_problem(r, 400, None).await;
    let r = app
        .http
        .post(format!("{}/v1/cart/items", app.base))
        .bearer_auth(&token)
        .body("product_id=x")
        .send()
        .await
        .expect("send");
    assert_problem(r, 415, None).await;

    // A line holds at most 99.
    assert_eq!(app.add("u1", &mug, 98).await.status(), StatusCode::OK);
    assert_problem(app.add("u1", &mug, 2).await, 422, Some("quantity")).await;

    // PATCH /v1/cart/items/{product}
    let patch = |path: String, body: Value| {
        let app = &app;
        async move { app.send(Method::PATCH, &path, t, Some(&body)).await }
    };
    let line = format!("/v1/cart/items/{mug}");
    assert_problem(patch(line.clone(), json!({})).await, 422, Some("quantity")).await;
    for q in [json!(-1), json!(100), json!("x"), json!(null)] {
        assert_problem(
            patch(line.clone(), json!({ "quantity": q })).await,
            422,
            Some("quantity"),
        )
        .await;
    }
    assert_problem(
        patch("/v1/cart/items/bad%20id".into(), json!({"quantity": 1})).await,
        422,
        Some("product"),
    )
    .await;

    // DELETE /v1/cart/items/{product}
    let r = app
        .send(Method::DELETE, "/v1/cart/items/bad%20id", t, None)
        .await;
    assert_problem(r, 422, Some("product")).await;
    let long = "x".repeat(65);
    let r = app
        .send(Method::DELETE, &format!("/v1/cart/items/{long}"), t, None)
        .await;
    assert_problem(r, 422, Some("product")).await;

    // Nothing of this changed the cart.
    let cart = app.cart("u1").await;
    assert_eq!(item(&cart, &mug)["quantity"], 98);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_products_and_other_currencies_are_422_on_product_id() {
    let app = spawn_app(Options::real()).await;
    assert_problem(
        app.add("u1", "no-such-product", 1).await,
        422,
        Some("product_id"),
    )
    .await;
    let eur = app.product("Mug", 1000, "EUR").await;
    let usd = app.product("Cup", 900, "USD").await;
    assert_eq!(app.add("u1", &eur, 1).await.status(), StatusCode::OK);
    let body = assert_problem(app.add("u1", &usd, 1).await, 422, Some("product_id")).await;
    assert!(body.to_string().contains("USD"), "{body}");
    // A cart that was emptied takes any currency again.
    app.clear("u1").await;
    let r = app.add("u1", &usd, 1).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cart: Value = r.json().await.expect("json");
    assert_eq!(cart["total"], json!({"minor": 900, "currency": "USD"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_invalid_token_is_401_on_every_endpoint() {
    let app = spawn_app(Options::real()).await;
    let mug = app.product("Mug", 1000, "EUR").await;
    let stranger = TestIssuer::new().token("u1", &[Role::Customer]);
    let body = json!({"product_id": mug, "quantity": 1});
    let patch = json!({"quantity": 1});
    let line = format!("/v1/cart/items/{mug}");
    let calls: Vec<(Method, &str, Option<&Value>)> = vec![
        (Method::GET, "/v1/cart", None),
        (Method::DELETE, "/v1/cart", None),
        (Method::POST, "/v1/cart/items", Some(&body)),
        (Method::PATCH, &line, Some(&patch)),
        (Method::DELETE, &line, None),
    ];
    for (method, path, body) in calls {
        for token in [None, Some("not.a.token"), Some(stranger.as_str())] {
            let r = app.send(method.clone(), path, token, body).await;
            assert_problem(r, 401, None).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_writes_are_never_stale_and_every_write_drops_the_cached_cart() {
    let app = spawn_app(Options::real()).await;
    let mug = app.product("Mug", 1000, "EUR").await;
    let user = "cached-1";
    assert!(!app.cached(user).await);
    app.cart(user).await;
    assert!(!app.cached(user).await, "a cart never saved is not cached");

    assert_eq!(app.add(user, &mug, 1).await.status(), StatusCode::OK);
    assert!(!app.cached(user).await, "dropped after POST");
    assert_eq!(item(&app.cart(user).await, &mug)["quantity"], 1);
    assert!(app.cached(user).await, "filled by GET");

    for q in 2..=10 {
        assert_eq!(app.set(user, &mug, q).await.status(), StatusCode::OK);
        assert!(!app.cached(user).await, "dropped after PATCH");
        assert_eq!(item(&app.cart(user).await, &mug)["quantity"], q);
        assert!(app.cached(user).await);
        assert_eq!(item(&app.cart(user).await, &mug)["quantity"], q, "hit");
    }
    assert_eq!(
        app.remove(user, &mug).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(!app.cached(user).await, "dropped after DELETE item");
    assert_eq!(app.cart(user).await["items"], json!([]));
    app.add(user, &mug, 1).await;
    app.cart(user).await;
    assert!(app.cached(user).await);
    assert_eq!(app.clear(user).await.status(), StatusCode::NO_CONTENT);
    assert!(!app.cached(user).await, "dropped after DELETE cart");
    assert_eq!(app.cart(user).await["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_and_writes_never_leave_a_stale_cart_cached() {
    let app = spawn_app(Options::real()).await;
    let mug = app.product("Mug", 1000, "EUR").await;
    let user = "racer";
    let writes = 20;
    let writer = async {
        for _ in 0..writes {
            assert_eq!(app.add(user, &mug, 1).await.status(), StatusCode::OK);
        }
    };
    let reader = async {
        for _ in 0..60 {
            app.cart(user).await;
        }
    };
    tokio::join!(writer, reader, async {
        for _ in 0..60 {
            app.cart(user).await;
        }
    });
    // Whatever interleaving happened, the next read (cached or not) is the final cart.
    assert_eq!(item(&app.cart(user).await, &mug)["quantity"], writes);
    assert_eq!(item(&app.cart(user).await, &mug)["quantity"], writes);
}

/// Concurrent writes to one cart: every one is applied (optimistic versions, retried).
async fn concurrent_adds(options: Options) {
    let app = spawn_app(options).await;
    let mug = app.product("Mug", 1000, "EUR").await;
    let pan = app.product("Pan", 500, "EUR").await;
    let n = 16;
    let adds = (0..n).map(|i| {
        let app = &app;
        let product = if i % 2 == 0 { mug.clone() } else { pan.clone() };
        async move { app.add("busy", &product, 1).await.status() }
    });
    let started = Instant::now();
    let statuses = futures::future::join_all(adds).await;
    println!("{n} concurrent adds to one cart in {:?}", started.elapsed());
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let cart = app.cart("busy").await;
    assert_eq!(item(&cart, &mug)["quantity"], n / 2);
    assert_eq!(item(&cart, &pan)["quantity"], n / 2);
    assert_eq!(cart["total"]["minor"], (n / 2) * 1000 + (n / 2) * 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_to_one_cart_are_all_counted_on_mariadb() {
    concurrent_adds(Options::real()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_to_one_cart_are_all_counted_on_sqlite() {
    concurrent_adds(Options::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cache_refuses_a_fill_older_than_the_last_invalidation() {
    use storefront_cart::adapters::redis::RedisCache;
    use storefront_cart::domain::Cart;
    use storefront_cart::ports::CartCache;

    let stack = storefront_tests::Stack::get();
    let ns = stack.redis_namespace().await.expect("namespace");
    let cache = RedisCache::new(
        &stack.redis_url,
        ns.prefix().trim_end_matches(':'),
        Duration::from_secs(60),
    )
    .expect("cache");
    let cart = |version| {
        let mut c = Cart::empty("u1", chrono::Utc::now());
        c.version = version;
        c
    };
    cache.check().await.expect("redis up");
    cache.put(&cart(1)).await;
    assert_eq!(cache.get("u1").await.map(|c| c.version), Some(1));
    assert!(cache.get("u2").await.is_none(), "per user");
    cache.invalidate("u1", 2).await;
    assert!(cache.get("u1").await.is_none(), "dropped");
    cache.put(&cart(1)).await;
    assert!(
        cache.get("u1").await.is_none(),
        "a reader that loaded v1 cannot put it back"
    );
    cache.put(&cart(2)).await;
    assert_eq!(cache.get("u1").await.map(|c| c.version), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_unreachable_carts_are_served_from_mariadb_quickly() {
    let app = spawn_app(Options {
        cache: Cache::Unreachable,
        ..Options::real()
    })
    .await;
    let started = Instant::now();
    flow(&app).await;
    let mug = app.product("Kettle", 2500, "EUR").await;
    app.add("u2", &mug, 2).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(item(&app.cart("u2").await, &mug)["quantity"], 2);
        slowest = slowest.max(t.elapsed());
    }
    println!(
        "redis unreachable: flow {:?}, slowest GET {slowest:?}",
        started.elapsed()
    );
    assert!(
        slowest < Duration::from_millis(500),
        "slowest GET {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_shows_current_prices_and_falls_back_to_captured_ones_without_search() {
    let app = spawn_app(Options::real()).await;
    let mug = app.product("Mug", 1000, "EUR").await;
    let plate = app.product("Plate", 500, "EUR").await;
    assert_eq!(app.add("u1", &mug, 2).await.status(), StatusCode::OK);
    assert_eq!(app.add("u1", &plate, 1).await.status(), StatusCode::OK);
    app.reprice(&mug, 1200).await;
    // Every line priced by one catalog read of all its products.
    let cart = app.cart("u1").await;
    assert_eq!(
        item(&cart, &mug)["unit_price"]["minor"],
        1200,
        "current price"
    );
    assert_eq!(item(&cart, &plate)["unit_price"]["minor"], 500);
    assert_eq!(cart["total"]["minor"], 2900);
    assert_eq!(
        app.remove("u1", &plate).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.cart("u1").await["total"]["minor"], 2400);

    app.catalog.stop().await;
    // Reads still work, with the price captured when the product was added.
    let cart = app.cart("u1").await;
    assert_eq!(
        item(&cart, &mug)["unit_price"]["minor"],
        1000,
        "captured price"
    );
    assert_eq!(cart["total"]["minor"], 2000);
    // Adding needs the catalog: 503, not 500.
    let body = assert_problem(app.add("u1", &mug, 1).await, 503, None).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("catalog")),
        "{body}"
    );
    // Changes that need no catalog still work.
    assert_eq!(app.set("u1", &mug, 3).await.status(), StatusCode::OK);
    assert_eq!(app.cart("u1").await["total"]["minor"], 3000);
    // The cart stays ready: carts are still shown, changed and emptied at checkout.
    let r = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_each_dependency_and_openapi_lists_the_endpoints() {
    let app = spawn_app(Options::real()).await;
    let r = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.expect("json");
    assert_eq!(report["checks"]["database"]["status"], "up", "{report}");
    assert!(
        report["checks"]["database"]["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("mysql://") && !t.contains("storefront@")),
        "the target is shown, without its password: {report}"
    );

    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    for path in ["/v1/cart", "/v1/cart/items", "/v1/cart/items/{product}"] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} in the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["CartView"].is_object());

    let metrics = storefront_tests::metrics_text(&app.http, &app.base).await;
    assert!(metrics.contains("http_requests_total"), "kit metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_gets_the_callers_cart_with_its_version() {
    let app = spawn_app(Options::real()).await;
    let mug = app.product("Mug", 1999, "EUR").await;
    app.add("buyer", &mug, 2).await;
    app.add("other", &mug, 1).await;
    let client = CartClient::new(&app.base, ClientSettings::default()).expect("client");
    let ctx = RequestContext::new_root().with_credentials(Credentials::bearer(&app.token("buyer")));

    let cart = client.get(&ctx).await.expect("get");
    assert_eq!(cart.items.len(), 1);
    let line = &cart.items[0];
    assert_eq!(line.product_id.as_str(), mug);
    assert_eq!(line.title, "Mug");
    assert_eq!(line.quantity, 2);
    assert_eq!(line.unit_price.minor, 1999);
    assert_eq!(line.line_total.minor, 3998);
    assert_eq!(cart.total.minor, 3998);
    assert_eq!(cart.total.currency.as_str(), "EUR");
    assert_eq!(cart.item_count, 2);

    assert_eq!(cart.version, 1, "one change so far");

    let anonymous = client
        .get(&RequestContext::new_root())
        .await
        .expect_err("no token");
    assert_eq!(anonymous.status(), Some(StatusCode::UNAUTHORIZED));
    assert!(matches!(anonymous, ClientError::Status { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_latency_of_a_ten_line_cart_cached_and_uncached() {
    let app = spawn_app(Options::real()).await;
    let mut products = Vec::new();
    for i in 0..10 {
        products.push(app.product(&format!("Item {i}"), 100 + i, "EUR").await);
    }
    for p in &products {
        assert_eq!(app.add("measured", p, 1).await.status(), StatusCode::OK);
    }
    let percentile = |mut v: Vec<Duration>, p: usize| {
        v.sort();
        v[(v.len() * p / 100).min(v.len() - 1)]
    };
    let mut hits = Vec::new();
    let mut misses = Vec::new();
    for round in 0..40 {
        // A write drops the cached cart: the next GET reads MariaDB, the one after Redis.
        app.set("measured", &products[0], 1 + round % 5).await;
        let t = Instant::now();
        app.cart("measured").await;
        misses.push(t.elapsed());
        let t = Instant::now();
        let cart = app.cart("measured").await;
        hits.push(t.elapsed());
        assert_eq!(cart["items"].as_array().map(Vec::len), Some(10));
    }
    let (hit50, hit95) = (percentile(hits.clone(), 50), percentile(hits, 95));
    let (miss50, miss95) = (percentile(misses.clone(), 50), percentile(misses, 95));
    println!(
        "GET /v1/cart, 10 lines priced by search: cached p50 {hit50:?} p95 {hit95:?}; \
         uncached p50 {miss50:?} p95 {miss95:?}"
    );
    assert!(hit95 < Duration::from_secs(1) && miss95 < Duration::from_secs(1));
}
