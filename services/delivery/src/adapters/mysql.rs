//! Partners and deliveries in MySQL/MariaDB (`mysql://`): what runs in Kubernetes, shared by
//! every replica.

use sqlx::MySqlPool;

pub struct MysqlDeliveries {
    pool: MySqlPool,
    topic: String,
}

impl MysqlDeliveries {
    /// Connects and applies the migrations; events go to `topic` (`deliveries.v1`).
    pub async fn connect(url: &str, topic: &str) -> Result<Self, BackendError> {
        let pool =
            storefront_kit::sql::connect_mysql(url, 10, &sqlx::migrate!("./migrations/mysql"))
                .await
                .map_err(sql)?;
        Ok(Self {
            pool,
            topic: topic.to_string(),
        })
    }
}

super::sql::sql_delivery_repo!(MysqlDeliveries, sqlx::mysql::MySqlRow, sqlx::MySql, "mysql");
