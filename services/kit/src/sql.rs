//! What every SQL adapter shares: how long a request may wait for a connection, and which
//! sqlx errors mean "the database cannot be reached right now" (answered 503, retried by
//! consumers) rather than "this statement failed" (a 500 with its cause logged).

use std::time::Duration;

/// How long a request waits for a pooled connection. While the database is down sqlx keeps
/// trying to connect until this runs out, so it bounds how long a request hangs before the
/// service answers 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// A pooled connection idle this long is pinged before it is handed out. One used more
/// recently is handed out as it is: a ping per acquire is a round trip per transaction on a
/// busy service, and a connection that broke since shows it on its first statement, which
/// answers 503 like a failed ping would.
pub const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Whether `e` means the database is unreachable or overloaded (no connection within
/// [`ACQUIRE_TIMEOUT`], a refused or broken connection), as opposed to a failed statement.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// [`is_unavailable`] for an error of any type: true only for such a `sqlx::Error`. Lets a
/// service's `BackendError::new(backend, e)` classify whatever it is given.
pub fn is_unavailable_any(e: &dyn std::any::Any) -> bool {
    e.downcast_ref::<sqlx::Error>().is_some_and(is_unavailable)
}

/// Connects a MySQL/MariaDB pool of `max_connections` whose requests wait at most
/// [`ACQUIRE_TIMEOUT`] for a connection, and applies the service's `migrations`
/// (`&sqlx::migrate!("./migrations/mysql")`). A failed migration is a `sqlx::Error::Migrate`.
pub async fn connect_mysql(
    url: &str,
    max_connections: u32,
    migrations: &sqlx::migrate::Migrator,
) -> Result<sqlx::MySqlPool, sqlx::Error> {
    let pool = mysql_pool_options(max_connections).connect(url).await?;
    migrations.run(&pool).await?;
    Ok(pool)
}

/// The pool every MySQL/MariaDB adapter uses: at most `max_connections`, requests wait at most
/// [`ACQUIRE_TIMEOUT`], and a connection is pinged before it is handed out only when it sat
/// idle for [`IDLE_BEFORE_PING`] (sqlx pings on every acquire by default; it still pings on
/// every release, which drops a connection a failed statement left broken).
pub fn mysql_pool_options(max_connections: u32) -> sqlx::mysql::MySqlPoolOptions {
    sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_BEFORE_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// Opens an embedded SQLite database for `storefront up`: creates the file and its directory
/// when missing, WAL journal, a 5 s busy timeout, a pool of 4. `tune` adjusts the options
/// (e.g. a longer busy timeout); the caller applies its own migrations.
pub async fn open_sqlite(
    path: &std::path::Path,
    tune: impl FnOnce(sqlx::sqlite::SqliteConnectOptions) -> sqlx::sqlite::SqliteConnectOptions,
) -> Result<sqlx::SqlitePool, sqlx::Error> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(tune(options))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_unavailable_and_statement_errors_are_not() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
        assert!(is_unavailable_any(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable_any(&"pool timed out"));
    }

    #[tokio::test]
    async fn open_sqlite_creates_the_file_and_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/x.db");
        let pool = open_sqlite(&path, |o| o).await.expect("open");
        sqlx::query("CREATE TABLE t (a INTEGER)")
            .execute(&pool)
            .await
            .expect("create");
        assert!(path.is_file());
    }
}
