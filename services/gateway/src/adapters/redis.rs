//! Cluster-wide rate limits in Redis: every decision is one `EVALSHA` of the GCRA script
//! ([`REDIS_SCRIPT`]), atomic per bucket, keyed `<prefix>:rl:<bucket>` with a `PX` expiry.
//! The connection is made lazily and again after a failure (at most once a second), so a
//! Redis that is down neither stops startup nor slows every request by a connect timeout.

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};
use tokio::sync::Mutex;

use crate::domain::gcra::{Decision, Gcra, REDIS_SCRIPT};
use crate::ports::{LimitStore, StoreError};

/// A failed connection is not retried more often than this.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(1);

struct Conn {
    current: Option<MultiplexedConnection>,
    last_attempt: Option<Instant>,
}

pub struct RedisStore {
    client: Client,
    prefix: String,
    script: Script,
    timeout: Duration,
    conn: Mutex<Conn>,
}

impl RedisStore {
    /// Prepares the client (no connection yet). `timeout` bounds each decision.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(|e| StoreError(e.to_string()))?;
        Ok(Self {
            client,
            prefix: prefix.trim_end_matches(':').to_string(),
            script: Script::new(REDIS_SCRIPT),
            timeout,
            conn: Mutex::new(Conn {
                current: None,
                last_attempt: None,
            }),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = &conn.current {
            return Ok(c.clone());
        }
        if conn
            .last_attempt
            .is_some_and(|t| t.elapsed() < RECONNECT_EVERY)
        {
            return Err(StoreError("redis unreachable (retrying shortly)".into()));
        }
        conn.last_attempt = Some(Instant::now());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        conn.current = Some(c.clone());
        Ok(c)
    }

    async fn forget_connection(&self) {
        self.conn.lock().await.current = None;
    }

    async fn decide(&self, bucket: &str, gcra: Gcra) -> Result<Decision, StoreError> {
        let mut conn = self.connection().await?;
        let key = format!("{}:rl:{bucket}", self.prefix);
        let result: Result<Vec<i64>, _> = self
            .script
            .key(key)
            .arg(gcra.interval_us)
            .arg(gcra.burst)
            .invoke_async(&mut conn)
            .await;
        let values = match result {
            Ok(v) => v,
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.forget_connection().await;
                }
                return Err(StoreError(e.to_string()));
            }
        };
        let [allowed, remaining, retry_after, reset] = values[..] else {
            return Err(StoreError(format!("unexpected script reply {values:?}")));
        };
        let non_neg = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Decision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after_us: non_neg(retry_after),
            reset_us: non_neg(reset),
        })
    }

    /// PING, for `/readyz`.
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.connection().await.map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl LimitStore for RedisStore {
    fn check<'a>(
        &'a self,
        bucket: &'a str,
        gcra: Gcra,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        async move {
            match tokio::time::timeout(self.timeout, self.decide(bucket, gcra)).await {
                Ok(r) => r,
                Err(_) => Err(StoreError(format!("no answer within {:?}", self.timeout))),
            }
        }
        .boxed()
    }
}
