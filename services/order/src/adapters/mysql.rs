//! Orders and stock in MySQL/MariaDB (`mysql://`): what runs in Kubernetes, shared by all
//! replicas.

use sqlx::MySqlPool;
use storefront_kit::bus::Bus;
use storefront_kit::outbox::Relay;

pub struct MysqlOrders {
    pool: MySqlPool,
    topic: String,
}

impl MysqlOrders {
    /// Connects and applies the migrations; events go to `topic`.
    pub async fn connect(url: &str, topic: &str) -> Result<Self, BackendError> {
        let pool =
            storefront_kit::sql::connect_mysql(url, 16, &sqlx::migrate!("./migrations/mysql"))
                .await
                .map_err(err)?;
        Ok(Self {
            pool,
            topic: topic.to_string(),
        })
    }

    /// The outbox relay of this database.
    pub fn relay(&self, bus: Bus) -> Relay<sqlx::MySql> {
        Relay::new(self.pool.clone(), bus)
    }
}

super::sql::sql_order_repo!(
    MysqlOrders,
    sqlx::MySql,
    sqlx::mysql::MySqlRow,
    "mysql",
    "INSERT IGNORE",
    " FOR UPDATE"
);
