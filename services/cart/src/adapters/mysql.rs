//! Carts in MySQL/MariaDB (`mysql://`): what runs in Kubernetes, shared by all replicas.

use sqlx::MySqlPool;

pub struct MysqlCarts {
    pool: MySqlPool,
}

impl MysqlCarts {
    /// Connects and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let pool =
            storefront_kit::sql::connect_mysql(url, 10, &sqlx::migrate!("./migrations/mysql"))
                .await
                .map_err(err)?;
        Ok(Self { pool })
    }

    /// One statement: `LAST_INSERT_ID(expr)` hands the version it wrote back in the answer
    /// (MariaDB has no `UPDATE ... RETURNING`).
    async fn clear_lines(&self, user_id: &str, at_millis: i64) -> Result<Option<u64>, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE carts SET lines_json = '[]', version = LAST_INSERT_ID(version + 1), \
             updated_at = ? WHERE user_id = ? AND lines_json <> '[]'",
        )
        .bind(at_millis)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then(|| done.last_insert_id()))
    }
}

super::sql::sql_cart_repo!(MysqlCarts, "mysql");
