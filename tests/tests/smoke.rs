//! Smoke tests of the local stack: one per component, each through the crate our
//! services use, each round-tripping real data through the real server.
//!
//! Needs `tests/stack/stack up`; fails (never skips) without it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use futures::StreamExt as _;
use serde_json::json;
use storefront_tests::Stack;

// ---- MariaDB via sqlx ---------------------------------------------------------------

#[tokio::test]
async fn mariadb_commits_and_rolls_back_transactions_through_sqlx() -> anyhow::Result<()> {
    use sqlx::Row as _;
    let db = Stack::get().mysql_database().await?;
    let pool = db.pool().await?;

    sqlx::query(
        "CREATE TABLE cart_items (
            id BIGINT AUTO_INCREMENT PRIMARY KEY,
            sku VARCHAR(64) NOT NULL,
            quantity INT NOT NULL,
            UNIQUE KEY sku_unique (sku)
        ) ENGINE=InnoDB",
    )
    .execute(&pool)
    .await?;

    // Committed transaction: rows are visible inside it and after commit.
    let mut tx = pool.begin().await?;
    for (sku, qty) in [("SKU-1", 2), ("SKU-2", 1), ("SKU-3", 5)] {
        sqlx::query("INSERT INTO cart_items (sku, quantity) VALUES (?, ?)")
            .bind(sku)
            .bind(qty)
            .execute(&mut *tx)
            .await?;
    }
    let inside: Vec<(String, i32)> =
        sqlx::query("SELECT sku, quantity FROM cart_items ORDER BY sku")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| (r.get("sku"), r.get("quantity")))
            .collect();
    assert_eq!(
        inside,
        vec![
            ("SKU-1".into(), 2),
            ("SKU-2".into(), 1),
            ("SKU-3".into(), 5)
        ]
    );
    tx.commit().await?;

    // Rolled-back transaction: its insert disappears.
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO cart_items (sku, quantity) VALUES ('SKU-4', 9)")
        .execute(&mut *tx)
        .await?;
    tx.rollback().await?;

    let total: i64 = sqlx::query_scalar("SELECT CAST(SUM(quantity) AS SIGNED) FROM cart_items")
        .fetch_one(&pool)
        .await?;
    assert_eq!(total, 8, "committed rows count, rolled-back row does not");

    // The unique key is enforced by the real server.
    let dup = sqlx::query("INSERT INTO cart_items (sku, quantity) VALUES ('SKU-1', 1)")
        .execute(&pool)
        .await;
    let err = dup.expect_err("duplicate sku must be rejected");
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "expected a unique violation, got {err}"
    );

    pool.close().await;
    db.cleanup().await
}

// ---- Redis ------------------------------------------------------------------------------

#[tokio::test]
async fn redis_sets_expires_and_runs_lua_scripts_in_a_private_prefix() -> anyhow::Result<()> {
    use redis::AsyncCommands as _;
    let ns = Stack::get().redis_namespace().await?;
    let mut conn = ns.connection().await?;

    let key = ns.key("cart:42");
    let () = conn.set_ex(&key, "three items", 60).await?;
    let got: Option<String> = conn.get(&key).await?;
    assert_eq!(got.as_deref(), Some("three items"));
    let ttl: i64 = conn.ttl(&key).await?;
    assert!((1..=60).contains(&ttl), "ttl {ttl}");

    // A key that expires really goes away.
    let short = ns.key("session:short");
    let () = conn.pset_ex(&short, "x", 150).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let gone: Option<String> = conn.get(&short).await?;
    assert_eq!(gone, None, "expired key must be gone");

    // A Lua script: take stock only while enough is left, atomically.
    let take = redis::Script::new(
        r"local left = tonumber(redis.call('GET', KEYS[1]) or '0')
          local want = tonumber(ARGV[1])
          if left < want then return -1 end
          return redis.call('DECRBY', KEYS[1], want)",
    );
    let stock = ns.key("stock:SKU-1");
    let () = conn.set(&stock, 10).await?;
    let a: i64 = take.key(&stock).arg(4).invoke_async(&mut conn).await?;
    let b: i64 = take.key(&stock).arg(4).invoke_async(&mut conn).await?;
    let c: i64 = take.key(&stock).arg(4).invoke_async(&mut conn).await?;
    assert_eq!((a, b, c), (6, 2, -1));

    // Cleanup removes every key under the prefix, and only those.
    let outsider = format!("other-{}", ns.prefix());
    let () = conn.set_ex(&outsider, 1, 30).await?;
    let client = ns.client().clone();
    let prefix = ns.prefix().to_owned();
    ns.cleanup().await?;
    let mut check = client.get_multiplexed_async_connection().await?;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut check)
        .await?;
    assert!(left.is_empty(), "keys left after cleanup: {left:?}");
    let kept: bool = check.exists(&outsider).await?;
    assert!(kept, "cleanup must not touch keys outside the prefix");
    let _: i64 = check.del(&outsider).await?;
    Ok(())
}

// ---- Kafka via rdkafka ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_keeps_per_key_order_and_headers_for_1000_idempotent_messages() -> anyhow::Result<()>
{
    use rdkafka::Message as _;
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    use rdkafka::message::{Header, Headers as _, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    const MESSAGES: usize = 1000;
    const KEYS: usize = 7;
    let stack = Stack::get();
    let topic = stack.kafka_topic("smoke-orders", 3).await?;

    let producer: FutureProducer = stack
        .kafka_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()?;

    // Queue all messages first (in order), then await the deliveries.
    let mut deliveries = Vec::with_capacity(MESSAGES);
    let mut seq_per_key = [0u32; KEYS];
    for i in 0..MESSAGES {
        let k = i % KEYS;
        let key = format!("customer-{k}");
        let seq = seq_per_key[k];
        seq_per_key[k] += 1;
        let payload = json!({ "order": i, "customer": k, "seq": seq }).to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "seq",
                value: Some(&seq.to_string()),
            })
            .insert(Header {
                key: "trace-id",
                value: Some(&format!("trace-{i}")),
            });
        let record = FutureRecord::to(topic.name())
            .key(&key)
            .payload(&payload)
            .headers(headers);
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .context("enqueue message")?;
        deliveries.push(delivery);
    }
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let delivered = delivery
            .await
            .context("delivery future cancelled")?
            .map_err(|(e, _)| e)
            .with_context(|| format!("deliver message {i}"))?;
        let key = format!("customer-{}", i % KEYS);
        let p = *partition_of_key
            .entry(key.clone())
            .or_insert(delivered.partition);
        ensure!(
            p == delivered.partition,
            "{key} went to partitions {p} and {}",
            delivered.partition
        );
    }
    let used: BTreeSet<i32> = partition_of_key.values().copied().collect();
    assert!(
        used.len() > 1,
        "keys should spread over partitions, used {used:?}"
    );

    let consumer: StreamConsumer = stack
        .kafka_config()
        .set("group.id", format!("{}-readers", topic.name()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic.name()])?;

    let mut seen_per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while received < MESSAGES {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .with_context(|| format!("only {received} of {MESSAGES} messages consumed"))??;
        let key = String::from_utf8(msg.key().context("message without key")?.to_vec())?;
        let body: serde_json::Value = serde_json::from_slice(msg.payload().context("no payload")?)?;
        let headers = msg.headers().context("message without headers")?;
        let header = |name: &str| -> anyhow::Result<String> {
            let h = headers
                .iter()
                .find(|h| h.key == name)
                .with_context(|| format!("header {name} missing"))?;
            Ok(String::from_utf8(
                h.value.context("empty header")?.to_vec(),
            )?)
        };
        let seq: u32 = header("seq")?.parse()?;
        assert_eq!(body["seq"], json!(seq), "seq header matches payload");
        assert_eq!(header("trace-id")?, format!("trace-{}", body["order"]));
        assert_eq!(
            Some(&msg.partition()),
            partition_of_key.get(&key),
            "{key} read from its partition"
        );
        seen_per_key.entry(key).or_default().push(seq);
        received += 1;
    }
    assert_eq!(seen_per_key.len(), KEYS);
    for (key, seqs) in &seen_per_key {
        let expected: Vec<u32> = (0..seqs.len() as u32).collect();
        assert_eq!(
            seqs, &expected,
            "{key}: messages out of order or duplicated"
        );
    }
    assert_eq!(seen_per_key.values().map(Vec::len).sum::<usize>(), MESSAGES);

    drop(consumer);
    drop(producer);
    topic.cleanup().await
}

// ---- OpenSearch via the elasticsearch crate -------------------------------------------------------

#[tokio::test]
async fn opensearch_finds_bulk_indexed_products_by_full_text_match() -> anyhow::Result<()> {
    use elasticsearch::http::request::JsonBody;
    use elasticsearch::indices::{IndicesCreateParts, IndicesRefreshParts};
    use elasticsearch::{BulkParts, SearchParts};

    let stack = Stack::get();
    let index = stack.opensearch_index("smoke-products").await?;
    let client = stack.elasticsearch()?;

    let created = client
        .indices()
        .create(IndicesCreateParts::Index(index.name()))
        .body(json!({
            "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
            "mappings": { "properties": {
                "title": { "type": "text" },
                "category": { "type": "keyword" },
                "price_cents": { "type": "integer" }
            }}
        }))
        .send()
        .await?;
    ensure!(
        created.status_code().is_success(),
        "create index: {}",
        created.text().await?
    );

    let mut body: Vec<JsonBody<serde_json::Value>> = Vec::with_capacity(200);
    for i in 0..100 {
        let (title, category) = if i % 10 == 3 {
            (format!("Blue denim jacket number {i}"), "outerwear")
        } else {
            (format!("Red wool scarf number {i}"), "accessories")
        };
        body.push(json!({ "index": { "_id": format!("p{i}") } }).into());
        body.push(json!({ "title": title, "category": category, "price_cents": 1000 + i }).into());
    }
    let bulk = client
        .bulk(BulkParts::Index(index.name()))
        .body(body)
        .send()
        .await?;
    ensure!(
        bulk.status_code().is_success(),
        "bulk: status {}",
        bulk.status_code()
    );
    let bulk: serde_json::Value = bulk.json().await?;
    assert_eq!(bulk["errors"], json!(false), "bulk errors: {bulk}");
    assert_eq!(bulk["items"].as_array().map(Vec::len), Some(100));

    client
        .indices()
        .refresh(IndicesRefreshParts::Index(&[index.name()]))
        .send()
        .await?
        .error_for_status_code()?;

    let found: serde_json::Value = client
        .search(SearchParts::Index(&[index.name()]))
        .body(json!({
            "query": { "match": { "title": "blue jacket" } },
            "size": 50,
            "sort": [{ "price_cents": "asc" }]
        }))
        .send()
        .await?
        .error_for_status_code()?
        .json()
        .await?;
    let hits = found["hits"]["hits"].as_array().context("hits")?;
    let ids: Vec<&str> = hits.iter().filter_map(|h| h["_id"].as_str()).collect();
    let expected: Vec<String> = (0..100)
        .filter(|i| i % 10 == 3)
        .map(|i| format!("p{i}"))
        .collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(hits.iter().all(|h| h["_source"]["category"] == "outerwear"));
    assert_eq!(found["hits"]["total"]["value"], json!(10));

    index.cleanup().await
}

// ---- FerretDB via the mongodb crate ------------------------------------------------------------------

#[tokio::test]
async fn mongodb_filters_and_sorts_documents_on_ferretdb() -> anyhow::Result<()> {
    use futures::TryStreamExt as _;
    use mongodb::bson::{Document, doc};

    let db = Stack::get().mongo_database().await?;
    let deliveries = db.database().collection::<Document>("deliveries");

    let docs: Vec<Document> = (0..30)
        .map(|i| {
            doc! {
                "order": i,
                "status": if i % 3 == 0 { "shipped" } else { "pending" },
                "weight_g": 100 * (30 - i),
                "address": { "city": if i % 2 == 0 { "Lyon" } else { "Porto" } },
            }
        })
        .collect();
    let inserted = deliveries.insert_many(docs).await?;
    assert_eq!(inserted.inserted_ids.len(), 30);

    let shipped_to_lyon: Vec<Document> = deliveries
        .find(doc! { "status": "shipped", "address.city": "Lyon", "weight_g": { "$gte": 1000 } })
        .sort(doc! { "weight_g": 1 })
        .await?
        .try_collect()
        .await?;
    let orders: Vec<i32> = shipped_to_lyon
        .iter()
        .map(|d| d.get_i32("order"))
        .collect::<Result<_, _>>()?;
    // shipped: multiples of 3; Lyon: even => multiples of 6; weight >= 1000 => order <= 20; sorted by weight ascending => order descending
    assert_eq!(orders, vec![18, 12, 6, 0]);

    let pending = deliveries
        .count_documents(doc! { "status": "pending" })
        .await?;
    assert_eq!(pending, 20);

    let updated = deliveries
        .update_many(
            doc! { "status": "pending" },
            doc! { "$set": { "status": "packed" } },
        )
        .await?;
    assert_eq!(updated.modified_count, 20);
    assert_eq!(
        deliveries
            .count_documents(doc! { "status": "packed" })
            .await?,
        20
    );

    db.cleanup().await
}

// ---- SMTP via lettre, read back from mailpit --------------------------------------------------------------

#[tokio::test]
async fn smtp_delivers_a_multipart_mail_that_mailpit_returns_with_both_parts() -> anyhow::Result<()>
{
    use lettre::AsyncTransport as _;
    use lettre::message::{Mailbox as Address, MultiPart};

    let stack = Stack::get();
    let mailbox = stack.mailbox();
    let subject = format!(
        "Your order {} has shipped",
        storefront_tests::unique_name("SF", '-')
    );

    let message = lettre::Message::builder()
        .from("Storefront <orders@storefront.test>".parse::<Address>()?)
        .to(mailbox.address().parse::<Address>()?)
        .subject(&subject)
        .multipart(MultiPart::alternative_plain_html(
            "Hello! Your parcel is on its way.".to_owned(),
            "<p>Hello! Your parcel is <b>on its way</b>.</p>".to_owned(),
        ))?;
    let response = stack.smtp_transport()?.send(message).await?;
    assert!(
        response.is_positive(),
        "SMTP answered {:?}",
        response.code()
    );

    let messages = mailbox.wait_for(1, Duration::from_secs(20)).await?;
    assert_eq!(messages.len(), 1);
    let got = &messages[0];
    assert_eq!(got.subject, subject);
    assert_eq!(got.from.address, "orders@storefront.test");
    assert_eq!(
        got.to
            .iter()
            .map(|a| a.address.as_str())
            .collect::<Vec<_>>(),
        vec![mailbox.address()]
    );
    assert!(
        got.text.contains("Your parcel is on its way."),
        "text part: {:?}",
        got.text
    );
    assert!(
        got.html.contains("<b>on its way</b>"),
        "html part: {:?}",
        got.html
    );

    mailbox.cleanup().await
}

// ---- Kubernetes API via kube ------------------------------------------------------------------------------

mod crd {
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// A throw-away resource type for the smoke test.
    #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
    #[kube(
        group = "smoke.storefront.test",
        version = "v1",
        kind = "SmokeWidget",
        namespaced
    )]
    pub struct SmokeWidgetSpec {
        pub color: String,
        pub size: i32,
    }
}

#[tokio::test]
async fn kube_applies_a_custom_resource_and_a_watch_sees_the_change() -> anyhow::Result<()> {
    use crd::{SmokeWidget, SmokeWidgetSpec};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use kube::runtime::{WatchStreamExt as _, conditions, wait::await_condition, watcher};
    use kube::{CustomResourceExt as _, ResourceExt as _};

    let stack = Stack::get();
    let client = stack.kube_client().await?;

    // Install (or update) the CRD with server-side apply and wait until it is served.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = SmokeWidget::crd();
    let crd_name = crd.name_any();
    crds.patch(
        &crd_name,
        &PatchParams::apply("storefront-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("apply CRD")?;
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &crd_name, conditions::is_crd_established()),
    )
    .await
    .context("CRD not established in 30s")??;

    let ns = stack.kube_namespace().await?;
    let widgets: Api<SmokeWidget> = ns.api();
    let widget = SmokeWidget::new(
        "widget-1",
        SmokeWidgetSpec {
            color: "red".into(),
            size: 1,
        },
    );
    // The new resource type can take a moment to be served after "Established".
    let created = storefront_tests::wait_until(Duration::from_secs(20), || async {
        match widgets.create(&PostParams::default(), &widget).await {
            Ok(w) => Ok(Some(w)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    assert_eq!(
        created.spec,
        SmokeWidgetSpec {
            color: "red".into(),
            size: 1
        }
    );

    // Watch the object, then change it with server-side apply.
    let watch = watcher(
        widgets.clone(),
        watcher::Config::default().fields("metadata.name=widget-1"),
    )
    .applied_objects()
    .boxed();
    let apply = json!({
        "apiVersion": "smoke.storefront.test/v1",
        "kind": "SmokeWidget",
        "metadata": { "name": "widget-1" },
        "spec": { "color": "blue", "size": 5 }
    });
    let patched = widgets
        .patch(
            "widget-1",
            &PatchParams::apply("storefront-smoke").force(),
            &Patch::Apply(&apply),
        )
        .await?;
    assert_eq!(patched.spec.size, 5);
    let managers: Vec<String> = patched
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "storefront-smoke"),
        "field managers: {managers:?}"
    );

    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        let mut watch = watch;
        while let Some(event) = watch.next().await {
            let w = event?;
            if w.spec.size == 5 {
                return anyhow::Ok(w);
            }
        }
        anyhow::bail!("watch ended")
    })
    .await
    .context("the watch never saw size 5")??;
    assert_eq!(
        seen.spec,
        SmokeWidgetSpec {
            color: "blue".into(),
            size: 5
        }
    );
    assert_eq!(seen.namespace().as_deref(), Some(ns.name()));

    ns.cleanup().await
}

// ---- the kit itself ---------------------------------------------------------------------------------------

#[tokio::test]
async fn kit_cleans_up_namespaces_dropped_without_explicit_cleanup() -> anyhow::Result<()> {
    use redis::AsyncCommands as _;
    use sqlx::Connection as _;

    let stack = Stack::get();

    let db = stack.mysql_database().await?;
    let db_name = db.name().to_owned();
    drop(db);
    let mut conn = sqlx::MySqlConnection::connect(&stack.mysql_url).await?;
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?",
    )
    .bind(&db_name)
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(
        left, 0,
        "database {db_name} should be dropped with its guard"
    );
    conn.close().await?;

    let ns = stack.redis_namespace().await?;
    let mut redis = ns.connection().await?;
    let key = ns.key("left-behind");
    let () = redis.set(&key, 1).await?;
    drop(ns);
    let exists: bool = redis.exists(&key).await?;
    assert!(!exists, "{key} should be deleted with its namespace");
    Ok(())
}
