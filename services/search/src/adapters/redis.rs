//! The response cache in Redis. Every call is bounded by a short timeout and a cache that is
//! down behaves as an empty one: the service answers uncached, never with an error.
//!
//! Keys: `<prefix>:gen` holds the catalog generation; entries live under `<prefix>:<key>`,
//! where the service puts the generation in `<key>`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use storefront_kit::redis::RedisLink;

use crate::ports::{BackendError, Cache};

/// Bound of every Redis call.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);

pub struct RedisCache {
    link: RedisLink,
    prefix: String,
    /// A bump that could not reach Redis: until it succeeds, the cache is not used, so no
    /// entry of the old generation is served.
    bump_pending: AtomicBool,
}

impl RedisCache {
    /// Prepares the client; connects lazily, so a Redis that is down does not stop startup.
    pub fn new(url: &str, prefix: &str) -> Result<Self, BackendError> {
        let link = RedisLink::open(url, CALL_TIMEOUT).map_err(|e| BackendError::new("redis", e))?;
        Ok(Self {
            link,
            prefix: prefix.to_string(),
            bump_pending: AtomicBool::new(false),
        })
    }

    /// Runs `cmd` within [`CALL_TIMEOUT`] (see [`RedisLink::run`]).
    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, String> {
        self.link
            .run(|mut c| async move { cmd.query_async::<T>(&mut c).await })
            .await
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
