//! Accounts in MySQL/MariaDB (`mysql://`): what runs in Kubernetes, shared by all replicas,
//! login failure counters included.

use sqlx::MySqlPool;
use sqlx::mysql::MySqlPoolOptions;

pub struct MysqlAccounts {
    pool: MySqlPool,
}

impl MysqlAccounts {
    /// Connects and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let pool = MySqlPoolOptions::new()
            .max_connections(10)
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

super::sql::sql_account_repo!(MysqlAccounts, sqlx::mysql::MySqlRow, "mysql");
