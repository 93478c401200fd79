//! kit's MySQL pool against the local stack's real MariaDB: without sqlx's ping on every
//! acquire, a connection the server dropped still never serves a statement after the one that
//! found it broken, and one that sat idle is pinged (and replaced) before use.

use std::time::Duration;

use storefront_kit::sql::{IDLE_BEFORE_PING, is_unavailable, mysql_pool_options};
use storefront_tests::Stack;

async fn connection_id(pool: &sqlx::MySqlPool) -> Result<u64, sqlx::Error> {
    sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(pool)
        .await
}

async fn kill(admin: &sqlx::MySqlPool, id: u64) {
    sqlx::query(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}")))
        .execute(admin)
        .await
        .expect("kill");
}

#[tokio::test]
async fn a_dropped_connection_is_never_used_again_and_an_idle_one_is_checked() {
    let db = Stack::get().mysql_database().await.expect("database");
    let pool = mysql_pool_options(1).connect(db.url()).await.expect("pool");
    let admin = mysql_pool_options(1)
        .connect(db.url())
        .await
        .expect("admin");

    // Used a moment ago, so handed out without a ping. sqlx notices a closed socket itself;
    // if the server's close has not arrived yet, the statement fails, as unavailable (503),
    // and the release ping closes the connection. Either way it is not used again.
    let first = connection_id(&pool).await.expect("first");
    kill(&admin, first).await;
    let second = match connection_id(&pool).await {
        Ok(id) => id,
        Err(e) => {
            assert!(is_unavailable(&e), "{e:?}");
            connection_id(&pool)
                .await
                .expect("after the failed statement")
        }
    };
    assert_ne!(first, second);

    // Idle past the threshold: pinged before use, replaced without an error.
    kill(&admin, second).await;
    tokio::time::sleep(IDLE_BEFORE_PING + Duration::from_millis(200)).await;
    let third = connection_id(&pool).await.expect("third, after the ping");
    assert_ne!(second, third);
}
