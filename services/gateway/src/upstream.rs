//! Upstream instances and pools: load balancing (round robin or power of two choices), active
//! health checks (`GET /healthz`), passive outlier ejection, and the keep-alive HTTP client
//! every request goes through ([`crate::connections`]).

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::HeaderValue;
use rand::Rng;

pub use crate::connections::{HttpClient, Target, UpstreamError};
use crate::domain::config::{LoadBalancing, OutlierConfig};

/// Builds an upstream client (each serving thread keeps its own connections).
pub fn client(connect_timeout: Duration, max_idle_per_host: usize) -> HttpClient {
    HttpClient::new(connect_timeout, max_idle_per_host)
}

/// Instance ids, unique in the process.
static INSTANCE_IDS: AtomicU64 = AtomicU64::new(1);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One upstream instance and what the gateway knows of its health.
#[derive(Debug)]
pub struct Instance {
    /// Base URL, `http://host:port`.
    pub base: String,
    /// `host:port`, a metric label.
    pub authority: String,
    /// Where its connections go: `None` when the base URL is not `http://host[:port][/path]`
    /// (a request to it is then refused as a bad gateway, never sent elsewhere).
    target: Option<Target>,
    /// The base URL's path, put before every request's (empty for none).
    prefix: String,
    /// The `Host` of a request to this instance: its host, and its port unless the scheme's
    /// default.
    pub host: HeaderValue,
    service: String,
    healthy: AtomicBool,
    failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Instance {
    pub fn new(service: &str, base: &str) -> Self {
        let base = base.trim_end_matches('/').to_string();
        let parsed = base.parse::<http::Uri>().ok();
        let authority = parsed
            .as_ref()
            .and_then(|u| u.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| base.clone());
        let host = parsed
            .as_ref()
            .and_then(host_header)
            .unwrap_or_else(|| HeaderValue::from_static(""));
        let id = INSTANCE_IDS.fetch_add(1, Ordering::Relaxed);
        let target = parsed.as_ref().and_then(|u| {
            let host = u.host()?.trim_start_matches('[').trim_end_matches(']');
            (u.scheme_str() == Some("http") && u.query().is_none()).then(|| Target {
                id,
                host: host.to_string(),
                port: u.port_u16().unwrap_or(80),
            })
        });
        let prefix = parsed
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        Self {
            base,
            authority,
            target,
            prefix,
            host,
            service: service.to_string(),
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Where this instance's connections go, if its base URL is one the client can reach.
    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// The path put before every request's path on this instance (empty for none).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The request target (origin form) of `path_and_query` on this instance.
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        if self.prefix.is_empty() {
            return Ok(http::Uri::try_from(path_and_query)?);
        }
        Ok(http::Uri::try_from(format!(
            "{}{path_and_query}",
            self.prefix
        ))?)
    }

    /// Healthy by the last active check and not ejected.
    pub fn available(&self) -> bool {
        if !self.healthy.load(Ordering::Relaxed) {
            return false;
        }
        // Never ejected: no clock to read (every request picks an instance).
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until == 0 || until <= now_ms()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// A request answered normally.
    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// A request failed (connection, timeout, 502/503/504): eject after enough in a row.
    pub fn failed(&self, outlier: &OutlierConfig) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if outlier.consecutive_failures == 0 || n < outlier.consecutive_failures {
            return;
        }
        self.failures.store(0, Ordering::Relaxed);
        let times = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let ms = outlier
            .base_ejection_ms
            .saturating_mul(u64::from(times))
            .min(outlier.max_ejection_ms.max(outlier.base_ejection_ms));
        self.ejected_until_ms
            .store(now_ms() + ms, Ordering::Relaxed);
        metrics::counter!(
            "gateway_upstream_ejections_total",
            "service" => self.service.clone(),
            "instance" => self.authority.clone()
        )
        .increment(1);
        tracing::warn!(
            service = %self.service,
            instance = %self.authority,
            failures = n,
            ejected_ms = ms,
            "upstream instance ejected"
        );
    }

    /// The result of an active health check.
    pub fn set_health(&self, up: bool) {
        let was = self.healthy.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!(service = %self.service, instance = %self.authority, "upstream instance healthy again");
                // A recovered instance starts with a clean slate.
                self.ejections.store(0, Ordering::Relaxed);
            } else {
                tracing::warn!(service = %self.service, instance = %self.authority, "upstream instance failed its health check");
            }
        }
        metrics::gauge!(
            "gateway_upstream_healthy",
            "service" => self.service.clone(),
            "instance" => self.authority.clone()
        )
        .set(if up { 1.0 } else { 0.0 });
    }
}

/// Decrements an instance's in-flight count on drop.
pub struct InFlight(Arc<Instance>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The instances of one route and how to choose among them.
#[derive(Debug)]
pub struct Pool {
    pub instances: Vec<Arc<Instance>>,
    policy: LoadBalancing,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(instances: Vec<Arc<Instance>>, policy: LoadBalancing) -> Self {
        Self {
            instances,
            policy,
            next: AtomicUsize::new(0),
        }
    }

    /// An instance not in `tried`: an available one if there is any, else (every instance
    /// down or ejected) any untried one, because trying beats refusing outright.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let untried: Indices = (0..self.instances.len())
            .filter(|i| !tried.contains(i))
            .collect();
        let available: Indices = untried
            .iter()
            .copied()
            .filter(|&i| self.instances[i].available())
            .collect();
        let candidates = if available.is_empty() {
            untried
        } else {
            available
        };
        choose(&candidates, self.policy, &self.next, |i| {
            self.instances[i].in_flight()
        })
    }
}

/// Instance indices (candidates, instances tried), inline up to a pool of eight: every request
/// picks one, and most pools are smaller.
pub type Indices = smallvec::SmallVec<[usize; 8]>;

/// Picks among `candidates` by `policy` (pure but for the counter and the dice).
pub fn choose(
    candidates: &[usize],
    policy: LoadBalancing,
    next: &AtomicUsize,
    load: impl Fn(usize) -> usize,
) -> Option<usize> {
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => match policy {
            LoadBalancing::RoundRobin => Some(candidates[next.fetch_add(1, Ordering::Relaxed) % n]),
            LoadBalancing::PowerOfTwo => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (candidates[a], candidates[b]);
                Some(if load(b) < load(a) { b } else { a })
            }
        },
    }
}

/// `host[:port]` of `uri`, the port left out when it is the scheme's default (as clients
/// write `Host`).
fn host_header(uri: &http::Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match uri.port_u16() {
        Some(port) if port != default => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

/// One active health check: `GET <base><path>`, healthy on 2xx within `timeout`.
pub async fn probe(
    client: &HttpClient,
    instance: &Instance,
    path: &str,
    timeout: Duration,
) -> bool {
    let (Some(target), Ok(uri)) = (instance.target(), instance.uri(path)) else {
        return false;
    };
    let Ok(req) = http::Request::get(uri)
        .header(http::header::HOST, instance.host.clone())
        .body(Body::empty())
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, client.send(target, req)).await,
        Ok(Ok(resp)) if resp.status().is_success()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, policy: LoadBalancing) -> Pool {
        Pool::new(
            (0..n)
                .map(|i| {
                    Arc::new(Instance::new(
                        "s",
                        &format!("http://127.0.0.1:{}", 9000 + i),
                    ))
                })
                .collect(),
            policy,
        )
    }

    #[test]
    fn an_instance_places_a_path_under_its_base() {
        let plain = Instance::new("s", "http://10.0.0.1:8080/");
        assert_eq!(
            plain.uri("/v1/cart?x=1").expect("uri").to_string(),
            "/v1/cart?x=1"
        );
        let target = plain.target().expect("http");
        assert_eq!((target.host.as_str(), target.port), ("10.0.0.1", 8080));
        // A base with a path of its own keeps it in front.
        let nested = Instance::new("s", "http://10.0.0.1:8080/shop");
        assert_eq!(
            nested.uri("/v1/cart").expect("uri").to_string(),
            "/shop/v1/cart"
        );
        assert!(plain.uri("/v1/a b").is_err());
        // Port 80 by default, IPv6 without brackets, every instance its own id; no target
        // for what the client cannot reach.
        let v6 = Instance::new("s", "http://[::1]");
        let v6_target = v6.target().expect("http");
        assert_eq!((v6_target.host.as_str(), v6_target.port), ("::1", 80));
        assert_ne!(v6_target.id, target.id);
        assert!(Instance::new("s", "https://10.0.0.1").target().is_none());
        assert!(Instance::new("s", "not a url").target().is_none());
    }

    #[test]
    fn an_instances_host_leaves_out_the_default_port() {
        for (base, host) in [
            ("http://10.0.0.1:8080", "10.0.0.1:8080"),
            ("http://cart:80/", "cart"),
            ("http://cart", "cart"),
            ("https://cart:443", "cart"),
            ("https://cart:8443", "cart:8443"),
            ("http://[::1]:9000", "[::1]:9000"),
        ] {
            assert_eq!(Instance::new("s", base).host, host, "{base}");
        }
    }

    #[test]
    fn round_robin_takes_turns_and_skips_the_tried() {
        let p = pool(3, LoadBalancing::RoundRobin);
        let picks: Vec<usize> = (0..6).filter_map(|_| p.pick(&[])).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        let retry = p.pick(&[0]).expect("another");
        assert_ne!(retry, 0);
        assert_eq!(p.pick(&[0, 1, 2]), None);
    }

    #[test]
    fn power_of_two_prefers_the_less_loaded() {
        let p = pool(2, LoadBalancing::PowerOfTwo);
        let _busy: Vec<InFlight> = (0..5).map(|_| p.instances[0].start()).collect();
        for _ in 0..20 {
            assert_eq!(p.pick(&[]), Some(1));
        }
    }

    #[test]
    fn ejected_and_unhealthy_instances_are_skipped_until_none_is_left() {
        let p = pool(3, LoadBalancing::RoundRobin);
        let outlier = OutlierConfig {
            consecutive_failures: 2,
            base_ejection_ms: 60_000,
            max_ejection_ms: 60_000,
        };
        p.instances[0].failed(&outlier);
        assert!(p.instances[0].available(), "one failure is not enough");
        p.instances[0].failed(&outlier);
        assert!(p.instances[0].is_ejected());
        p.instances[1].set_health(false);
        for _ in 0..5 {
            assert_eq!(p.pick(&[]), Some(2));
        }
        // Everything down: still try something rather than fail outright.
        assert!(p.pick(&[2]).is_some());
    }

    #[test]
    fn ejections_grow_and_are_capped() {
        let i = Instance::new("s", "http://127.0.0.1:1");
        let outlier = OutlierConfig {
            consecutive_failures: 1,
            base_ejection_ms: 1_000,
            max_ejection_ms: 2_500,
        };
        i.failed(&outlier);
        let first = i.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        i.failed(&outlier);
        let second = i.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        i.failed(&outlier);
        let third = i.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        assert!(
            first <= 1_000 && second > 1_000 && second <= 2_000,
            "{first} {second}"
        );
        assert!(third <= 2_500 && third > 2_000, "{third}");
    }
}
