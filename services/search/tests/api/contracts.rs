//! Port contracts, written once over the traits and run against every adapter: MongoDB and
//! SQLite catalogs, Elasticsearch and Tantivy indexes, Redis and in-memory caches.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use storefront_search::adapters::elastic::{self, ElasticIndex};
use storefront_search::adapters::memory::MemoryCache;
use storefront_search::adapters::mongo::MongoCatalog;
use storefront_search::adapters::redis::RedisCache;
use storefront_search::adapters::sqlite::SqliteCatalog;
use storefront_search::adapters::tantivy::TantivyIndex;
use storefront_search::demo;
use storefront_search::domain::event::ProductDeleted;
use storefront_search::domain::{CatalogEvent, Currency, Money, Product, SearchParams};
use storefront_search::ports::{Applied, Cache, CatalogRepo, SearchIndex, WriteError};
use storefront_tests::Stack;

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

    // Optimistic concurrency: only the next version of the current one is accepted.
    let mut next = p.clone();
    next.price = Money::new(777, Currency::parse("EUR").expect("eur")).expect("money");
    next.version = 2;
    next.updated_at = Utc::now();
    let e2 = CatalogEvent::Upserted(Box::new(next.clone())).envelope();
    repo.update(&next, &e2).await.expect("update");
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

    // Import and paging (what a reindex reads).
    let many = sample(25);
    repo.import(&many).await.expect("import");
    assert_eq!(repo.count().await.expect("count"), 25);
    let first = repo.page(None, 10).await.expect("page");
    assert_eq!(first.len(), 10);
    let rest = repo.page(Some(&first[9].id), 100).await.expect("page");
    assert_eq!(rest.len(), 15);
    assert!(repo.pending(10).await.expect("pending").is_empty());
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
    assert_eq!(
        index
            .apply(&CatalogEvent::Upserted(Box::new(p.clone())))
            .await
            .expect("apply"),
        Applied::Changed
    );
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

    // A reindex reflects the catalog exactly.
    let products = sample(30);
    catalog.import(&products).await.expect("import");
    assert_eq!(index.reindex(catalog.as_ref()).await.expect("reindex"), 30);
    let all = SearchParams::default().validate().expect("all");
    assert_eq!(index.search(&all).await.expect("search").total, 30);
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
