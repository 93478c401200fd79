//! Cluster-wide rate limits in Redis: every decision is one `EVALSHA` of the GCRA script
//! ([`REDIS_SCRIPT`]), atomic per bucket, keyed `<prefix>:rl:<bucket>` with a `PX` expiry.
//! The connection is made lazily and again after a failure (at most once a second), so a
//! Redis that is down neither stops startup nor slows every request by a connect timeout.

use std::time::Duration;

use futures::FutureExt;
use redis::Script;
use storefront_kit::redis::RedisLink;

use crate::domain::gcra::{Decision, Gcra, REDIS_SCRIPT};
use crate::ports::{Checked, LimitStore, StoreError};

pub struct RedisStore {
    link: RedisLink,
    prefix: String,
    script: Script,
}

impl RedisStore {
    /// Prepares the client (no connection yet). `timeout` bounds each connect and each call
    /// (a decision is one call; the rule's `storeTimeoutMs` may bound it tighter).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let link = RedisLink::open(url, timeout).map_err(|e| StoreError(e.to_string()))?;
        Ok(Self {
            link,
            prefix: prefix.trim_end_matches(':').to_string(),
            script: Script::new(REDIS_SCRIPT),
        })
    }

    async fn decide(&self, bucket: &str, gcra: Gcra) -> Result<Decision, StoreError> {
        let key = format!("{}:rl:{bucket}", self.prefix);
        let mut invocation = self.script.key(key);
        invocation.arg(gcra.interval_us).arg(gcra.burst);
        let values: Vec<i64> = self
            .link
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
            .map_err(StoreError)?;
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
        self.link
            .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }
}

impl LimitStore for RedisStore {
    fn check(&self, bucket: String, gcra: Gcra) -> Checked<'_> {
        // Bounded by the link, which times out every call (and drops the connection then).
        Checked::Later(async move { self.decide(&bucket, gcra).await }.boxed())
    }
}
