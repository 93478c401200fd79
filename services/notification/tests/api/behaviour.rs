//! What the notification service promises, each test on its own database, topics and
//! mailbox.

use std::time::Duration;

use storefront_kit::auth::Role;
use storefront_kit::backend::MailUrl;

use crate::helpers::{Backends, delivery_event, order_cancelled, order_confirmed, order_id, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_and_delivery_emails_reach_the_customer() {
    let mailbox = storefront_tests::Stack::get().mailbox();
    let app = spawn(Backends::Real, |_| {}).await;
    let order = order_id();
    let started = std::time::Instant::now();
    app.publish_order(&order_confirmed(&order, mailbox.address()))
        .await;
    let confirmation = mailbox
        .wait_for(1, Duration::from_secs(30))
        .await
        .expect("confirmation");
    eprintln!(
        "OrderConfirmed on Kafka to the email in mailpit: {:?}",
        started.elapsed()
    );
    let m = &confirmation[0];
    assert_eq!(m.subject, format!("Your order {order} is confirmed"));
    assert_eq!(m.to[0].address, mailbox.address());
    assert_eq!(m.to[0].name, "Ann Example");
    assert!(m.from.address.starts_with("no-reply@"), "{:?}", m.from);
    assert!(m.text.contains("Hello Ann Example,"), "{}", m.text);
    assert!(
        m.text.contains("2 x Desk Lamp (LAMP-1) at €19.99 = €39.98"),
        "{}",
        m.text
    );
    assert!(m.text.contains("Total: €42.48"), "{}", m.text);
    assert!(m.html.contains("<strong>€42.48</strong>"), "{}", m.html);
    assert!(m.html.contains("10115 Berlin"), "{}", m.html);

    app.publish_delivery(&delivery_event("PartnerAssigned", &order))
        .await;
    let all = mailbox
        .wait_for(2, Duration::from_secs(30))
        .await
        .expect("assignment");
    let m = all
        .iter()
        .find(|m| m.subject.contains("will deliver"))
        .expect("assignment email");
    assert_eq!(
        m.subject,
        format!("Rita Rider will deliver your order {order}")
    );
    assert_eq!(m.to[0].address, mailbox.address());
    for expected in [
        "Rita Rider",
        "rita@partners.test",
        "+49 30 1234",
        "€42.48",
        "3 items",
    ] {
        assert!(m.text.contains(expected), "{expected} in {}", m.text);
        assert!(m.html.contains(expected), "{expected} in {}", m.html);
    }

    // The later steps of the delivery, and a cancellation.
    app.publish_delivery(&delivery_event("DeliveryPickedUp", &order))
        .await;
    app.publish_delivery(&delivery_event("DeliveryOutForDelivery", &order))
        .await;
    app.publish_delivery(&delivery_event("DeliveryDelivered", &order))
        .await;
    let cancelled = order_id();
    app.publish_order(&order_cancelled(&cancelled, mailbox.address()))
        .await;
    let all = mailbox
        .wait_for(5, Duration::from_secs(30))
        .await
        .expect("five emails");
    let mut subjects: Vec<_> = all.iter().map(|m| m.subject.clone()).collect();
    subjects.sort();
    let mut expected = vec![
        format!("Rita Rider will deliver your order {order}"),
        format!("Your order {cancelled} was cancelled"),
        format!("Your order {order} is confirmed"),
        format!("Your order {order} is out for delivery"),
        format!("Your order {order} was delivered"),
    ];
    expected.sort();
    assert_eq!(subjects, expected, "picked-up sends nothing");
    let cancel = all
        .iter()
        .find(|m| m.subject.contains("cancelled"))
        .expect("cancel");
    assert!(
        cancel.text.contains("cancelled: out of stock"),
        "{}",
        cancel.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_sends_no_second_email() {
    let mailbox = storefront_tests::Stack::get().mailbox();
    let app = spawn(Backends::Real, |_| {}).await;
    let order = order_id();
    let event = order_confirmed(&order, mailbox.address());
    app.publish_order(&event).await;
    app.wait_logged(&event.id.to_string()).await;
    // The same event again (a redelivery), then a marker behind it on the same partition.
    app.publish_order(&event).await;
    let marker = order_cancelled(&order, mailbox.address());
    app.publish_order(&marker).await;
    let logged = app.wait_logged(&marker.id.to_string()).await;
    assert_eq!(logged["status"], "sent");
    let messages = mailbox
        .wait_for(2, Duration::from_secs(30))
        .await
        .expect("two");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = mailbox.message_ids().await.expect("ids");
    assert_eq!(
        ids.len(),
        2,
        "{:?}",
        messages.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let log = app.notifications().await;
    let entries = log["items"].as_array().expect("items");
    assert_eq!(entries.len(), 2);
    assert!(log.get("mailbox").is_none(), "no file mailbox behind SMTP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_smtp_is_retried_then_dead_lettered() {
    let app = spawn(Backends::Real, |s| {
        // Nothing listens on port 1.
        s.mail_url = Some(MailUrl::parse("smtp://127.0.0.1:1").expect("url"));
        s.max_attempts = 3;
        s.retry_base_ms = 100;
        s.smtp_timeout_secs = 2;
    })
    .await;
    let order = order_id();
    let event = order_confirmed(&order, "ann@example.com");
    let started = std::time::Instant::now();
    app.publish_order(&event).await;
    let dead = app.wait_dead_letter(&event.id.to_string()).await;
    assert_eq!(dead.event_type, "NotificationFailed");
    assert_eq!(dead.source, "notification");
    assert_eq!(dead.subject, order);
    assert_eq!(dead.data["template"], "order_confirmation");
    assert_eq!(dead.data["recipient"], "ann@example.com");
    assert_eq!(dead.data["attempts"], 3);
    assert_eq!(dead.data["event"]["type"], "OrderConfirmed");
    assert!(dead.data["reason"].as_str().is_some_and(|r| !r.is_empty()));
    // Back-off of 100 ms then 200 ms between the three attempts.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let logged = app.wait_logged(&event.id.to_string()).await;
    assert_eq!(logged["status"], "failed");
    assert_eq!(logged["attempts"], 3);
    // A redelivery neither retries nor dead-letters again.
    app.publish_order(&event).await;
    let marker = order_cancelled(&order, "ann@example.com");
    app.publish_order(&marker).await;
    app.wait_dead_letter(&marker.id.to_string()).await;
    assert_eq!(app.dead_letter_count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_mailbox_twin_writes_one_eml_per_message() {
    let app = spawn(Backends::Embedded, |_| {}).await;
    let order = order_id();
    let event = order_confirmed(&order, "ann@example.com");
    app.publish_order(&event).await;
    app.publish_delivery(&delivery_event("PartnerAssigned", &order))
        .await;
    let dir = app.dir.path().join("mailbox");
    let files = storefront_tests::wait_until(Duration::from_secs(30), || {
        let dir = dir.clone();
        async move {
            let files: Vec<_> = std::fs::read_dir(&dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect();
            Ok((files.len() == 2).then_some(files))
        }
    })
    .await
    .expect("two .eml files");
    let raw: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read"))
        .collect();
    let confirmation = raw
        .iter()
        .find(|r| r.contains(&format!("Subject: Your order {order} is confirmed")))
        .expect("confirmation .eml");
    assert!(
        confirmation.contains("multipart/alternative"),
        "{confirmation}"
    );
    assert!(confirmation.contains("text/plain") && confirmation.contains("text/html"));
    assert!(confirmation.contains("ann@example.com"));
    assert!(confirmation.contains(&format!("Message-ID: <{}@storefront>", event.id)));

    // The admin view lists the sent-log and the mailbox; others may not look.
    let body = app.notifications().await;
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2));
    let mailbox = body["mailbox"]
        .as_array()
        .expect("mailbox in embedded mode");
    assert_eq!(mailbox.len(), 2);
    assert!(
        mailbox
            .iter()
            .any(|m| m["subject"] == format!("Rita Rider will deliver your order {order}"))
    );
    let doc: serde_json::Value = app
        .get("/openapi.json", None)
        .await
        .json()
        .await
        .expect("openapi");
    assert!(doc["paths"].get("/v1/notifications").is_some());
    assert_eq!(app.get("/readyz", None).await.status(), 200);
    let customer = app.issuer.token("c-1", &[Role::Customer]);
    assert_eq!(
        app.get("/v1/notifications", Some(&customer)).await.status(),
        403
    );
    assert_eq!(app.get("/v1/notifications", None).await.status(), 401);
    let r = app
        .get("/v1/notifications?limit=0", Some(&app.admin()))
        .await;
    assert_eq!(r.status(), 422);
    let problem: serde_json::Value = r.json().await.expect("json");
    assert_eq!(problem["errors"][0]["field"], "limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_event_for_an_unknown_order_is_dead_lettered_after_the_grace() {
    let app = spawn(Backends::Embedded, |s| s.unknown_order_grace_secs = 1).await;
    let event = delivery_event("PartnerAssigned", &order_id());
    app.publish_delivery(&event).await;
    let dead = app.wait_dead_letter(&event.id.to_string()).await;
    assert!(
        dead.data["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unknown")),
        "{dead:?}"
    );
    assert_eq!(dead.data["attempts"], 0);
}
