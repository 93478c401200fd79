//! Accounts in MySQL/MariaDB (`mysql://`): what runs in Kubernetes, shared by all replicas,
//! login failure counters included.

use sqlx::MySqlPool;

pub struct MysqlAccounts {
    pool: MySqlPool,
}

impl MysqlAccounts {
    /// Connects and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let pool =
            storefront_kit::sql::connect_mysql(url, 10, &sqlx::migrate!("./migrations/mysql"))
                .await
                .map_err(err)?;
        Ok(Self { pool })
    }
}

super::sql::sql_account_repo!(MysqlAccounts, sqlx::mysql::MySqlRow, "mysql");
