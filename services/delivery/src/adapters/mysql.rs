//! Partners and deliveries in MySQL/MariaDB (`mysql://`): what runs in Kubernetes, shared by
//! every replica.

use sqlx::MySqlPool;
use sqlx::mysql::MySqlPoolOptions;

pub struct MysqlDeliveries {
    pool: MySqlPool,
    topic: String,
}

impl MysqlDeliveries {
    /// Connects and applies the migrations; events go to `topic` (`deliveries.v1`).
    pub async fn connect(url: &str, topic: &str) -> Result<Self, BackendError> {
        let pool = MySqlPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(storefront_kit::sql::ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(sql)?;
        sqlx::migrate!("./migrations/mysql")
            .run(&pool)
            .await
            .map_err(err)?;
        Ok(Self {
            pool,
            topic: topic.to_string(),
        })
    }
}

super::sql::sql_delivery_repo!(MysqlDeliveries, sqlx::mysql::MySqlRow, sqlx::MySql, "mysql");
