//! The cart cache in process memory (`memory://`), the embedded twin for `storefront up`:
//! the same contract as Redis (TTL, version floor against stale fills), bounded in size.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use crate::domain::Cart;
use crate::ports::CartCache;

/// Carts kept by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

struct Entry {
    cart: Cart,
    expires: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Last invalidated version per user (the floor a fill must reach), with its expiry.
    floors: HashMap<String, (u64, Instant)>,
}

pub struct MemoryCache {
    capacity: usize,
    ttl: Duration,
    state: Mutex<State>,
}

impl MemoryCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl,
            state: Mutex::new(State::default()),
        }
    }

    /// How many carts are cached (tests).
    pub async fn len(&self) -> usize {
        self.state.lock().await.entries.len()
    }

    /// Whether nothing is cached (tests).
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

impl State {
    /// Drops expired entries and floors; then, if still full, the entries closest to expiry.
    fn make_room(&mut self, capacity: usize, now: Instant) {
        self.entries.retain(|_, e| e.expires > now);
        self.floors.retain(|_, (_, expires)| *expires > now);
        if self.entries.len() >= capacity {
            let mut by_expiry: Vec<(Instant, String)> = self
                .entries
                .iter()
                .map(|(k, e)| (e.expires, k.clone()))
                .collect();
            by_expiry.sort();
            let excess = self.entries.len() + 1 - capacity;
            // Evict a tenth at once so a full cache is not swept on every fill.
            for (_, key) in by_expiry.into_iter().take(excess.max(capacity / 10)) {
                self.entries.remove(&key);
            }
        }
    }
}

impl CartCache for MemoryCache {
    fn get<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Option<Cart>> {
        async move {
            let state = self.state.lock().await;
            state
                .entries
                .get(user_id)
                .filter(|e| e.expires > Instant::now())
                .map(|e| e.cart.clone())
        }
        .boxed()
    }

    fn put<'a>(&'a self, cart: &'a Cart) -> BoxFuture<'a, ()> {
        async move {
            let now = Instant::now();
            let mut state = self.state.lock().await;
            let floor = state
                .floors
                .get(&cart.user_id)
                .filter(|(_, expires)| *expires > now)
                .map_or(0, |(v, _)| *v);
            if cart.version < floor {
                return;
            }
            if !state.entries.contains_key(&cart.user_id) && state.entries.len() >= self.capacity {
                state.make_room(self.capacity, now);
            }
            state.entries.insert(
                cart.user_id.clone(),
                Entry {
                    cart: cart.clone(),
                    expires: now + self.ttl,
                },
            );
        }
        .boxed()
    }

    fn invalidate<'a>(&'a self, user_id: &'a str, version: u64) -> BoxFuture<'a, ()> {
        async move {
            let now = Instant::now();
            let mut state = self.state.lock().await;
            state.entries.remove(user_id);
            let expires = now + self.ttl * 2;
            let floor = state
                .floors
                .entry(user_id.to_string())
                .or_insert((version, expires));
            *floor = (floor.0.max(version), expires);
            if state.floors.len() > self.capacity * 2 {
                state.floors.retain(|_, (_, e)| *e > now);
            }
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async { Ok(()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn cart(user: &str, version: u64) -> Cart {
        let mut c = Cart::empty(user, Utc::now());
        c.version = version;
        c
    }

    #[tokio::test]
    async fn a_fill_older_than_an_invalidation_is_refused() {
        let cache = MemoryCache::new(10, Duration::from_secs(60));
        cache.put(&cart("u", 1)).await;
        assert_eq!(cache.get("u").await.map(|c| c.version), Some(1));
        cache.invalidate("u", 2).await;
        assert!(cache.get("u").await.is_none(), "gone after a write");
        cache.put(&cart("u", 1)).await;
        assert!(cache.get("u").await.is_none(), "a slow reader's old cart");
        cache.put(&cart("u", 2)).await;
        assert_eq!(cache.get("u").await.map(|c| c.version), Some(2));
    }

    #[tokio::test]
    async fn it_stays_within_its_capacity_and_expires_entries() {
        let cache = MemoryCache::new(20, Duration::from_secs(60));
        for i in 0..100 {
            cache.put(&cart(&format!("u{i}"), 1)).await;
        }
        assert!(cache.len().await <= 20);
        assert!(cache.get("u99").await.is_some(), "the newest is kept");

        let short = MemoryCache::new(10, Duration::from_millis(10));
        short.put(&cart("u", 1)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(short.get("u").await.is_none());
    }
}
