//! What the delivery service promises, each test on its own database and topics.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_delivery::domain::event::OrderEvent;

use crate::helpers::{Backends, Env, order_cancelled, order_confirmed, order_id, partner_body};

const MITTE: (f64, f64) = (52.520, 13.405);
const POTSDAM: (f64, f64) = (52.396, 13.058);

fn prefixes(p: &[&str]) -> Value {
    json!({ "postal_prefixes": p })
}

fn circle(at: (f64, f64), radius_km: f64) -> Value {
    json!({ "circle": {"lat": at.0, "lon": at.1, "radius_km": radius_km} })
}

fn account() -> String {
    storefront_tests::unique_name("partner", '-')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn area_availability_capacity_and_size_decide_the_partner() {
    let env = Env::new(Backends::Real, 300).await;
    let app = env.spawn().await;
    // Berlin by prefix, at most 3 items, one delivery at a time.
    let berlin = app
        .create_partner(&partner_body(&account(), true, prefixes(&["10"]), 1, 3))
        .await;
    // Potsdam by circle.
    let potsdam = app
        .create_partner(&partner_body(&account(), true, circle(POTSDAM, 5.0), 5, 10))
        .await;
    // Berlin too, but off shift.
    app.create_partner(&partner_body(&account(), false, prefixes(&["10"]), 5, 10))
        .await;

    let (by_prefix, by_circle, too_big, nowhere, full) =
        (order_id(), order_id(), order_id(), order_id(), order_id());
    env.publish(&order_confirmed(
        &by_circle,
        "u-1",
        "14467",
        Some(POTSDAM),
        2,
    ))
    .await;
    env.publish(&order_confirmed(&too_big, "u-1", "10115", Some(MITTE), 4))
        .await;
    env.publish(&order_confirmed(&nowhere, "u-1", "80331", None, 1))
        .await;
    env.publish(&order_confirmed(&by_prefix, "u-1", "10115", None, 3))
        .await;

    let assigned = env.wait_event(&by_prefix, "PartnerAssigned").await;
    assert_eq!(assigned.data["partner"]["id"], berlin["id"]);
    assert_eq!(assigned.data["user_id"], "u-1");
    assert_eq!(assigned.source, "delivery");
    let assigned = env.wait_event(&by_circle, "PartnerAssigned").await;
    assert_eq!(
        assigned.data["partner"]["id"], potsdam["id"],
        "27 km from Mitte: only the circle serves it"
    );
    let pending = env.wait_event(&too_big, "AssignmentPending").await;
    assert!(
        pending.data["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    env.wait_event(&nowhere, "AssignmentPending").await;

    // The Berlin partner now holds its one slot: the next Berlin order waits.
    env.publish(&order_confirmed(&full, "u-2", "10117", None, 1))
        .await;
    env.wait_event(&full, "AssignmentPending").await;
    let berlin_now = app.partner(berlin["id"].as_str().expect("id")).await;
    assert_eq!(berlin_now["load"], 1);
    let d = app.delivery(&by_prefix).await;
    assert_eq!(d["status"], "PARTNER_ASSIGNED");
    assert_eq!(d["partner"]["name"], berlin["name"]);
    assert_eq!(app.delivery(&too_big).await["status"], "PENDING");
    // The off-shift partner took nothing.
    for order in [&by_prefix, &by_circle, &too_big, &nowhere, &full] {
        assert_eq!(env.events_of(order).await.len(), 1, "one event per order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simultaneous_confirmations_never_overbook_a_partner() {
    let env = Env::new(Backends::Real, 300).await;
    let app = env.spawn().await;
    let partner = app
        .create_partner(&partner_body(&account(), true, prefixes(&["10"]), 5, 10))
        .await;
    let partner_id = partner["id"].as_str().expect("id").to_string();

    // 1) Straight at the database: 20 transactions at once.
    let orders: Vec<_> = (0..20)
        .map(|_| order_confirmed(&order_id(), "u-1", "10115", None, 1))
        .collect();
    let started = std::time::Instant::now();
    let outcomes = futures_join(orders.iter().map(|e| {
        let repo = app.state.repo.clone();
        let e = e.clone();
        async move {
            let Some(OrderEvent::Confirmed(order)) = OrderEvent::from_envelope(&e).expect("valid")
            else {
                panic!("confirmed")
            };
            repo.order_confirmed(e.id, &order).await.expect("assign")
        }
    }))
    .await;
    let assigned = outcomes
        .iter()
        .filter(|o| matches!(o, storefront_delivery::ports::Confirmed::Assigned(_)))
        .count();
    eprintln!(
        "20 concurrent assignment transactions: {:?}",
        started.elapsed()
    );
    assert_eq!(assigned, 5, "{outcomes:?}");
    assert_eq!(app.partner(&partner_id).await["load"], 5);

    // 2) Through Kafka with two replicas sharing the consumer group: a second partner with
    // 5 slots competes for the 15 pending orders (the worker wakes when it is created) and
    // 20 more orders spread over the partitions.
    let replica = env.spawn().await;
    let second = app
        .create_partner(&partner_body(&account(), true, prefixes(&["10"]), 5, 10))
        .await;
    let more: Vec<String> = (0..20).map(|_| order_id()).collect();
    let started = std::time::Instant::now();
    for id in &more {
        env.publish(&order_confirmed(id, "u-2", "10115", None, 1))
            .await;
    }
    for id in &more {
        storefront_tests::wait_until(Duration::from_secs(60), || async {
            Ok((!env.events_of(id).await.is_empty()).then_some(()))
        })
        .await
        .expect("every order got an event");
    }
    eprintln!(
        "20 orders through Kafka to their deliveries event: {:?}",
        started.elapsed()
    );
    let second_id = second["id"].as_str().expect("id");
    storefront_tests::wait_until(Duration::from_secs(30), || async {
        Ok((replica.partner(second_id).await["load"] == 5).then_some(()))
    })
    .await
    .expect("the second partner fills up");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let assignments: Vec<_> = env
        .all_events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "PartnerAssigned")
        .collect();
    let to = |id: &Value| {
        assignments
            .iter()
            .filter(|e| &e.data["partner"]["id"] == id)
            .count()
    };
    assert_eq!(to(&partner["id"]), 5);
    assert_eq!(to(&second["id"]), 5);
    assert_eq!(assignments.len(), 10, "40 orders, 10 slots");
    assert_eq!(app.partner(&partner_id).await["load"], 5);
    assert_eq!(app.partner(second_id).await["load"], 5);
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.collect();
    futures::future::join_all(handles).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_order_is_assigned_when_a_partner_comes_on_shift() {
    // The schedule is 5 minutes: only the wake-up on shift start can assign within the test.
    let env = Env::new(Backends::Real, 300).await;
    let app = env.spawn().await;
    let acc = account();
    let partner = app
        .create_partner(&partner_body(&acc, false, circle(MITTE, 10.0), 2, 10))
        .await;
    let order = order_id();
    env.publish(&order_confirmed(&order, "u-1", "10115", Some(MITTE), 1))
        .await;
    env.wait_event(&order, "AssignmentPending").await;
    assert_eq!(app.delivery(&order).await["status"], "PENDING");

    let me = app
        .call(
            Method::PUT,
            "/v1/partner/availability",
            &app.partner_token(&acc),
            Some(&json!({"on_shift": true})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(me["on_shift"], true);
    let assigned = env.wait_event(&order, "PartnerAssigned").await;
    assert_eq!(assigned.data["partner"]["id"], partner["id"]);
    let d = app.wait_status(&order, "PARTNER_ASSIGNED").await;
    assert!(d["assigned_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_retry_assigns_after_capacity_is_raised_elsewhere() {
    // A 1 s schedule picks up a partner whose capacity changed in the database behind the
    // service's back (no wake-up).
    let env = Env::new(Backends::Real, 1).await;
    let app = env.spawn().await;
    let partner = app
        .create_partner(&partner_body(&account(), true, prefixes(&["10"]), 1, 1))
        .await;
    let order = order_id();
    env.publish(&order_confirmed(&order, "u-1", "10115", None, 2))
        .await;
    env.wait_event(&order, "AssignmentPending").await;
    let mut p: storefront_delivery::domain::Partner =
        serde_json::from_value(partner.clone()).expect("partner");
    p.capacity.max_items = 5;
    assert!(app.state.repo.update_partner(&p).await.expect("update"));
    env.wait_event(&order, "PartnerAssigned").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_frees_the_slot_for_a_waiting_order() {
    let env = Env::new(Backends::Real, 300).await;
    let app = env.spawn().await;
    let partner = app
        .create_partner(&partner_body(&account(), true, prefixes(&["10"]), 1, 10))
        .await;
    let (first, second) = (order_id(), order_id());
    env.publish(&order_confirmed(&first, "u-1", "10115", None, 1))
        .await;
    env.wait_event(&first, "PartnerAssigned").await;
    env.publish(&order_confirmed(&second, "u-2", "10115", None, 1))
        .await;
    env.wait_event(&second, "AssignmentPending").await;

    env.publish(&order_cancelled(&first, "u-1")).await;
    let assigned = env.wait_event(&second, "PartnerAssigned").await;
    assert_eq!(assigned.data["partner"]["id"], partner["id"]);
    assert_eq!(
        app.wait_status(&first, "CANCELLED").await["reason"],
        "changed my mind"
    );
    assert_eq!(
        app.partner(partner["id"].as_str().expect("id")).await["load"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_confirmation_assigns_once() {
    let env = Env::new(Backends::Real, 300).await;
    let app = env.spawn().await;
    let partner = app
        .create_partner(&partner_body(&account(), true, prefixes(&["10"]), 3, 10))
        .await;
    let order = order_id();
    let event = order_confirmed(&order, "u-1", "10115", None, 1);
    env.publish(&event).await;
    env.publish(&event).await;
    env.wait_event(&order, "PartnerAssigned").await;
    // A later order proves both copies were consumed before we look.
    let marker = order_id();
    env.publish(&order_confirmed(&marker, "u-1", "10115", None, 1))
        .await;
    env.wait_event(&marker, "PartnerAssigned").await;
    assert_eq!(env.events_of(&order).await.len(), 1);
    assert_eq!(
        app.partner(partner["id"].as_str().expect("id")).await["load"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_steps_follow_the_state_machine_and_stay_private() {
    let env = Env::new(Backends::Real, 300).await;
    let app = env.spawn().await;
    let (a, b) = (account(), account());
    let partner_a = app
        .create_partner(&partner_body(&a, true, prefixes(&["10"]), 2, 10))
        .await;
    app.create_partner(&partner_body(&b, true, prefixes(&["99"]), 2, 10))
        .await;
    let order = order_id();
    env.publish(&order_confirmed(&order, "owner-1", "10115", None, 1))
        .await;
    env.wait_event(&order, "PartnerAssigned").await;
    let (token_a, token_b) = (app.partner_token(&a), app.partner_token(&b));
    let path = |step: &str| format!("/v1/partner/deliveries/{order}/{step}");

    // B cannot see or move A's delivery.
    app.call(
        Method::POST,
        &path("picked-up"),
        &token_b,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    let mine = app
        .call(
            Method::GET,
            "/v1/partner/deliveries",
            &token_b,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(mine["items"], json!([]));
    // A customer token is not a partner.
    app.call(
        Method::POST,
        &path("picked-up"),
        &app.customer("owner-1"),
        None,
        StatusCode::FORBIDDEN,
    )
    .await;

    // Illegal steps are 409, legal ones move on; the partner's list shows the delivery on its
    // way with the address.
    let steps = [
        ("delivered", StatusCode::CONFLICT),
        ("picked-up", StatusCode::OK),
        ("picked-up", StatusCode::CONFLICT),
        ("out-for-delivery", StatusCode::OK),
    ];
    for (step, expected) in steps {
        let d = app
            .call(Method::POST, &path(step), &token_a, None, expected)
            .await;
        if step == "picked-up" && expected == StatusCode::OK {
            assert_eq!(d["status"], "PICKED_UP");
        }
    }
    let mine = app
        .call(
            Method::GET,
            "/v1/partner/deliveries",
            &token_a,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(mine["items"][0]["order_id"], order.as_str());
    assert_eq!(mine["items"][0]["status"], "OUT_FOR_DELIVERY");
    assert_eq!(mine["items"][0]["address"]["postal_code"], "10115");
    for (step, expected) in [
        ("delivered", StatusCode::OK),
        ("delivered", StatusCode::CONFLICT),
    ] {
        app.call(Method::POST, &path(step), &token_a, None, expected)
            .await;
    }
    app.call(
        Method::POST,
        &format!("/v1/partner/deliveries/{}/picked-up", order_id()),
        &token_a,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;

    env.wait_event(&order, "DeliveryDelivered").await;
    let types: Vec<String> = env
        .events_of(&order)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "PartnerAssigned",
            "DeliveryPickedUp",
            "DeliveryOutForDelivery",
            "DeliveryDelivered"
        ]
    );
    let delivered = env.wait_event(&order, "DeliveryDelivered").await;
    assert_eq!(delivered.data["partner"]["id"], partner_a["id"]);
    assert_eq!(delivered.data["user_id"], "owner-1");
    assert!(delivered.data["at"].is_string());
    assert_eq!(
        app.partner(partner_a["id"].as_str().expect("id")).await["load"],
        0,
        "delivered frees the slot"
    );

    // The order's owner and admins see the delivery; other customers get 404.
    let seen = app
        .call(
            Method::GET,
            &format!("/v1/deliveries/{order}"),
            &app.customer("owner-1"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(seen["status"], "DELIVERED");
    app.call(
        Method::GET,
        &format!("/v1/deliveries/{order}"),
        &app.customer("someone-else"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    let r = app
        .send(Method::GET, &format!("/v1/deliveries/{order}"), None, None)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_problem_naming_the_field() {
    let env = Env::new(Backends::Real, 300).await;
    let app = env.spawn().await;
    let doc: Value = app
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .json()
        .await
        .expect("openapi");
    for path in [
        "/v1/partners",
        "/v1/partner/availability",
        "/v1/deliveries/{order_id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let r = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status(), StatusCode::OK, "database and Kafka are up");
    let admin = app.admin();
    let field_of = |body: &Value| {
        body["errors"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    let mut bad = partner_body(&account(), true, prefixes(&["10"]), 2, 10);
    bad["email"] = json!("not-an-email");
    let r = app
        .send(Method::POST, "/v1/partners", Some(&admin), Some(&bad))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(field_of(&r.json().await.expect("json")), "email");

    let mut bad = partner_body(&account(), true, prefixes(&["10"]), 2, 10);
    bad["capacity"]["max_concurrent"] = json!(-1);
    let body = app
        .call(
            Method::POST,
            "/v1/partners",
            &admin,
            Some(&bad),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(field_of(&body), "capacity.max_concurrent");

    let bad = partner_body(&account(), true, circle((95.0, 0.0), 5.0), 2, 10);
    let body = app
        .call(
            Method::POST,
            "/v1/partners",
            &admin,
            Some(&bad),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(field_of(&body), "service_area.circle.lat");

    let bad = partner_body(&account(), true, json!({}), 2, 10);
    let body = app
        .call(
            Method::POST,
            "/v1/partners",
            &admin,
            Some(&bad),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(field_of(&body), "service_area");

    // Not an admin, duplicate account, unknown partner, bad paging.
    let good = partner_body(&account(), true, prefixes(&["10"]), 2, 10);
    app.call(
        Method::POST,
        "/v1/partners",
        &app.customer("c"),
        Some(&good),
        StatusCode::FORBIDDEN,
    )
    .await;
    let created = app.create_partner(&good).await;
    app.call(
        Method::POST,
        "/v1/partners",
        &admin,
        Some(&good),
        StatusCode::CONFLICT,
    )
    .await;
    app.call(
        Method::GET,
        "/v1/partners/nope",
        &admin,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    let body = app
        .call(
            Method::GET,
            "/v1/partners?limit=0",
            &admin,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(field_of(&body), "limit");
    let page = app
        .call(
            Method::GET,
            "/v1/partners?limit=10",
            &admin,
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(page["items"][0]["id"], created["id"]);

    // PATCH validates what it changes and keeps the rest.
    let id = created["id"].as_str().expect("id");
    let body = app
        .call(
            Method::PATCH,
            &format!("/v1/partners/{id}"),
            &admin,
            Some(&json!({"capacity": {"max_concurrent": 0, "max_items": 1}})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(field_of(&body), "capacity.max_concurrent");
    let patched = app
        .call(
            Method::PATCH,
            &format!("/v1/partners/{id}"),
            &admin,
            Some(&json!({"name": "Renamed", "on_shift": false})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["on_shift"], false);
    assert_eq!(patched["email"], created["email"]);

    // Availability: wrong type, and an account without a profile.
    let token = app.partner_token(created["account_id"].as_str().expect("account"));
    let body = app
        .call(
            Method::PUT,
            "/v1/partner/availability",
            &token,
            Some(&json!({"on_shift": "yes"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(field_of(&body), "on_shift");
    app.call(
        Method::PUT,
        "/v1/partner/availability",
        &app.partner_token("no-profile"),
        Some(&json!({"on_shift": true})),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_twins_assign_and_deliver() {
    let env = Env::new(Backends::Embedded, 300).await;
    let app = env.spawn().await;
    let acc = account();
    app.create_partner(&partner_body(&acc, true, circle(MITTE, 10.0), 1, 10))
        .await;
    let (first, second) = (order_id(), order_id());
    env.publish(&order_confirmed(&first, "u-1", "10115", Some(MITTE), 1))
        .await;
    env.publish(&order_confirmed(&second, "u-1", "10117", Some(MITTE), 1))
        .await;
    env.wait_event(&first, "PartnerAssigned").await;
    env.wait_event(&second, "AssignmentPending").await;
    let token = app.partner_token(&acc);
    for step in ["picked-up", "out-for-delivery", "delivered"] {
        app.call(
            Method::POST,
            &format!("/v1/partner/deliveries/{first}/{step}"),
            &token,
            None,
            StatusCode::OK,
        )
        .await;
    }
    // Delivering freed the only slot: the waiting order gets it.
    env.wait_event(&second, "PartnerAssigned").await;
    env.wait_event(&first, "DeliveryDelivered").await;
    assert_eq!(env.all_events().await.len(), 6);
}
