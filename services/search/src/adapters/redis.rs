//! The response cache in Redis. Every call is bounded by a short timeout and a cache that is
//! down behaves as an empty one: the service answers uncached, never with an error.
//!
//! Keys: `<prefix>:gen` holds the catalog generation; entries live under `<prefix>:<key>`,
//! where the service puts the generation in `<key>`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::Mutex;

use crate::ports::{BackendError, Cache};

/// Bound of every Redis call.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// A failed connection is not retried more often than this.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(1);

struct Conn {
    current: Option<MultiplexedConnection>,
    last_attempt: Option<Instant>,
}

pub struct RedisCache {
    client: Client,
    prefix: String,
    conn: Mutex<Conn>,
    /// A bump that could not reach Redis: until it succeeds, the cache is not used, so no
    /// entry of the old generation is served.
    bump_pending: AtomicBool,
}

impl RedisCache {
    /// Prepares the client; connects lazily, so a Redis that is down does not stop startup.
    pub fn new(url: &str, prefix: &str) -> Result<Self, BackendError> {
        let client = Client::open(url).map_err(|e| BackendError::new("redis", e))?;
        Ok(Self {
            client,
            prefix: prefix.to_string(),
            conn: Mutex::new(Conn {
                current: None,
                last_attempt: None,
            }),
            bump_pending: AtomicBool::new(false),
        })
    }

    async fn connection(&self) -> Option<MultiplexedConnection> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = &conn.current {
            return Some(c.clone());
        }
        if conn
            .last_attempt
            .is_some_and(|t| t.elapsed() < RECONNECT_EVERY)
        {
            return None;
        }
        conn.last_attempt = Some(Instant::now());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let attempt = tokio::time::timeout(
            CALL_TIMEOUT * 2,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        match attempt {
            Ok(Ok(c)) => {
                conn.current = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis unreachable; serving uncached");
                None
            }
            Err(_) => {
                tracing::debug!("redis connect timed out; serving uncached");
                None
            }
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, String> {
        let Some(mut conn) = self.connection().await else {
            return Err("redis unreachable".into());
        };
        let outcome = tokio::time::timeout(CALL_TIMEOUT, cmd.query_async::<T>(&mut conn)).await;
        let err = match outcome {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "redis call timed out".to_string(),
        };
        // Drop the connection; the next call reconnects (throttled).
        self.conn.lock().await.current = None;
        Err(err)
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    async fn try_bump(&self) -> bool {
        let mut cmd = redis::cmd("INCR");
        cmd.arg(self.key("gen"));
        match self.run::<i64>(cmd).await {
            Ok(_) => {
                self.bump_pending.store(false, Ordering::SeqCst);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cache generation bump failed; cache bypassed until it succeeds");
                self.bump_pending.store(true, Ordering::SeqCst);
                false
            }
        }
    }
}

impl Cache for RedisCache {
    fn generation(&self) -> BoxFuture<'_, Option<u64>> {
        async move {
            if self.bump_pending.load(Ordering::SeqCst) && !self.try_bump().await {
                return None;
            }
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.key("gen"));
            match self.run::<Option<u64>>(cmd).await {
                Ok(g) => Some(g.unwrap_or(0)),
                Err(_) => None,
            }
        }
        .boxed()
    }

    fn bump(&self) -> BoxFuture<'_, ()> {
        async move {
            self.try_bump().await;
        }
        .boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.key(key));
            self.run::<Option<Vec<u8>>>(cmd).await.ok().flatten()
        }
        .boxed()
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> BoxFuture<'a, ()> {
        async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(key))
                .arg(value)
                .arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
            if let Err(e) = self.run::<()>(cmd).await {
                tracing::debug!(error = %e, "cache write skipped");
            }
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            let pong = self.run::<String>(redis::cmd("PING")).await?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(format!("unexpected PING answer {pong}"))
            }
        }
        .boxed()
    }
}
