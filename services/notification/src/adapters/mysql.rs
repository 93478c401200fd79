//! The store in MySQL/MariaDB (`mysql://`): what runs in Kubernetes, shared by every replica.

use sqlx::MySqlPool;

pub struct MysqlStore {
    pool: MySqlPool,
}

impl MysqlStore {
    /// Connects and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let pool =
            storefront_kit::sql::connect_mysql(url, 5, &sqlx::migrate!("./migrations/mysql"))
                .await
                .map_err(err)?;
        Ok(Self { pool })
    }
}

super::sql::sql_notification_store!(MysqlStore, sqlx::mysql::MySqlRow, "mysql");
