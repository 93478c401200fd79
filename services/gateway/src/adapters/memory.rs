//! Per-replica rate limits with `governor`'s keyed GCRA limiter. One limiter per rule; idle
//! buckets are dropped by [`LimitStore::maintain`] (`retain_recent` and `shrink_to_fit`), so
//! memory follows the number of recently active clients, not every client ever seen.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::domain::gcra::{Decision, Gcra};
use crate::ports::{Checked, LimitStore};

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

pub struct GovernorStore {
    limiter: Keyed,
    clock: DefaultClock,
    gcra: Gcra,
}

impl GovernorStore {
    pub fn new(gcra: Gcra) -> Self {
        let burst = NonZeroU32::new(gcra.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(Duration::from_micros(gcra.interval_us))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            clock: DefaultClock::default(),
            gcra,
        }
    }

    /// The GCRA this limiter enforces.
    pub fn gcra(&self) -> Gcra {
        self.gcra
    }

    fn decide(&self, bucket: String) -> Decision {
        let interval = self.gcra.interval_us;
        match self.limiter.check_key(&bucket) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = u64::from(self.gcra.burst.saturating_sub(remaining));
                Decision {
                    allowed: true,
                    remaining,
                    retry_after_us: 0,
                    reset_us: used * interval,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let wait_us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
                Decision {
                    allowed: false,
                    remaining: 0,
                    retry_after_us: wait_us.max(1),
                    reset_us: wait_us
                        .saturating_add(u64::from(self.gcra.burst.saturating_sub(1)) * interval),
                }
            }
        }
    }
}

impl LimitStore for GovernorStore {
    fn check(&self, bucket: String, _gcra: Gcra) -> Checked<'_> {
        Checked::Now(Ok(self.decide(bucket)))
    }

    fn maintain(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn buckets(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buckets_are_per_key_and_forgotten_when_idle() {
        let gcra = Gcra {
            interval_us: 20_000,
            burst: 2,
        };
        let store = GovernorStore::new(gcra);
        let check = |bucket: &str| match store.check(bucket.to_owned(), gcra) {
            Checked::Now(decision) => decision.expect("memory never fails"),
            Checked::Later(_) => panic!("memory decides at once"),
        };
        let a: Vec<bool> = (0..3).map(|_| check("a").allowed).collect();
        assert_eq!(a, vec![true, true, false]);
        let b = check("b");
        assert!(b.allowed);
        assert_eq!(b.remaining, 1);
        let refused = check("a");
        assert!(!refused.allowed && refused.retry_after_us > 0);
        assert_eq!(store.buckets(), 2);
        tokio::time::sleep(Duration::from_millis(60)).await;
        store.maintain();
        assert_eq!(store.buckets(), 0, "idle buckets are dropped");
    }
}
