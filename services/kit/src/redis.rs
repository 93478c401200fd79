//! One lazily made Redis connection for a cache or a rate limiter, shared by every request:
//! connected on first use, so a Redis that is down does not stop startup; every call bounded
//! by a short timeout; after a connection failure, dropped and made again at most once per
//! [`RECONNECT_EVERY`], so a Redis that is down costs a request nothing but a quick error
//! rather than a connect timeout each.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};
use tokio::sync::Mutex;

/// A failed connection is not retried more often than this.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(1);

struct Conn {
    current: Option<MultiplexedConnection>,
    last_attempt: Option<Instant>,
}

/// A shared, throttled, time-bounded Redis connection (see the module docs).
pub struct RedisLink {
    client: Client,
    timeout: Duration,
    conn: Mutex<Conn>,
}

impl RedisLink {
    /// Prepares the client for `url` (no connection yet); `timeout` bounds each call, and
    /// twice that a connect.
    pub fn open(url: &str, timeout: Duration) -> RedisResult<Self> {
        Ok(Self {
            client: Client::open(url)?,
            timeout,
            conn: Mutex::new(Conn {
                current: None,
                last_attempt: None,
            }),
        })
    }

    /// The connection, made now if there is none and the last attempt is old enough.
    pub async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = &conn.current {
            return Ok(c.clone());
        }
        if conn
            .last_attempt
            .is_some_and(|t| t.elapsed() < RECONNECT_EVERY)
        {
            return Err("redis unreachable (retrying shortly)".into());
        }
        conn.last_attempt = Some(Instant::now());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let attempt = tokio::time::timeout(
            self.timeout * 2,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        match attempt {
            Ok(Ok(c)) => {
                conn.current = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => Err(format!("redis unreachable: {e}")),
            Err(_) => Err("redis connect timed out".into()),
        }
    }

    /// Runs `call` (a command or a script invocation) on the connection within the timeout.
    /// A timeout or a broken connection drops the connection, so the next call reconnects
    /// (throttled); an error Redis answered (a script error, say) keeps it.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.connection().await?;
        let (err, broken) = match tokio::time::timeout(self.timeout, call(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => (e.to_string(), connection_trouble(&e)),
            Err(_) => ("redis call timed out".to_string(), true),
        };
        if broken {
            self.conn.lock().await.current = None;
        }
        Err(err)
    }
}

/// Whether `e` means the connection is no good (as opposed to an error Redis answered).
fn connection_trouble(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_not_retried_at_once() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let link = RedisLink::open("redis://127.0.0.1:1", Duration::from_millis(200))
            .expect("a valid URL");
        let first = link.connection().await.expect_err("nothing listens");
        assert!(
            first.contains("unreachable") || first.contains("timed out"),
            "{first}"
        );
        let started = Instant::now();
        let second = link.connection().await.expect_err("throttled");
        assert!(second.contains("retrying shortly"), "{second}");
        assert!(started.elapsed() < Duration::from_millis(50));
        let call = link
            .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await;
        assert!(call.is_err());
    }
}
