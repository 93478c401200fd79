//! Port contracts, written once over the traits and run against every adapter: MongoDB and
//! SQLite catalogs, Elasticsearch and Tantivy indexes, Redis and in-memory caches.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as TimeDelta, Utc};
use storefront_search::adapters::elastic::{self, ElasticIndex};
use storefront_search::adapters::memory::MemoryCache;
use storefront_search::adapters::mongo::MongoCatalog;
use storefront_search::adapters::redis::RedisCache;
use storefront_search::adapters::sqlite::SqliteCatalog;
use storefront_search::adapters::tantivy::TantivyIndex;
use storefront_search::demo;
use storefront_search::domain::event::ProductDeleted;
use storefront_search::domain::{
    Availability, CatalogEvent, Currency, Money, Product, ProductId, SearchParams, Sku,
    StockChanged,
};
use storefront_search::ports::{Applied, Cache, CatalogRepo, SearchIndex, WriteError};
use storefront_tests::Stack;

fn report(id: &ProductId, availability: &Availability) -> [StockChanged; 1] {
    [StockChanged {
        product_id: id.clone(),
        availability: availability.clone(),
    }]
}

fn sample(n: usize) -> Vec<Product> {
    demo::products(42, n)
}

async fn catalog_contract(repo: Arc<dyn CatalogRepo>) {
    let mut p = sample(1).remove(0);
    p.id = storefront_search::domain::ProductId::generate();
    let upsert = CatalogEvent::Upserted(Box::new(p.clone())).envelope();
    repo.create(&p, &upsert).await.expect("create");
    assert!(matches!(
        repo.create(&p, &upsert).await,
        Err(WriteError::Exists(_))
    ));
    assert_eq!(repo.get(&p.id).await.expect("get"), Some(p.clone()));
    let pending = repo.pending(10).await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].envelope.id, upsert.id);

    // Stock reports: only a newer one is stored; reads carry it.
    let t = Utc::now();
    let five = Availability::new(5, t);
    assert_eq!(
        repo.set_stock(&report(&p.id, &five)).await.expect("stock"),
        1
    );
    assert_eq!(
        repo.set_stock(&report(&p.id, &five)).await.expect("stock"),
        0,
        "a redelivered report is not stored again"
    );
    let older = Availability::new(99, t - TimeDelta::seconds(1));
    assert_eq!(
        repo.set_stock(&report(&p.id, &older)).await.expect("stock"),
        0,
        "an older report is ignored"
    );
    let got = repo.get(&p.id).await.expect("get").expect("product");
    assert_eq!(got.availability, Some(five.clone()));

    // Optimistic concurrency: only the next version of the current one is accepted.
    let mut next = p.clone();
    next.price = Money::new(777, Currency::parse("EUR").expect("eur")).expect("money");
    next.version = 2;
    next.updated_at = Utc::now();
    let e2 = CatalogEvent::Upserted(Box::new(next.clone())).envelope();
    repo.update(&next, &e2).await.expect("update");
    assert_eq!(
        repo.get(&p.id)
            .await
            .expect("get")
            .expect("product")
            .availability,
        Some(five),
        "a product write keeps the stock"
    );
    match repo.update(&next, &e2).await {
        Err(WriteError::VersionMismatch {
            current, expected, ..
        }) => {
            assert_eq!((current, expected), (2, 1));
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    let pending = repo.pending(10).await.expect("pending");
    let ids: Vec<_> = pending.iter().map(|e| e.envelope.id).collect();
    assert_eq!(ids, [upsert.id, e2.id], "events in write order");
    for e in &pending {
        repo.acknowledge(e).await.expect("ack");
    }
    assert!(repo.pending(10).await.expect("pending").is_empty());

    let del = CatalogEvent::Deleted(ProductDeleted {
        id: p.id.clone(),
        version: 3,
    })
    .envelope();
    assert!(matches!(
        repo.delete(&p.id, 1, &del).await,
        Err(WriteError::VersionMismatch { .. })
    ));
    repo.delete(&p.id, 2, &del).await.expect("delete");
    assert_eq!(repo.get(&p.id).await.expect("get"), None);
    assert_eq!(repo.count().await.expect("count"), 0);
    let pending = repo.pending(10).await.expect("pending");
    assert_eq!(pending.len(), 1, "the delete event waits in the outbox");
    repo.acknowledge(&pending[0]).await.expect("ack");
    assert!(repo.pending(10).await.expect("pending").is_empty());

    // Import and paging (what a reindex reads); a report that came before its product.
    let many = sample(25);
    let early = Availability::new(0, Utc::now());
    assert_eq!(
        repo.set_stock(&report(&many[3].id, &early))
            .await
            .expect("stock"),
        1
    );
    repo.import(&many).await.expect("import");
    assert_eq!(repo.count().await.expect("count"), 25);
    let first = repo.page(None, 10).await.expect("page");
    assert_eq!(first.len(), 10);
    let rest = repo.page(Some(&first[9].id), 100).await.expect("page");
    assert_eq!(rest.len(), 15);
    let stocked: Vec<_> = first
        .iter()
        .chain(&rest)
        .filter_map(|p| Some((p.id.clone(), p.availability.clone()?)))
        .collect();
    assert_eq!(stocked, [(many[3].id.clone(), early)]);
    assert!(repo.pending(10).await.expect("pending").is_empty());

    // A SKU names one live product: another cannot take it by create or by update, a refused
    // write stores no event, and a deleted product's SKU is free at once.
    let product = |sku: &str| {
        let mut p = sample(1).remove(0);
        p.id = ProductId::generate();
        p.sku = Sku::parse(sku).expect("sku");
        p
    };
    let (a, b) = (product("CONTRACT-A"), product("CONTRACT-B"));
    for p in [&a, &b] {
        let event = CatalogEvent::Upserted(Box::new(p.clone())).envelope();
        repo.create(p, &event).await.expect("create");
    }
    for e in repo.pending(10).await.expect("pending") {
        repo.acknowledge(&e).await.expect("ack");
    }
    let mut twin = product("contract-a");
    let twin_event = CatalogEvent::Upserted(Box::new(twin.clone())).envelope();
    match repo.create(&twin, &twin_event).await {
        Err(WriteError::SkuTaken { sku, held_by }) => {
            assert_eq!((sku.as_str(), held_by), ("CONTRACT-A", Some(a.id.clone())));
        }
        other => panic!("expected the SKU taken, got {other:?}"),
    }
    let mut renamed = b.clone();
    renamed.sku = a.sku.clone();
    renamed.version = 2;
    let renamed_event = CatalogEvent::Upserted(Box::new(renamed.clone())).envelope();
    match repo.update(&renamed, &renamed_event).await {
        Err(WriteError::SkuTaken { sku, held_by }) => {
            assert_eq!((sku.as_str(), held_by), ("CONTRACT-A", Some(a.id.clone())));
        }
        other => panic!("expected the SKU taken, got {other:?}"),
    }
    assert_eq!(repo.get(&b.id).await.expect("get"), Some(b.clone()));
    assert!(repo.pending(10).await.expect("pending").is_empty());
    let gone = CatalogEvent::Deleted(ProductDeleted {
        id: a.id.clone(),
        version: 2,
    })
    .envelope();
    repo.delete(&a.id, 1, &gone).await.expect("delete");
    twin.version = 1;
    repo.create(&twin, &twin_event)
        .await
        .expect("the deleted product's SKU is free before its event is published");
    repo.check().await.expect("check");
}

#[tokio::test]
async fn mongo_catalog_contract() {
    let stack = Stack::get();
    let db = stack.mongo_database().await.expect("mongo db");
    let url = format!("{}/{}", stack.mongodb_url.trim_end_matches('/'), db.name());
    let repo = MongoCatalog::connect(&url).await.expect("connect");
    repo.migrate().await.expect("migrate");
    catalog_contract(Arc::new(repo)).await;
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn sqlite_catalog_contract() {
    let dir = tempfile::tempdir().expect("dir");
    let repo = SqliteCatalog::open(&dir.path().join("catalog.db"))
        .await
        .expect("open");
    catalog_contract(Arc::new(repo)).await;
}

/// Two products stored with one SKU before SKUs had an index (possible then): after the
/// migration both are still there and readable, one holds the SKU, and the other can be
/// written again only under a SKU of its own.
async fn legacy_twins_contract(repo: Arc<dyn CatalogRepo>, twins: [Product; 2]) {
    assert_eq!(repo.count().await.expect("count"), 2);
    for p in &twins {
        assert_eq!(repo.get(&p.id).await.expect("get").as_ref(), Some(p));
    }
    let mut kept = Vec::new();
    for p in &twins {
        let mut next = p.clone();
        next.version = 2;
        let event = CatalogEvent::Upserted(Box::new(next.clone())).envelope();
        match repo.update(&next, &event).await {
            Ok(()) => kept.push(p.id.clone()),
            Err(WriteError::SkuTaken { held_by, .. }) => {
                let other = twins.iter().find(|t| t.id != p.id).expect("twin");
                assert_eq!(held_by, Some(other.id.clone()));
                next.sku = Sku::parse("LEGACY-OWN").expect("sku");
                let event = CatalogEvent::Upserted(Box::new(next.clone())).envelope();
                repo.update(&next, &event)
                    .await
                    .expect("under a SKU of its own");
            }
            Err(e) => panic!("update: {e:?}"),
        }
    }
    assert_eq!(kept.len(), 1, "one of the twins holds the SKU: {kept:?}");
}

fn legacy_twins() -> [Product; 2] {
    let mut twins = sample(2);
    twins[1].sku = twins[0].sku.clone();
    [twins.remove(0), twins.remove(0)]
}

#[tokio::test]
async fn mongo_catalog_keeps_legacy_twins() {
    let stack = Stack::get();
    let db = stack.mongo_database().await.expect("mongo db");
    let url = format!("{}/{}", stack.mongodb_url.trim_end_matches('/'), db.name());
    let twins = legacy_twins();
    // Documents as stored before the `sku` field and its index.
    let client = stack.mongo_client().await.expect("client");
    let products = client
        .database(db.name())
        .collection::<mongodb::bson::Document>("products");
    for p in &twins {
        let json = serde_json::to_value(p).expect("json");
        let product = mongodb::bson::to_bson(&json).expect("bson");
        products
            .insert_one(mongodb::bson::doc! {
                "_id": p.id.as_str(), "product": product, "version": 1_i64, "deleted": false,
                "has_pending": false, "pending_events": [],
            })
            .await
            .expect("insert");
    }
    let repo = MongoCatalog::connect(&url).await.expect("connect");
    repo.migrate().await.expect("migrate");
    repo.migrate().await.expect("migrate again");
    legacy_twins_contract(Arc::new(repo), twins).await;
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn sqlite_catalog_keeps_legacy_twins() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("catalog.db");
    let twins = legacy_twins();
    {
        // The catalog as the first two migrations left it.
        let pool = storefront_kit::sql::open_sqlite(&path, |o| o)
            .await
            .expect("open");
        sqlx::raw_sql(include_str!("../../migrations/sqlite/0001_catalog.sql"))
            .execute(&pool)
            .await
            .expect("0001");
        for p in &twins {
            sqlx::query("INSERT INTO products (id, version, doc) VALUES (?, 1, ?)")
                .bind(p.id.as_str())
                .bind(serde_json::to_string(p).expect("json"))
                .execute(&pool)
                .await
                .expect("insert");
        }
        pool.close().await;
    }
    let repo = SqliteCatalog::open(&path).await.expect("open and migrate");
    legacy_twins_contract(Arc::new(repo), twins).await;
}

async fn index_contract(index: Arc<dyn SearchIndex>, catalog: Arc<dyn CatalogRepo>) {
    index.ensure().await.expect("ensure");
    let mut p = sample(1).remove(0);
    p.version = 2;
    let query = SearchParams {
        q: Some(p.title.clone()),
        ..Default::default()
    }
    .validate()
    .expect("query");
    let in_stock = SearchParams {
        q: Some(p.title.clone()),
        in_stock: Some(true),
        ..Default::default()
    }
    .validate()
    .expect("query");

    // A stock report before the product is held (not searchable) and kept by the upsert.
    let t = Utc::now();
    let five = Availability::new(5, t);
    assert_eq!(
        index
            .apply_stock(&report(&p.id, &five))
            .await
            .expect("stock"),
        Applied::Changed
    );
    assert_eq!(index.search(&query).await.expect("search").total, 0);
    assert_eq!(
        index
            .apply(&CatalogEvent::Upserted(Box::new(p.clone())))
            .await
            .expect("apply"),
        Applied::Changed
    );
    let found = index.search(&in_stock).await.expect("search");
    assert_eq!(found.total, 1, "in stock");
    assert_eq!(found.hits[0].availability, Some(five.clone()));
    // Redelivered and older reports change nothing; a newer one does.
    assert_eq!(
        index
            .apply_stock(&report(&p.id, &five))
            .await
            .expect("stock"),
        Applied::Stale
    );
    let older = Availability::new(99, t - TimeDelta::seconds(1));
    assert_eq!(
        index
            .apply_stock(&report(&p.id, &older))
            .await
            .expect("stock"),
        Applied::Stale
    );
    let none_left = Availability::new(0, t + TimeDelta::seconds(1));
    assert_eq!(
        index
            .apply_stock(&report(&p.id, &none_left))
            .await
            .expect("stock"),
        Applied::Changed
    );
    assert_eq!(index.search(&in_stock).await.expect("search").total, 0);
    let found = index.search(&query).await.expect("search");
    assert_eq!(
        found.total, 1,
        "out of stock is still found without the filter"
    );
    assert_eq!(found.hits[0].availability, Some(none_left.clone()));
    assert_eq!(found.hits[0].title, p.title, "a report keeps the product");
    // A replay or an older version changes nothing.
    assert_eq!(
        index
            .apply(&CatalogEvent::Upserted(Box::new(p.clone())))
            .await
            .expect("apply"),
        Applied::Stale
    );
    let mut old = p.clone();
    old.version = 1;
    old.price = Money::new(1, Currency::parse("EUR").expect("eur")).expect("money");
    assert_eq!(
        index
            .apply(&CatalogEvent::Upserted(Box::new(old)))
            .await
            .expect("apply"),
        Applied::Stale
    );
    let found = index.search(&query).await.expect("search");
    assert_eq!(found.total, 1);
    assert_eq!(found.hits[0].price, p.price);
    assert_eq!(
        found.hits[0].availability,
        Some(none_left),
        "a replayed upsert keeps the stock"
    );

    let deleted = CatalogEvent::Deleted(ProductDeleted {
        id: p.id.clone(),
        version: 3,
    });
    assert_eq!(
        index.apply(&deleted).await.expect("delete"),
        Applied::Changed
    );
    assert_eq!(
        index
            .apply(&CatalogEvent::Upserted(Box::new(p.clone())))
            .await
            .expect("replay"),
        Applied::Stale,
        "a replayed upsert does not resurrect a deleted product"
    );
    assert_eq!(index.search(&query).await.expect("search").total, 0);

    // A reindex reflects the catalog exactly, its stock included.
    let products = sample(30);
    catalog.import(&products).await.expect("import");
    let seven = Availability::new(7, Utc::now());
    // A batch applies in order: of two reports for one product the newer stays.
    let batch = [
        report(&products[4].id, &seven)[0].clone(),
        report(
            &products[4].id,
            &Availability::new(70, seven.as_of - TimeDelta::seconds(1)),
        )[0]
        .clone(),
    ];
    assert_eq!(catalog.set_stock(&batch).await.expect("stock"), 1);
    assert_eq!(index.reindex(catalog.as_ref()).await.expect("reindex"), 30);
    let all = SearchParams::default().validate().expect("all");
    assert_eq!(index.search(&all).await.expect("search").total, 30);
    let all_in_stock = SearchParams {
        in_stock: Some(true),
        ..Default::default()
    }
    .validate()
    .expect("query");
    let found = index.search(&all_in_stock).await.expect("search");
    assert_eq!(found.total, 1);
    assert_eq!(found.hits[0].id, products[4].id);
    assert_eq!(found.hits[0].availability, Some(seven));

    // A batch applies in order, in one write: of two reports for one product the newer stays.
    let now = Utc::now();
    let two = Availability::new(2, now);
    let batch = [
        report(&products[5].id, &two)[0].clone(),
        report(
            &products[5].id,
            &Availability::new(60, now - TimeDelta::seconds(1)),
        )[0]
        .clone(),
        report(&products[6].id, &Availability::new(0, now))[0].clone(),
    ];
    assert_eq!(
        index.apply_stock(&batch).await.expect("stock"),
        Applied::Changed
    );
    let found = index.search(&all_in_stock).await.expect("search");
    assert_eq!(found.total, 2);
    let five = found
        .hits
        .iter()
        .find(|h| h.id == products[5].id)
        .expect("in stock");
    assert_eq!(five.availability, Some(two));
    assert_eq!(
        index.apply_stock(&batch).await.expect("stock"),
        Applied::Stale,
        "a redelivered batch changes nothing"
    );
    index.check().await.expect("check");
}

#[tokio::test]
async fn elastic_index_contract() {
    let stack = Stack::get();
    let name = stack
        .opensearch_index("contract")
        .await
        .expect("index name");
    let index = ElasticIndex::new(&stack.opensearch_url, name.name()).expect("client");
    let dir = tempfile::tempdir().expect("dir");
    let catalog = SqliteCatalog::open(&dir.path().join("c.db"))
        .await
        .expect("catalog");
    let index = Arc::new(index);
    index_contract(index.clone(), Arc::new(catalog)).await;
    elastic::drop_all(&index).await.expect("drop");
    name.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn tantivy_index_contract() {
    let dir = tempfile::tempdir().expect("dir");
    let index = TantivyIndex::open(&dir.path().join("index"))
        .await
        .expect("open");
    let catalog = SqliteCatalog::open(&dir.path().join("c.db"))
        .await
        .expect("catalog");
    index_contract(Arc::new(index), Arc::new(catalog)).await;
    // Versions survive a restart: the tombstone still rejects the old upsert.
    let reopened = TantivyIndex::open(&dir.path().join("index"))
        .await
        .expect("reopen");
    let p = demo::products(42, 1).remove(0);
    assert_eq!(
        reopened
            .apply(&CatalogEvent::Upserted(Box::new(p)))
            .await
            .expect("apply"),
        Applied::Stale
    );
    // So does the stock: an older report than the one held before the restart is ignored.
    let products = demo::products(42, 30);
    let old = Availability::new(1, Utc::now() - TimeDelta::days(1));
    assert_eq!(
        reopened
            .apply_stock(&report(&products[4].id, &old))
            .await
            .expect("stock"),
        Applied::Stale
    );
    let unknown = ProductId::generate();
    assert_eq!(
        reopened
            .apply_stock(&report(&unknown, &old))
            .await
            .expect("stock"),
        Applied::Changed
    );
}

#[tokio::test]
async fn elastic_index_of_an_older_mapping_is_upgraded_and_rebuilt() {
    let stack = Stack::get();
    let name = stack.opensearch_index("oldmap").await.expect("index name");
    // An index as created before the stock existed: no `live`, no stock fields.
    let mut old = elastic::index_definition();
    let properties = old["mappings"]["properties"]
        .as_object_mut()
        .expect("properties");
    for field in ["live", "version", "available", "in_stock", "stock_at"] {
        properties.remove(field);
    }
    old["aliases"] = serde_json::json!({ name.name(): {} });
    let url = format!(
        "{}/{}-old",
        stack.opensearch_url.trim_end_matches('/'),
        name.name()
    );
    let r = reqwest::Client::new()
        .put(&url)
        .json(&old)
        .send()
        .await
        .expect("create the old index");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    // With a document as it was indexed then.
    let p = sample(1).remove(0);
    let mut doc = elastic::source(&p);
    let fields = doc.as_object_mut().expect("source");
    fields.remove("live");
    fields.remove("version");
    let r = reqwest::Client::new()
        .put(format!("{url}/_doc/{}?refresh=true", p.id))
        .json(&doc)
        .send()
        .await
        .expect("index an old document");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let index = ElasticIndex::new(&stack.opensearch_url, name.name()).expect("client");
    assert!(
        index.ensure().await.expect("ensure"),
        "an outdated index is reported for rebuilding"
    );
    let all = SearchParams::default().validate().expect("all");
    let found = index.search(&all).await.expect("search");
    assert_eq!(
        found.total, 1,
        "old documents stay searchable until the rebuild"
    );
    assert_eq!(found.hits[0].id, p.id);
    let stock = Availability::new(3, Utc::now());
    assert_eq!(
        index
            .apply_stock(&report(&ProductId::generate(), &stock))
            .await
            .expect("stock fits the upgraded mapping"),
        Applied::Changed
    );
    assert!(!index.ensure().await.expect("ensure"), "upgraded once");
    elastic::drop_all(&index).await.expect("drop");
    name.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn tantivy_index_of_an_older_schema_is_recreated() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("index");
    std::fs::create_dir_all(&path).expect("mkdir");
    let mut schema = tantivy::schema::Schema::builder();
    schema.add_text_field("id", tantivy::schema::STRING | tantivy::schema::STORED);
    tantivy::Index::create_in_dir(&path, schema.build()).expect("old index");
    let index = TantivyIndex::open(&path).await.expect("open");
    assert!(
        index.ensure().await.expect("ensure"),
        "rebuilt from the catalog"
    );
    let stock = Availability::new(3, Utc::now());
    assert_eq!(
        index
            .apply_stock(&report(&ProductId::generate(), &stock))
            .await
            .expect("stock"),
        Applied::Changed
    );
}

async fn cache_contract(cache: Arc<dyn Cache>) {
    cache.check().await.expect("check");
    let g = cache.generation().await.expect("generation");
    let key = format!("g{g}:k");
    assert_eq!(cache.get(&key).await, None);
    cache.put(&key, b"v", Duration::from_secs(30)).await;
    assert_eq!(cache.get(&key).await.as_deref(), Some(&b"v"[..]));
    cache.bump().await;
    let g2 = cache.generation().await.expect("generation");
    assert!(g2 > g);
    cache.put("short", b"x", Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cache.get("short").await, None, "entries expire");
}

#[tokio::test]
async fn redis_cache_contract() {
    let ns = Stack::get().redis_namespace().await.expect("redis");
    let cache = RedisCache::new(&Stack::get().redis_url, ns.prefix().trim_end_matches(':'))
        .expect("client");
    cache_contract(Arc::new(cache)).await;
    ns.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn memory_cache_contract() {
    cache_contract(Arc::new(MemoryCache::new(100))).await;
}
