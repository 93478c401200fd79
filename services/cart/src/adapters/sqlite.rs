//! Carts in SQLite (`sqlite://`), the embedded twin for `storefront up`.

use std::path::Path;

use sqlx::SqlitePool;

pub struct SqliteCarts {
    pool: SqlitePool,
}

impl SqliteCarts {
    /// Opens (creating when missing) the database file and applies the migrations.
    pub async fn open(path: &Path) -> Result<Self, BackendError> {
        let pool = storefront_kit::sql::open_sqlite(path, |o| o.foreign_keys(true))
            .await
            .map_err(err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(err)?;
        Ok(Self { pool })
    }
}

super::sql::sql_cart_repo!(SqliteCarts, sqlx::sqlite::SqliteRow, "sqlite");
