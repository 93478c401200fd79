//! The in-process cache for `storefront up`: bounded, with a TTL per entry.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use crate::ports::Cache;

/// Default number of entries kept.
pub const DEFAULT_CAPACITY: usize = 10_000;

struct Entries {
    map: HashMap<String, (Instant, Vec<u8>)>,
    /// Insertion order, for eviction of the oldest entry when full.
    order: VecDeque<String>,
}

/// A bounded in-memory cache; the oldest entry is evicted when full.
pub struct MemoryCache {
    generation: AtomicU64,
    capacity: usize,
    entries: Mutex<Entries>,
}

impl MemoryCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            generation: AtomicU64::new(1),
            capacity: capacity.max(1),
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    pub async fn len(&self) -> usize {
        self.entries.lock().await.map.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

impl Cache for MemoryCache {
    fn generation(&self) -> BoxFuture<'_, Option<u64>> {
        futures::future::ready(Some(self.generation.load(Ordering::SeqCst))).boxed()
    }

    fn bump(&self) -> BoxFuture<'_, ()> {
        async move {
            self.generation.fetch_add(1, Ordering::SeqCst);
            // Older generations are unreachable now; free their memory.
            let mut e = self.entries.lock().await;
            e.map.clear();
            e.order.clear();
        }
        .boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        async move {
            let mut e = self.entries.lock().await;
            match e.map.get(key) {
                Some((expires, value)) if *expires > Instant::now() => Some(value.clone()),
                Some(_) => {
                    e.map.remove(key);
                    None
                }
                None => None,
            }
        }
        .boxed()
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> BoxFuture<'a, ()> {
        async move {
            let mut e = self.entries.lock().await;
            let expires = Instant::now() + ttl;
            if e.map
                .insert(key.to_string(), (expires, value.to_vec()))
                .is_none()
            {
                e.order.push_back(key.to_string());
            }
            while e.map.len() > self.capacity {
                match e.order.pop_front() {
                    Some(oldest) => {
                        e.map.remove(&oldest);
                    }
                    None => break,
                }
            }
            // Keys removed on expiry stay in `order` until popped; keep it bounded too.
            if e.order.len() > self.capacity * 2 {
                let Entries { map, order } = &mut *e;
                order.retain(|k| map.contains_key(k));
            }
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        futures::future::ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn evicts_the_oldest_beyond_capacity_and_expires() {
        let cache = MemoryCache::new(2);
        let ttl = Duration::from_secs(60);
        cache.put("a", b"1", ttl).await;
        cache.put("b", b"2", ttl).await;
        cache.put("c", b"3", ttl).await;
        assert_eq!(cache.len().await, 2);
        assert_eq!(cache.get("a").await, None);
        assert_eq!(cache.get("c").await.as_deref(), Some(&b"3"[..]));
        cache.put("d", b"4", Duration::from_millis(1)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(cache.get("d").await, None);
    }

    #[tokio::test]
    async fn bump_changes_the_generation() {
        let cache = MemoryCache::new(10);
        let g = cache.generation().await.expect("gen");
        cache.bump().await;
        assert_eq!(cache.generation().await, Some(g + 1));
    }
}
