//! Carts saved before the lines moved into the cart row (migration 0002) read back whole, in
//! their order, on MariaDB and on SQLite.

use std::path::Path;

use storefront_cart::adapters::mysql::MysqlCarts;
use storefront_cart::adapters::sqlite::SqliteCarts;
use storefront_cart::ports::CartRepo;
use storefront_tests::Stack;

/// The rows a cart service before 0002 wrote: a cart with two lines (stored out of line order,
/// so the migration must sort them), and a cart whose lines were all removed.
const OLD_ROWS: [&str; 4] = [
    "INSERT INTO carts (user_id, version, updated_at) VALUES ('shopper-1', 3, 1764300000000)",
    "INSERT INTO carts (user_id, version, updated_at) VALUES ('shopper-2', 5, 1764300000001)",
    "INSERT INTO cart_lines (user_id, product_id, line_no, sku, title, unit_price_minor, currency, quantity) \
     VALUES ('shopper-1', 'p-2', 1, 'SKU-2', 'Mug \"big\"', 1250, 'EUR', 3)",
    "INSERT INTO cart_lines (user_id, product_id, line_no, sku, title, unit_price_minor, currency, quantity) \
     VALUES ('shopper-1', 'p-1', 0, 'SKU-1', 'Kettle', 4999, 'EUR', 1)",
];

/// The directory of the first migration only (a copy), so a database can be put in the state
/// a deployment before 0002 left it in.
fn first_migration(dir: &Path, backend: &str) -> std::path::PathBuf {
    let only = dir.join(format!("{backend}-0001"));
    std::fs::create_dir_all(&only).expect("dir");
    let name = "0001_carts.sql";
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend)
        .join(name);
    std::fs::copy(from, only.join(name)).expect("copy 0001");
    only
}

/// Puts the database behind `pool` in the state a deployment before 0002 left it in (the
/// first migration, then [`OLD_ROWS`]) and closes the pool. A macro, as the two pools' types
/// share no trait sqlx's migrator and queries both accept.
macro_rules! as_before_0002 {
    ($pool:expr, $dir:expr, $backend:expr) => {
        sqlx::migrate::Migrator::new(first_migration($dir, $backend))
            .await
            .expect("0001")
            .run(&$pool)
            .await
            .expect("apply 0001");
        for sql in OLD_ROWS {
            sqlx::query(sql).execute(&$pool).await.expect(sql);
        }
        $pool.close().await;
    };
}

async fn assert_carried_over(repo: &dyn CartRepo) {
    let cart = repo.load("shopper-1").await.expect("load").expect("cart");
    assert_eq!(cart.version, 3);
    assert_eq!(cart.updated_at.timestamp_millis(), 1_764_300_000_000);
    let lines: Vec<(&str, &str, &str, i64, &str, u32)> = cart
        .lines
        .iter()
        .map(|l| {
            (
                l.product_id.as_str(),
                l.sku.as_str(),
                l.title.as_str(),
                l.unit_price.minor,
                l.unit_price.currency.as_str(),
                u32::from(l.quantity),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            ("p-1", "SKU-1", "Kettle", 4999, "EUR", 1),
            ("p-2", "SKU-2", "Mug \"big\"", 1250, "EUR", 3),
        ]
    );
    let emptied = repo.load("shopper-2").await.expect("load").expect("cart");
    assert_eq!((emptied.version, emptied.lines.len()), (5, 0));
    assert!(repo.load("nobody").await.expect("load").is_none());
    // Cleared in one statement, which reports the version it wrote; an empty cart stays.
    let at = chrono::Utc::now();
    assert_eq!(repo.clear("shopper-1", at).await.expect("clear"), Some(4));
    assert_eq!(repo.clear("shopper-1", at).await.expect("clear"), None);
    assert_eq!(repo.clear("shopper-2", at).await.expect("clear"), None);
    assert_eq!(repo.clear("nobody", at).await.expect("clear"), None);
    let cleared = repo.load("shopper-1").await.expect("load").expect("cart");
    assert_eq!((cleared.version, cleared.lines.len()), (4, 0));
}

#[tokio::test]
async fn carts_saved_before_the_lines_moved_into_the_row_read_back_on_mariadb() {
    let db = Stack::get().mysql_database().await.expect("database");
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlx::MySqlPool::connect(db.url()).await.expect("connect");
    as_before_0002!(pool, dir.path(), "mysql");
    let repo = MysqlCarts::connect(db.url())
        .await
        .expect("migrate to the latest");
    assert_carried_over(&repo).await;
}

#[tokio::test]
async fn carts_saved_before_the_lines_moved_into_the_row_read_back_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("carts.db");
    let pool = storefront_kit::sql::open_sqlite(&file, |o| o.foreign_keys(true))
        .await
        .expect("open");
    as_before_0002!(pool, dir.path(), "sqlite");
    let repo = SqliteCarts::open(&file)
        .await
        .expect("migrate to the latest");
    assert_carried_over(&repo).await;
}
