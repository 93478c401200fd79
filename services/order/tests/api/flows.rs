//! The order service's behaviour, each test on a given set of backends.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_kit::event::Envelope;

use crate::helpers::{
    Backends, Options, jwt_negative_corpus, key, order_body, spawn, spawn_world, start_order,
};

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// product → stock (from catalog.v1) → cart → order → OrderPlaced + OrderConfirmed on the
/// orders topic, the cart emptied and the stock reserved.
pub async fn whole_flow(b: Backends) {
    let w = spawn_world(b).await;
    let mut events = w.events();
    let product = w.product("Blue Teapot", 2_450, 9).await;
    assert_eq!(
        w.wait_for_stock(&product).await,
        9,
        "stock from the catalog hint"
    );
    w.set_stock(&product, 5).await;
    let ada = w.customer("user-ada");
    w.add_to_cart(&ada, &product, 2).await;

    let r = w.place(&ada, &key(), &order_body()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let order = r.body.clone();
    let id = id_of(&order);
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/orders/{id}").as_str())
    );
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["user_id"], "user-ada");
    assert_eq!(order["item_count"], 2);
    assert_eq!(order["total"], json!({"minor": 4_900, "currency": "EUR"}));
    assert_eq!(order["lines"][0]["product_id"], product.as_str());
    assert_eq!(order["lines"][0]["unit_price"]["minor"], 2_450);
    assert_eq!(order["lines"][0]["line_total"]["minor"], 4_900);
    assert_eq!(order["shipping"]["country"], "DE");

    assert_eq!(w.stock(&product).await, Some(3), "two units reserved");
    w.wait_for_empty_cart(&ada).await;
    let got = w
        .order_call(Method::GET, &format!("/v1/orders/{id}"), Some(&ada), None)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, order, "read back as answered");

    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter()
                .any(|e| e.event_type == "OrderConfirmed" && e.subject == id)
        })
        .await;
    let placed = events.of("OrderPlaced", &id);
    assert_eq!(placed.len(), 1, "{:?}", events.types());
    let placed = placed[0];
    assert_eq!(placed.source, "order");
    assert_eq!(placed.data["status"], "PLACED");
    assert_eq!(placed.data["order_id"], id.as_str());
    assert_eq!(placed.data["user_id"], "user-ada");
    assert_eq!(placed.data["customer"]["email"], "ada@example.com");
    assert_eq!(placed.data["lines"][0]["quantity"], 2);
    assert_eq!(placed.data["total"]["minor"], 4_900);
    let confirmed = events.of("OrderConfirmed", &id);
    assert_eq!(confirmed[0].data["status"], "CONFIRMED");
    let placed_at = events
        .seen
        .iter()
        .position(|e| e.event_type == "OrderPlaced" && e.subject == id);
    let confirmed_at = events
        .seen
        .iter()
        .position(|e| e.event_type == "OrderConfirmed" && e.subject == id);
    assert!(placed_at < confirmed_at, "placed before confirmed");
    events
        .until(Duration::from_secs(30), |seen| {
            seen.iter().any(|e| {
                e.event_type == "StockChanged" && e.subject == product && e.data["available"] == 3
            })
        })
        .await;
}

/// The same key and body replays the first answer; another body with that key is 422; no key
/// is 400 naming the header.
pub async fn idempotent_retry_replays(b: Backends) {
    let w = spawn_world(b).await;
    let product = w.stocked_product("Green Mug", 900, 10).await;
    let bo = w.customer("user-bo");
    w.add_to_cart(&bo, &product, 1).await;
    let k = key();
    let first = w.place(&bo, &k, &order_body()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);

    // The cart is emptied by the order's event: only a replay can answer 201.
    w.wait_for_empty_cart(&bo).await;
    let again = w.place(&bo, &k, &order_body()).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.body, first.body, "the first answer, byte for byte");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // With the cart filled again the key is found taken by the placing transaction: still
    // the replay, and nothing reserved or ordered twice.
    w.add_to_cart(&bo, &product, 2).await;
    let again = w.place(&bo, &k, &order_body()).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.body, first.body, "the first answer, byte for byte");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let mut other = order_body();
    other["shipping"]["city"] = json!("Hamburg");
    let r = w.place(&bo, &k, &other).await;
    r.assert_problem(422, Some("Idempotency-Key"));

    let r = w
        .call(
            Method::POST,
            &format!("{}/v1/orders", w.order),
            Some(&bo),
            &[],
            Some(&order_body()),
        )
        .await;
    r.assert_problem(400, Some("Idempotency-Key"));

    let list = w
        .order_call(Method::GET, "/v1/orders", Some(&bo), None)
        .await;
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.body
    );
    assert_eq!(w.stock(&product).await, Some(9), "reserved once");

    // With the cart service unreachable, a retry still replays; a new key cannot place.
    let mut settings = w.settings.clone();
    settings.cart_url = format!("http://127.0.0.1:{}", closed_port());
    settings.relay_enabled = false;
    settings.consumer_group = format!("{}-cartless", settings.consumer_group);
    let cartless = start_order(&settings, &w.platform, &w.issuer)
        .await
        .expect("an instance without its cart");
    let url = format!("{cartless}/v1/orders");
    let headers = [("idempotency-key", k.as_str())];
    let r = w
        .call(Method::POST, &url, Some(&bo), &headers, Some(&order_body()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body, first.body);
    let fresh = key();
    let headers = [("idempotency-key", fresh.as_str())];
    let r = w
        .call(Method::POST, &url, Some(&bo), &headers, Some(&order_body()))
        .await;
    r.assert_problem(503, None);

    // Another user with the same key is another order.
    let cy = w.customer("user-cy");
    w.add_to_cart(&cy, &product, 1).await;
    let r = w.place(&cy, &k, &order_body()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_ne!(r.body["id"], first.body["id"]);
}

/// 50 users order the last 10 units at once: exactly 10 win, 40 get 409, stock ends at 0.
pub async fn concurrent_orders_never_oversell(b: Backends) {
    let w = spawn_world(b).await;
    let product = w.stocked_product("Last Lamp", 5_000, 1_000).await;
    let users: Vec<String> = (0..50).map(|n| w.customer(&format!("buyer-{n}"))).collect();
    for t in &users {
        w.add_to_cart(t, &product, 1).await;
    }
    w.set_stock(&product, 10).await;
    let body = order_body();
    let tasks = users.iter().map(|t| {
        let (w, body) = (&w, &body);
        async move { w.place(t, &key(), body).await }
    });
    let answers = futures::future::join_all(tasks).await;
    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let conflicts: Vec<&crate::helpers::Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CONFLICT)
        .collect();
    let others: Vec<_> = answers
        .iter()
        .filter(|a| a.status != StatusCode::CREATED && a.status != StatusCode::CONFLICT)
        .map(|a| (a.status, a.body.clone()))
        .collect();
    assert!(others.is_empty(), "only 201 or 409: {others:?}");
    assert_eq!(created, 10);
    assert_eq!(conflicts.len(), 40);
    for c in &conflicts {
        c.assert_problem(409, Some("product_id"));
        assert!(
            c.body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(&product),
            "names the product: {}",
            c.body
        );
    }
    assert_eq!(w.stock(&product).await, Some(0));
}

/// With the relay off, a placed order's events wait in the outbox (nothing on the topic); an
/// instance with the relay on publishes them exactly once.
pub async fn relay_after_crash_publishes_exactly_once(b: Backends) {
    let mut options = Options::new(b);
    options.relay = false;
    let w = spawn(options).await;
    let mut events = w.events();
    let product = w.stocked_product("Crash Kettle", 3_000, 4).await;
    let di = w.customer("user-di");
    w.add_to_cart(&di, &product, 1).await;
    let r = w.place(&di, &key(), &order_body()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = id_of(&r.body);
    events.drain(Duration::from_secs(3)).await;
    assert!(
        events.of("OrderPlaced", &id).is_empty(),
        "nothing published yet"
    );

    // "Restart": a second instance on the same database with the relay on.
    let mut settings = w.settings.clone();
    settings.relay_enabled = true;
    settings.consumer_group = format!("{}-2", settings.consumer_group);
    start_order(&settings, &w.platform, &w.issuer)
        .await
        .expect("second instance");
    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter()
                .any(|e| e.event_type == "OrderConfirmed" && e.subject == id)
        })
        .await;
    events.drain(Duration::from_secs(3)).await;
    assert_eq!(
        events.of("OrderPlaced", &id).len(),
        1,
        "{:?}",
        events.types()
    );
    assert_eq!(
        events.of("OrderConfirmed", &id).len(),
        1,
        "{:?}",
        events.types()
    );
}

/// User B cannot see or cancel user A's order (404), and lists only their own.
pub async fn other_users_orders_are_invisible(b: Backends) {
    let w = spawn_world(b).await;
    let product = w.stocked_product("Private Pan", 1_000, 10).await;
    let a = w.customer("user-a");
    let bee = w.customer("user-b");
    w.add_to_cart(&a, &product, 1).await;
    let r = w.place(&a, &key(), &order_body()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = id_of(&r.body);

    let r = w
        .order_call(Method::GET, &format!("/v1/orders/{id}"), Some(&bee), None)
        .await;
    r.assert_problem(404, None);
    let r = w.cancel(&bee, &id, None).await;
    r.assert_problem(404, None);
    let r = w
        .order_call(Method::GET, "/v1/orders", Some(&bee), None)
        .await;
    assert_eq!(r.body["items"], json!([]), "{}", r.body);
    let r = w
        .order_call(Method::GET, "/v1/orders", Some(&a), None)
        .await;
    assert_eq!(r.body["items"][0]["id"], id.as_str());
    let r = w
        .order_call(
            Method::GET,
            &format!("/v1/orders/{id}"),
            Some(&w.admin()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "admin sees all");
    let r = w
        .order_call(Method::GET, "/v1/orders/not-an-id", Some(&a), None)
        .await;
    r.assert_problem(404, None);
    assert_eq!(
        w.stock(&product).await,
        Some(9),
        "B's cancel released nothing"
    );
}

/// The status machine: illegal moves are 409, legal ones apply and emit OrderStatusChanged.
pub async fn status_changes_follow_the_machine(b: Backends) {
    let w = spawn_world(b).await;
    let mut events = w.events();
    let product = w.stocked_product("Status Sieve", 700, 10).await;
    let u = w.customer("user-s");
    w.add_to_cart(&u, &product, 1).await;
    let id = id_of(&w.place(&u, &key(), &order_body()).await.body);
    let path = format!("/v1/orders/{id}/status");
    let admin = w.admin();

    // Illegal moves and a customer's attempt are refused; legal moves apply in turn.
    let steps: [(&str, &str, u16); 5] = [
        (&admin, "DELIVERED", 409),
        (&admin, "CONFIRMED", 409),
        (&u, "PARTNER_ASSIGNED", 403),
        (&admin, "PARTNER_ASSIGNED", 200),
        (&admin, "PICKED_UP", 200),
    ];
    for (token, status, expected) in steps {
        let r = w
            .order_call(
                Method::POST,
                &path,
                Some(token),
                Some(&json!({ "status": status })),
            )
            .await;
        if expected == 200 {
            assert_eq!(r.status, StatusCode::OK, "{status}: {}", r.body);
            assert_eq!(r.body["status"], status);
        } else {
            r.assert_problem(expected, None);
        }
    }
    // Too late to cancel once picked up.
    let r = w.cancel(&u, &id, None).await;
    r.assert_problem(409, None);
    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter()
                .filter(|e| e.event_type == "OrderStatusChanged" && e.subject == id)
                .count()
                >= 2
        })
        .await;
    let changed = events.of("OrderStatusChanged", &id);
    assert_eq!(changed[0].data["from"], "CONFIRMED");
    assert_eq!(changed[0].data["to"], "PARTNER_ASSIGNED");
    assert_eq!(changed[0].data["actor"], "admin");
    assert_eq!(changed[1].data["to"], "PICKED_UP");
    assert_eq!(changed[0].data["customer"]["name"], "Ada Lovelace");
}

/// Cancelling releases the reserved stock in the same transaction and emits OrderCancelled.
pub async fn cancel_releases_stock(b: Backends) {
    let w = spawn_world(b).await;
    let mut events = w.events();
    let product = w.stocked_product("Cancel Cup", 1_250, 5).await;
    let u = w.customer("user-c");
    w.add_to_cart(&u, &product, 2).await;
    let id = id_of(&w.place(&u, &key(), &order_body()).await.body);
    assert_eq!(w.stock(&product).await, Some(3));
    let r = w
        .cancel(&u, &id, Some(&json!({"reason": "changed my mind"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "CANCELLED");
    assert_eq!(w.stock(&product).await, Some(5), "released");
    let r = w.cancel(&u, &id, None).await;
    r.assert_problem(409, None);
    assert_eq!(w.stock(&product).await, Some(5), "released once");
    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter()
                .any(|e| e.event_type == "OrderCancelled" && e.subject == id)
        })
        .await;
    let c = events.of("OrderCancelled", &id)[0];
    assert_eq!(c.data["from"], "CONFIRMED");
    assert_eq!(c.data["reason"], "changed my mind");
    assert_eq!(c.data["lines"][0]["quantity"], 2);
    assert_eq!(c.data["total"]["minor"], 2_500);
}

/// A call expected to fail: method, path, token, body, status and the field named (if any).
type BadCall<'a> = (
    Method,
    &'a str,
    &'a str,
    Option<Value>,
    u16,
    Option<&'static str>,
);

fn delivery_event(kind: &str, order_id: &str, user: &str) -> Envelope {
    Envelope::new(
        kind,
        "delivery",
        order_id,
        json!({
            "order_id": order_id, "user_id": user,
            "partner": {"id": "partner-7", "name": "Pat Rider", "email": "pat@example.com", "phone": "+49 170 1"},
            "assigned_at": chrono::Utc::now(), "at": chrono::Utc::now()
        }),
    )
}

/// deliveries.v1 drives the status: PartnerAssigned → PARTNER_ASSIGNED (once, even when
/// redelivered), DeliveryPickedUp → PICKED_UP; unknown types are skipped.
pub async fn delivery_events_drive_the_status(b: Backends) {
    let w = spawn_world(b).await;
    let mut events = w.events();
    let product = w.stocked_product("Delivered Dish", 800, 5).await;
    let u = w.customer("user-d");
    w.add_to_cart(&u, &product, 1).await;
    let id = id_of(&w.place(&u, &key(), &order_body()).await.body);

    w.publish_delivery(&Envelope::new(
        "SomethingNew",
        "delivery",
        id.as_str(),
        json!({"order_id": id}),
    ))
    .await;
    let assigned = delivery_event("PartnerAssigned", &id, "user-d");
    w.publish_delivery(&assigned).await;
    w.publish_delivery(&assigned).await;
    let o = w
        .wait_for_order(&id, |o| o["status"] == "PARTNER_ASSIGNED")
        .await;
    assert_eq!(o["partner"]["id"], "partner-7");
    // The same transition again under a new event id is a no-op too.
    w.publish_delivery(&delivery_event("PartnerAssigned", &id, "user-d"))
        .await;
    w.publish_delivery(&delivery_event("DeliveryPickedUp", &id, "user-d"))
        .await;
    w.wait_for_order(&id, |o| o["status"] == "PICKED_UP").await;
    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter().any(|e| {
                e.event_type == "OrderStatusChanged"
                    && e.subject == id
                    && e.data["to"] == "PICKED_UP"
            })
        })
        .await;
    events.drain(Duration::from_secs(2)).await;
    let changed = events.of("OrderStatusChanged", &id);
    assert_eq!(changed.len(), 2, "one per transition: {:?}", events.types());
    assert_eq!(changed[0].data["to"], "PARTNER_ASSIGNED");
    assert_eq!(changed[0].data["actor"], "delivery");
    assert_eq!(changed[0].data["partner"]["email"], "pat@example.com");
}

/// Newest first, limit capped, opaque cursor; a bad cursor or limit is 400 naming it.
pub async fn history_pages_newest_first(b: Backends) {
    let w = spawn_world(b).await;
    let product = w.stocked_product("Paged Plate", 300, 20).await;
    let u = w.customer("user-p");
    let mut ids = Vec::new();
    for _ in 0..3 {
        w.add_to_cart(&u, &product, 1).await;
        let r = w.place(&u, &key(), &order_body()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        ids.push(id_of(&r.body));
        w.wait_for_empty_cart(&u).await;
    }
    ids.reverse();
    let page = w
        .order_call(Method::GET, "/v1/orders?limit=2", Some(&u), None)
        .await;
    let got: Vec<&str> = page.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got, vec![ids[0].as_str(), ids[1].as_str()]);
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    let next = w
        .order_call(
            Method::GET,
            &format!("/v1/orders?limit=2&cursor={cursor}"),
            Some(&u),
            None,
        )
        .await;
    assert_eq!(next.body["items"][0]["id"], ids[2].as_str());
    assert_eq!(next.body["items"].as_array().map(Vec::len), Some(1));
    assert!(next.body.get("next_cursor").is_none(), "{}", next.body);
    let capped = w
        .order_call(Method::GET, "/v1/orders?limit=100000", Some(&u), None)
        .await;
    assert_eq!(capped.status, StatusCode::OK);
    for bad in ["cursor=zzz", "cursor=bm90LWEtY3Vyc29y", "cursor=%00"] {
        let r = w
            .order_call(Method::GET, &format!("/v1/orders?{bad}"), Some(&u), None)
            .await;
        r.assert_problem(400, Some("cursor"));
    }
    for bad in ["limit=0", "limit=-1", "limit=ten", "limit="] {
        let r = w
            .order_call(Method::GET, &format!("/v1/orders?{bad}"), Some(&u), None)
            .await;
        r.assert_problem(400, Some("limit"));
    }
}

/// Bad input on every endpoint: 400/422 problems naming the field, never a 500.
pub async fn bad_input_is_named(b: Backends) {
    let w = spawn_world(b).await;
    let u = w.customer("user-x");
    let admin = w.admin();
    let place = |body: Value| {
        let (w, u) = (&w, &u);
        async move { w.place(u, &key(), &body).await }
    };
    // Empty cart.
    place(order_body()).await.assert_problem(422, Some("cart"));
    // Field errors.
    let mut b1 = order_body();
    b1["customer"]["email"] = json!("not-an-email");
    b1["shipping"]["country"] = json!("Germany");
    let r = place(b1).await;
    r.assert_problem(422, Some("customer.email"));
    r.assert_problem(422, Some("shipping.country"));
    let mut b2 = order_body();
    b2["shipping"].as_object_mut().expect("obj").remove("city");
    place(b2).await.assert_problem(422, Some("shipping.city"));
    let mut b3 = order_body();
    b3["shipping"]["postal_code"] = json!(10115);
    place(b3)
        .await
        .assert_problem(422, Some("shipping.postal_code"));
    let mut b4 = order_body();
    b4["coupon"] = json!("FREE");
    place(b4).await.assert_problem(422, None);
    // Malformed JSON.
    let r = w
        .http
        .post(format!("{}/v1/orders", w.order))
        .bearer_auth(&u)
        .header("idempotency-key", key())
        .header("content-type", "application/json")
        .body("{\"customer\":")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Bad idempotency key.
    let r = w
        .call(
            Method::POST,
            &format!("{}/v1/orders", w.order),
            Some(&u),
            &[("idempotency-key", "has spaces in it")],
            Some(&order_body()),
        )
        .await;
    r.assert_problem(400, Some("Idempotency-Key"));
    // Status, cancel and stock bodies and paths: (method, path, token, body, status, field).
    let some = uuid::Uuid::now_v7();
    let status = format!("/v1/orders/{some}/status");
    let cancel = format!("/v1/orders/{some}/cancel");
    let cases: Vec<BadCall> = vec![
        (
            Method::POST,
            &status,
            &admin,
            Some(json!({"status": "LOST"})),
            422,
            Some("status"),
        ),
        (
            Method::POST,
            &status,
            &admin,
            Some(json!({})),
            422,
            Some("status"),
        ),
        (
            Method::POST,
            &cancel,
            &u,
            Some(json!({"reason": "x".repeat(501)})),
            422,
            Some("reason"),
        ),
        (
            Method::POST,
            &cancel,
            &u,
            Some(json!({"why": 1})),
            422,
            None,
        ),
        (
            Method::POST,
            &status,
            &admin,
            Some(json!({"status": "CONFIRMED"})),
            404,
            None,
        ),
        (
            Method::PUT,
            "/v1/stock/p-1",
            &admin,
            Some(json!({"available": -1})),
            422,
            Some("available"),
        ),
        (
            Method::PUT,
            "/v1/stock/p-1",
            &admin,
            Some(json!({"available": "many"})),
            422,
            Some("available"),
        ),
        (
            Method::PUT,
            "/v1/stock/bad%20id",
            &admin,
            Some(json!({"available": 1})),
            400,
            Some("product_id"),
        ),
        (
            Method::GET,
            "/v1/stock/bad%20id",
            &admin,
            None,
            400,
            Some("product_id"),
        ),
        (Method::GET, "/v1/stock/p-unknown", &admin, None, 404, None),
        (
            Method::PUT,
            "/v1/stock/p-1",
            &u,
            Some(json!({"available": 1})),
            403,
            None,
        ),
    ];
    for (method, path, token, body, expected, field) in cases {
        let r = w.order_call(method, path, Some(token), body.as_ref()).await;
        r.assert_problem(expected, field);
    }
    // A product with no units left cannot be ordered: 409 naming it.
    let ghost = w.product("Ghost Glass", 100, 1).await;
    w.wait_for_stock(&ghost).await;
    w.add_to_cart(&u, &ghost, 1).await;
    w.set_stock(&ghost, 0).await;
    let r = place(order_body()).await;
    r.assert_problem(409, Some("product_id"));
    // Nor can a product without any stock row.
    w.delete_stock_row(&ghost).await;
    let r = place(order_body()).await;
    r.assert_problem(409, Some("product_id"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&ghost),
        "{}",
        r.body
    );
}

/// Every endpoint rejects each token of the negative corpus with 401.
pub async fn forged_tokens_are_rejected(b: Backends) {
    let w = spawn_world(b).await;
    let some = uuid::Uuid::now_v7();
    for (name, token) in jwt_negative_corpus(&w.issuer) {
        let calls: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, "/v1/orders".into(), None),
            (Method::POST, "/v1/orders".into(), Some(order_body())),
            (Method::GET, format!("/v1/orders/{some}"), None),
            (Method::POST, format!("/v1/orders/{some}/cancel"), None),
            (
                Method::POST,
                format!("/v1/orders/{some}/status"),
                Some(json!({"status": "CONFIRMED"})),
            ),
            (Method::GET, "/v1/stock/p-1".into(), None),
            (
                Method::PUT,
                "/v1/stock/p-1".into(),
                Some(json!({"available": 1})),
            ),
        ];
        for (method, path, body) in calls {
            let r = w
                .call(
                    method.clone(),
                    &format!("{}{path}", w.order),
                    Some(&token),
                    &[("idempotency-key", "k-1")],
                    body.as_ref(),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{name}: {method} {path}: {}",
                r.body
            );
        }
    }
    let r = w.order_call(Method::GET, "/v1/orders", None, None).await;
    r.assert_problem(401, None);
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
