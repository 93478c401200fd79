//! The cart cache in Redis (`redis://`). Every call is bounded by a short timeout and a cache
//! that is down behaves as an empty one: carts are then served from the database, never with
//! an error. The connection is kit's [`RedisLink`] (lazy, throttled reconnects, bounded calls).
//!
//! Keys: the cart of user `u` lives at `<prefix>:cart:<u>`; `<prefix>:cart:<u>:v` holds the
//! last version a write invalidated. A fill (`put`) is a script that only writes when the
//! cart's version is at least that one, so a reader that loaded the cart before a write
//! cannot put the old cart back after the write deleted it.
//!
//! An invalidation that cannot reach Redis is remembered; until it succeeds the cache is not
//! used at all, so a stale entry is never served when Redis comes back. When too many are
//! pending ([`MAX_PENDING`]) they are forgotten and the cache is bypassed for one TTL.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use redis::Script;
use redis::aio::MultiplexedConnection;
use storefront_kit::redis::RedisLink;
use tokio::sync::Mutex;

use crate::domain::Cart;
use crate::ports::{BackendError, CartCache};

/// Bound of every Redis call.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// Failed invalidations remembered one by one; beyond this many, the cache is bypassed for a
/// whole TTL instead (every entry that could be stale has expired by then).
pub const MAX_PENDING: usize = 10_000;

/// `SET cart value PX ttl` unless a newer version was invalidated.
const PUT: &str = r"
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) >= floor then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Raises the invalidated-version floor to `version` and deletes the cart entry.
const INVALIDATE: &str = r"
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) > floor then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
redis.call('DEL', KEYS[1])
return 1
";

/// The key of a user's cached cart under `prefix`.
pub fn cart_key(prefix: &str, user_id: &str) -> String {
    format!("{prefix}:cart:{user_id}")
}

pub struct RedisCache {
    link: RedisLink,
    prefix: String,
    ttl: Duration,
    put: Script,
    invalidate: Script,
    /// Invalidations (user, version) that could not reach Redis; the cache is bypassed until
    /// they succeed.
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    invalidations: HashSet<(String, u64)>,
    /// Set when invalidations overflowed: the cache is bypassed until then.
    bypass_until: Option<Instant>,
}

impl Pending {
    fn bypassing(&mut self) -> bool {
        if self.bypass_until.is_some_and(|t| Instant::now() >= t) {
            self.bypass_until = None;
        }
        self.bypass_until.is_some() || !self.invalidations.is_empty()
    }
}

impl RedisCache {
    /// Prepares the client; connects lazily, so a Redis that is down does not stop startup.
    pub fn new(url: &str, prefix: &str, ttl: Duration) -> Result<Self, BackendError> {
        let link = RedisLink::open(url, CALL_TIMEOUT).map_err(|e| BackendError::new("redis", e))?;
        Ok(Self {
            link,
            prefix: prefix.to_string(),
            ttl,
            put: Script::new(PUT),
            invalidate: Script::new(INVALIDATE),
            pending: Mutex::new(Pending::default()),
        })
    }

    /// Runs a command or script invocation within [`CALL_TIMEOUT`] (see [`RedisLink::run`]).
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.link.run(call).await
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    async fn try_invalidate(&self, user_id: &str, version: u64) -> Result<(), String> {
        let key = cart_key(&self.prefix, user_id);
        let floor = format!("{key}:v");
        // The floor outlives the entries it guards.
        let ttl = self.ttl_ms().saturating_mul(2);
        let mut invocation = self.invalidate.key(&key);
        invocation.key(&floor).arg(version).arg(ttl);
        self.run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await
            .map(drop)
    }

    /// Retries the invalidations that failed; true when the cache may be used.
    async fn flush_pending(&self) -> bool {
        let mut pending = self.pending.lock().await;
        if !pending.bypassing() {
            return true;
        }
        let todo: Vec<(String, u64)> = pending.invalidations.iter().cloned().collect();
        for (user, version) in todo {
            if self.try_invalidate(&user, version).await.is_err() {
                return false;
            }
            pending.invalidations.remove(&(user, version));
        }
        let usable = !pending.bypassing();
        if usable {
            tracing::info!("pending cart cache invalidations done; cache in use again");
        }
        usable
    }
}

impl CartCache for RedisCache {
    fn get<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Option<Cart>> {
        async move {
            if !self.flush_pending().await {
                return None;
            }
            let key = cart_key(&self.prefix, user_id);
            let bytes = self
                .run(|mut c| async move {
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async::<Option<Vec<u8>>>(&mut c)
                        .await
                })
                .await
                .ok()
                .flatten()?;
            match serde_json::from_slice::<Cart>(&bytes) {
                Ok(cart) if cart.user_id == user_id => Some(cart),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable cached cart ignored");
                    None
                }
            }
        }
        .boxed()
    }

    fn put<'a>(&'a self, cart: &'a Cart) -> BoxFuture<'a, ()> {
        async move {
            if self.pending.lock().await.bypassing() {
                return;
            }
            let Ok(value) = serde_json::to_vec(cart) else {
                return;
            };
            let key = cart_key(&self.prefix, &cart.user_id);
            let floor = format!("{key}:v");
            let mut invocation = self.put.key(&key);
            invocation
                .key(&floor)
                .arg(value)
                .arg(cart.version)
                .arg(self.ttl_ms());
            let outcome = self
                .run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
                .await;
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "cart cache fill skipped");
            }
        }
        .boxed()
    }

    fn invalidate<'a>(&'a self, user_id: &'a str, version: u64) -> BoxFuture<'a, ()> {
        async move {
            if let Err(e) = self.try_invalidate(user_id, version).await {
                tracing::warn!(error = %e, "cart cache invalidation failed; cache bypassed until it succeeds");
                let mut pending = self.pending.lock().await;
                if pending.invalidations.len() < MAX_PENDING {
                    pending.invalidations.insert((user_id.to_string(), version));
                } else {
                    pending.invalidations.clear();
                    pending.bypass_until = Some(Instant::now() + self.ttl);
                }
            }
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            let pong = self
                .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
                .await?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(format!("unexpected PING answer {pong}"))
            }
        }
        .boxed()
    }
}
