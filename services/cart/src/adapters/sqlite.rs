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

    /// One statement, which returns the version it wrote.
    async fn clear_lines(&self, user_id: &str, at_millis: i64) -> Result<Option<u64>, sqlx::Error> {
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE carts SET lines_json = '[]', version = version + 1, updated_at = ? \
             WHERE user_id = ? AND lines_json <> '[]' RETURNING version",
        )
        .bind(at_millis)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        version
            .map(|v| u64::try_from(v).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()
    }
}

super::sql::sql_cart_repo!(SqliteCarts, "sqlite");
