//! Orders and stock in SQLite (`sqlite://`), the embedded twin for `storefront up`.

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use storefront_kit::bus::Bus;
use storefront_kit::outbox::Relay;

pub struct SqliteOrders {
    pool: SqlitePool,
    topic: String,
}

impl SqliteOrders {
    /// Opens (creating when missing) the database file and applies the migrations.
    pub async fn open(path: &Path, topic: &str) -> Result<Self, BackendError> {
        let pool =
            storefront_kit::sql::open_sqlite(path, |o| o.busy_timeout(Duration::from_secs(10)))
                .await
                .map_err(err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(err)?;
        Ok(Self {
            pool,
            topic: topic.to_string(),
        })
    }

    /// The outbox relay of this database.
    pub fn relay(&self, bus: Bus) -> Relay<sqlx::Sqlite> {
        Relay::new(self.pool.clone(), bus)
    }
}

super::sql::sql_order_repo!(
    SqliteOrders,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    "sqlite",
    "INSERT OR IGNORE",
    ""
);
