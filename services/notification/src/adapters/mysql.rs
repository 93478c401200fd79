//! The store in MySQL/MariaDB (`mysql://`): what runs in Kubernetes, shared by every replica.

use sqlx::MySqlPool;
use sqlx::mysql::MySqlPoolOptions;

pub struct MysqlStore {
    pool: MySqlPool,
}

impl MysqlStore {
    /// Connects and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let pool = MySqlPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(storefront_kit::sql::ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(err)?;
        sqlx::migrate!("./migrations/mysql")
            .run(&pool)
            .await
            .map_err(err)?;
        Ok(Self { pool })
    }
}

super::sql::sql_notification_store!(MysqlStore, sqlx::mysql::MySqlRow, "mysql");
