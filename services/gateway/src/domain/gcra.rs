//! GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp) and the
//! rate-limit response headers.
//!
//! A limit of `rate` per `per` with bursts of `burst` has an emission interval
//! `T = per / rate`; a key's state is its theoretical arrival time `TAT`. A request at `now`
//! is admitted when `max(TAT, now) + T - now <= T * burst`, and then moves `TAT` there. The
//! Redis store runs the same arithmetic in one Lua script ([`REDIS_SCRIPT`]), in microseconds
//! of the Redis server's clock, so every gateway replica shares one budget and one clock.
//!
//! Headers follow the IETF draft "RateLimit header fields for HTTP" (structured fields):
//! `RateLimit-Policy: "<rule>";q=<burst>;w=<seconds to refill the bucket>` and
//! `RateLimit: "<rule>";r=<remaining>;t=<seconds until the bucket is full again>`, plus
//! `Retry-After` on a 429.

use crate::domain::config::Limit;

const MICROS: u64 = 1_000_000;

/// A limit in GCRA terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gcra {
    /// Emission interval `T`, in microseconds.
    pub interval_us: u64,
    /// Bucket size.
    pub burst: u32,
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests still admitted right now after this one.
    pub remaining: u32,
    /// Until the next request would be admitted (0 when allowed).
    pub retry_after_us: u64,
    /// Until the bucket is full again.
    pub reset_us: u64,
}

impl Gcra {
    pub fn from_limit(limit: &Limit) -> Self {
        let rate = u64::from(limit.rate.max(1));
        Self {
            interval_us: (limit.per.seconds() * MICROS / rate).max(1),
            burst: limit.burst.max(1),
        }
    }

    /// `T * burst`: how far ahead of `now` the TAT may run.
    pub fn capacity_us(&self) -> u64 {
        self.interval_us.saturating_mul(u64::from(self.burst))
    }

    /// Decides for a request at `now` given the stored TAT; returns the decision and the TAT
    /// to store when admitted.
    pub fn decide(&self, tat: Option<u64>, now: u64) -> (Decision, Option<u64>) {
        let tat = tat.unwrap_or(now).max(now);
        let new_tat = tat + self.interval_us;
        let ahead = new_tat - now;
        let cap = self.capacity_us();
        if ahead > cap {
            let decision = Decision {
                allowed: false,
                remaining: 0,
                retry_after_us: ahead - cap,
                reset_us: tat - now,
            };
            return (decision, None);
        }
        let remaining = u32::try_from((cap - ahead) / self.interval_us).unwrap_or(u32::MAX);
        let decision = Decision {
            allowed: true,
            remaining,
            retry_after_us: 0,
            reset_us: ahead,
        };
        (decision, Some(new_tat))
    }

    /// Seconds to refill an empty bucket: the policy's window.
    pub fn window_secs(&self) -> u64 {
        ceil_secs(self.capacity_us()).max(1)
    }
}

/// Whole seconds, rounded up.
pub fn ceil_secs(us: u64) -> u64 {
    us.div_ceil(MICROS)
}

/// `RateLimit-Policy` value.
pub fn policy_header(rule: &str, gcra: &Gcra) -> String {
    format!("\"{rule}\";q={};w={}", gcra.burst, gcra.window_secs())
}

/// The start of a `RateLimit` value under `rule`, up to its figures: `"<rule>";r=`.
pub fn ratelimit_start(rule: &str) -> String {
    format!("\"{rule}\";r=")
}

/// The rest of a `RateLimit` value after [`ratelimit_start`]: `<remaining>;t=<reset>`.
pub fn push_ratelimit_figures(out: &mut Vec<u8>, decision: &Decision) {
    // Pushed, not `format!`ed: every admitted request under a rule carries one.
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(decision.remaining).as_bytes());
    out.extend_from_slice(b";t=");
    out.extend_from_slice(digits.format(ceil_secs(decision.reset_us)).as_bytes());
}

/// `RateLimit` value.
pub fn ratelimit_header(rule: &str, decision: &Decision) -> String {
    let mut out = ratelimit_start(rule).into_bytes();
    push_ratelimit_figures(&mut out, decision);
    String::from_utf8(out).unwrap_or_default()
}

/// `Retry-After` seconds of a refused request (at least 1).
pub fn retry_after_secs(decision: &Decision) -> u64 {
    ceil_secs(decision.retry_after_us).max(1)
}

/// One atomic GCRA decision in Redis. `KEYS[1]`: the bucket; `ARGV[1]`: `T` in µs;
/// `ARGV[2]`: burst. Returns `{allowed, remaining, retry_after_us, reset_us}`. The TAT is
/// stored with a `PX` expiry at the moment the bucket would be full again, so idle keys vanish.
pub const REDIS_SCRIPT: &str = r"
local t = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + t
local ahead = new_tat - now
local cap = t * burst
if ahead > cap then
  return {0, 0, ahead - cap, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil(ahead / 1000)))
return {1, math.floor((cap - ahead) / t), 0, ahead}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::{LimitKey, Per};

    fn limit(rate: u32, per: Per, burst: u32) -> Gcra {
        Gcra::from_limit(&Limit {
            key: LimitKey::Ip,
            rate,
            per,
            burst,
        })
    }

    #[test]
    fn a_fresh_bucket_admits_a_burst_then_refuses() {
        let g = limit(10, Per::Minute, 5);
        assert_eq!(g.interval_us, 6_000_000);
        let now = 1_000_000_000;
        let mut tat = None;
        for expected_remaining in (0..5).rev() {
            let (d, next) = g.decide(tat, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = next;
        }
        let (d, next) = g.decide(tat, now);
        assert!(!d.allowed);
        assert_eq!(next, None);
        assert_eq!(d.retry_after_us, 6_000_000);
        assert_eq!(d.reset_us, 30_000_000);
        assert_eq!(retry_after_secs(&d), 6);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let g = limit(2, Per::Second, 1);
        let now = 10_000_000;
        let (d, tat) = g.decide(None, now);
        assert!(d.allowed);
        assert!(!g.decide(tat, now + 499_999).0.allowed);
        let (d, _) = g.decide(tat, now + 500_000);
        assert!(d.allowed);
        // A long idle period never banks more than the burst.
        let (d, _) = g.decide(tat, now + 3_600_000_000);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn sustained_admissions_match_rate_times_time_plus_burst() {
        let g = limit(20, Per::Second, 10);
        let mut tat = None;
        let mut admitted = 0;
        // One request every millisecond for two seconds.
        for ms in 0..2_000u64 {
            let (d, next) = g.decide(tat, 5_000_000 + ms * 1_000);
            if d.allowed {
                admitted += 1;
                tat = next;
            }
        }
        assert!((49..=51).contains(&admitted), "{admitted}");
    }

    #[test]
    fn headers_use_the_structured_draft_format() {
        let g = limit(10, Per::Minute, 5);
        assert_eq!(policy_header("login", &g), "\"login\";q=5;w=30");
        let (d, _) = g.decide(None, 0);
        assert_eq!(ratelimit_header("login", &d), "\"login\";r=4;t=6");
        let g = limit(100, Per::Second, 100);
        assert_eq!(policy_header("default", &g), "\"default\";q=100;w=1");
    }
}
