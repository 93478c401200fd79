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
}

super::sql::sql_cart_repo!(MysqlCarts, sqlx::mysql::MySqlRow, "mysql");
