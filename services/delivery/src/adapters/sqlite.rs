//! Partners and deliveries in SQLite (`sqlite://`), the embedded twin for `storefront up`.

use std::path::Path;

use sqlx::SqlitePool;

pub struct SqliteDeliveries {
    pool: SqlitePool,
    topic: String,
}

impl SqliteDeliveries {
    /// Opens (creating when missing) the database file and applies the migrations.
    pub async fn open(path: &Path, topic: &str) -> Result<Self, BackendError> {
        let pool = storefront_kit::sql::open_sqlite(path, |o| o)
            .await
            .map_err(sql)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(err)?;
        Ok(Self {
            pool,
            topic: topic.to_string(),
        })
    }
}

super::sql::sql_delivery_repo!(
    SqliteDeliveries,
    sqlx::sqlite::SqliteRow,
    sqlx::Sqlite,
    "sqlite"
);
