//! The gateway configuration file (`gateway.yaml`, version 1), as the operator renders it into
//! the gateway ConfigMap (`operator/src/gateway_config.rs` defines the format), plus optional
//! fields only the gateway reads. Parsing never trusts the file: [`parse`] names the failing
//! field and [`GatewayConfig::validate`] checks what serde cannot.
//!
//! ```yaml
//! version: 1
//! routes:                       # longest pathPrefix wins
//!   - pathPrefix: /api/cart
//!     service: cart
//!     upstream: http://shop-cart-pods:8083   # a headless Service: an instance per pod
//!     rewrite: /v1/cart         # replaces pathPrefix before forwarding
//!     methods: [GET, POST, PUT, PATCH, DELETE]
//!     auth: authenticated       # public | authenticated | role
//!     role: admin               # only with auth: role
//!     # gateway-only, optional:
//!     instances: [http://10.0.0.7:8083, http://10.0.0.8:8083]  # instead of `upstream`
//!     loadBalancing: powerOfTwo # roundRobin (default) | powerOfTwo
//!     timeoutMs: 15000          # per try, until the response head
//!     retries: 2                # extra tries, idempotent methods only
//! rateLimit:
//!   enabled: true
//!   clusterWide: false
//!   store: memory               # memory | redis
//!   failureMode: open           # open | closed
//!   storeTimeoutMs: 100         # gateway-only: bound of one Redis decision, 1 to 500
//!   defaults: {key: ip, rate: 20, per: second, burst: 40}
//!   rules:                      # first match wins
//!     - {name: login, match: {pathPrefix: /api/sessions}, key: ip, rate: 10, per: minute, burst: 5}
//! trustedProxies: [10.244.0.0/16]
//! upstreamDefaults:             # gateway-only, optional
//!   timeoutMs: 15000
//!   retries: 2
//!   loadBalancing: roundRobin
//!   healthCheck: {path: /healthz, intervalMs: 5000, timeoutMs: 1000}
//!   outlier: {consecutiveFailures: 3, baseEjectionMs: 10000, maxEjectionMs: 60000}
//!   dnsRefreshMs: 5000          # re-resolve host names into an instance per address; 0 = off
//! ```
//!
//! Unknown fields are ignored, so an operator newer than the gateway does not break it.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use http::Method;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The only format version this gateway reads.
pub const VERSION: u32 = 1;

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Format version of this file.
    pub version: u32,
    /// Where requests go, by path prefix.
    pub routes: Vec<RouteConfig>,
    /// Rate limiting (absent: off).
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// CIDRs (or single addresses) whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Gateway-only: how upstreams are called unless a route says otherwise.
    #[serde(default)]
    pub upstream_defaults: UpstreamDefaults,
}

/// Who may use a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthPolicy {
    /// Anyone, no token needed.
    Public,
    /// Any valid token.
    Authenticated,
    /// A valid token carrying `role`.
    Role,
}

/// How a pool picks an instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancing {
    /// Each instance in turn.
    #[default]
    RoundRobin,
    /// Two random instances, the one with fewer requests in flight.
    PowerOfTwo,
}

/// One route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfig {
    /// Requests whose path starts with this prefix (at a `/` boundary) take this route.
    pub path_prefix: String,
    /// The component serving it (a label in logs and metrics).
    pub service: String,
    /// Base URL of the component's Service.
    pub upstream: String,
    /// What replaces `pathPrefix` in the forwarded path (absent: the path is kept).
    #[serde(default)]
    pub rewrite: Option<String>,
    /// Allowed HTTP methods.
    pub methods: Vec<String>,
    /// Who may call it.
    pub auth: AuthPolicy,
    /// The role required with `auth: role`.
    #[serde(default)]
    pub role: Option<String>,
    /// Gateway-only: instance base URLs balanced over instead of `upstream`.
    #[serde(default)]
    pub instances: Option<Vec<String>>,
    /// Gateway-only: overrides `upstreamDefaults.loadBalancing`.
    #[serde(default)]
    pub load_balancing: Option<LoadBalancing>,
    /// Gateway-only: overrides `upstreamDefaults.timeoutMs`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Gateway-only: overrides `upstreamDefaults.retries`.
    #[serde(default)]
    pub retries: Option<u32>,
}

impl RouteConfig {
    /// The instances this route balances over.
    pub fn instance_urls(&self) -> Vec<String> {
        match &self.instances {
            Some(list) if !list.is_empty() => list.clone(),
            _ => vec![self.upstream.clone()],
        }
    }
}

/// The host name and port of an instance URL, unless its host is an IP address (nothing to
/// resolve) or the URL does not parse (validation reports it).
pub fn dns_name(url: &str) -> Option<(String, u16)> {
    let uri = url.parse::<http::Uri>().ok()?;
    let host = uri.host()?;
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok()
    {
        return None;
    }
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Some((host.to_string(), port))
}

/// `url` with its host and port replaced by `addr` (scheme and path kept).
pub fn at_address(url: &str, addr: std::net::SocketAddr) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return url.to_string();
    };
    let scheme = uri.scheme_str().unwrap_or("http");
    let path = uri.path().trim_end_matches('/');
    format!("{scheme}://{addr}{path}")
}

/// Gateway-only defaults for calling upstreams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UpstreamDefaults {
    /// Per try, until the response head arrives.
    pub timeout_ms: u64,
    /// Extra tries on another instance, for idempotent methods only.
    pub retries: u32,
    pub load_balancing: LoadBalancing,
    pub health_check: HealthCheckConfig,
    pub outlier: OutlierConfig,
    /// How often an instance URL with a host name is resolved again; each address it
    /// resolves to is an instance of its own (a headless Kubernetes Service names its ready
    /// pods). 0 turns this off: the name is then one instance, resolved at each connect.
    pub dns_refresh_ms: u64,
}

impl Default for UpstreamDefaults {
    fn default() -> Self {
        Self {
            timeout_ms: 15_000,
            retries: 2,
            load_balancing: LoadBalancing::RoundRobin,
            health_check: HealthCheckConfig::default(),
            outlier: OutlierConfig::default(),
            dns_refresh_ms: 5_000,
        }
    }
}

/// Active health checks: `GET <instance><path>` every `intervalMs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HealthCheckConfig {
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/healthz".into(),
            interval_ms: 5_000,
            timeout_ms: 1_000,
        }
    }
}

/// Passive outlier ejection: an instance failing `consecutiveFailures` times in a row
/// (connection error, timeout, 502/503/504) is left out for `baseEjectionMs` times the number
/// of its ejections so far, at most `maxEjectionMs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OutlierConfig {
    pub consecutive_failures: u32,
    pub base_ejection_ms: u64,
    pub max_ejection_ms: u64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            base_ejection_ms: 10_000,
            max_ejection_ms: 60_000,
        }
    }
}

/// Where rate-limit counters live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Per replica, in memory.
    #[default]
    Memory,
    /// Shared by every replica, in Redis (`gateway.cache_url`).
    Redis,
}

/// What happens when the shared store cannot answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Admit the request.
    #[default]
    Open,
    /// Reject it with 503.
    Closed,
}

/// What requests are counted per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKey {
    /// The verified user (`sub`); the client IP for anonymous requests.
    User,
    /// The client IP (see `trustedProxies`).
    Ip,
    /// One budget for everyone.
    Global,
}

/// Period of a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Second,
    Minute,
}

impl Per {
    pub fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
        }
    }
}

/// A token bucket: `rate` requests per `per`, bursts of `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    pub key: LimitKey,
    pub rate: u32,
    pub per: Per,
    pub burst: u32,
}

/// The rate-limit section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub cluster_wide: bool,
    pub store: Store,
    pub failure_mode: FailureMode,
    /// Limit for requests no rule matches; absent means unlimited.
    pub defaults: Option<Limit>,
    /// Rules, first match wins.
    pub rules: Vec<RuleConfig>,
    /// Gateway-only: bound of one decision in the shared store (default 100 ms, at most
    /// [`MAX_STORE_TIMEOUT_MS`]).
    pub store_timeout_ms: Option<u64>,
}

/// The most `storeTimeoutMs` may be: the bound the gateway puts on every Redis connect and
/// reply, which a longer decision bound would never reach.
pub const MAX_STORE_TIMEOUT_MS: u64 = 500;

/// What a rule matches on; every given field must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RuleMatch {
    pub path_prefix: Option<String>,
    /// The `service` of the route the request takes.
    pub upstream: Option<String>,
}

/// One named rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleConfig {
    /// Rule name (a metric label).
    pub name: String,
    #[serde(rename = "match", default)]
    pub matches: RuleMatch,
    #[serde(flatten)]
    pub limit: Limit,
}

/// Why a configuration was refused: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<(String, String)>);

impl ConfigError {
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![(field.into(), message.into())])
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        f.write_str(&parts.join("; "))
    }
}

/// Parses and validates a YAML (or JSON) configuration text.
pub fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let config: GatewayConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "(file)".into() } else { path };
        ConfigError::one(field, e.into_inner().to_string())
    })?;
    config.validate()?;
    Ok(config)
}

/// Parses a trusted proxy entry: a CIDR or a single address.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

const ROLES: &[&str] = &["customer", "admin", "partner"];

fn valid_prefix(p: &str) -> bool {
    p.starts_with('/') && !p.contains(['?', '#', ' '])
}

fn check_upstream_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("must be an http:// URL".into());
    }
    if uri.authority().is_none() {
        return Err("needs a host".into());
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err("must be a base URL without a path".into());
    }
    Ok(())
}

fn check_limit(field: &str, l: &Limit, errors: &mut Vec<(String, String)>) {
    if l.rate == 0 {
        errors.push((format!("{field}.rate"), "must be at least 1".into()));
    }
    if l.burst == 0 {
        errors.push((format!("{field}.burst"), "must be at least 1".into()));
    }
}

impl GatewayConfig {
    /// Checks what serde cannot: version, prefixes, URLs, methods, roles, limits, CIDRs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors: Vec<(String, String)> = Vec::new();
        if self.version != VERSION {
            errors.push((
                "version".into(),
                format!(
                    "unsupported version {}; this gateway reads {VERSION}",
                    self.version
                ),
            ));
        }
        if self.routes.is_empty() {
            errors.push(("routes".into(), "at least one route is needed".into()));
        }
        let mut prefixes = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let f = |name: &str| format!("routes[{i}].{name}");
            if !valid_prefix(&r.path_prefix) {
                errors.push((
                    f("pathPrefix"),
                    "must start with / and hold no ? # or space".into(),
                ));
            } else if !prefixes.insert(r.path_prefix.trim_end_matches('/').to_string()) {
                errors.push((
                    f("pathPrefix"),
                    format!("duplicate prefix {}", r.path_prefix),
                ));
            }
            if let Some(rw) = &r.rewrite
                && !rw.is_empty()
                && !valid_prefix(rw)
            {
                errors.push((f("rewrite"), "must be empty or start with /".into()));
            }
            if r.service.trim().is_empty() {
                errors.push((f("service"), "must not be empty".into()));
            }
            for (j, url) in r.instance_urls().iter().enumerate() {
                if let Err(e) = check_upstream_url(url) {
                    let field = if r.instances.as_ref().is_some_and(|v| !v.is_empty()) {
                        format!("routes[{i}].instances[{j}]")
                    } else {
                        f("upstream")
                    };
                    errors.push((field, e));
                }
            }
            if r.methods.is_empty() {
                errors.push((f("methods"), "at least one method is needed".into()));
            }
            for (j, m) in r.methods.iter().enumerate() {
                let upper = m.to_ascii_uppercase();
                if upper != *m || Method::from_bytes(m.as_bytes()).is_err() {
                    errors.push((
                        format!("routes[{i}].methods[{j}]"),
                        format!("`{m}` is not an upper-case HTTP method"),
                    ));
                }
            }
            match (r.auth, r.role.as_deref()) {
                (AuthPolicy::Role, None) => {
                    errors.push((f("role"), "auth: role needs a role".into()));
                }
                (AuthPolicy::Role, Some(role)) if !ROLES.contains(&role) => {
                    errors.push((
                        f("role"),
                        format!("unknown role `{role}`; known: {}", ROLES.join(", ")),
                    ));
                }
                (AuthPolicy::Public | AuthPolicy::Authenticated, Some(_)) => {
                    errors.push((f("role"), "a role is only allowed with auth: role".into()));
                }
                _ => {}
            }
            if r.timeout_ms == Some(0) {
                errors.push((f("timeoutMs"), "must be at least 1".into()));
            }
        }
        let rl = &self.rate_limit;
        if rl.cluster_wide && rl.store != Store::Redis {
            errors.push((
                "rateLimit.store".into(),
                "clusterWide: true needs store: redis".into(),
            ));
        }
        if let Some(d) = &rl.defaults {
            check_limit("rateLimit.defaults", d, &mut errors);
        }
        let mut names = HashSet::new();
        for (i, rule) in rl.rules.iter().enumerate() {
            let f = |name: &str| format!("rateLimit.rules[{i}].{name}");
            let name_ok = !rule.name.is_empty()
                && rule
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                errors.push((f("name"), "must be non-empty [A-Za-z0-9_-]".into()));
            } else if !names.insert(rule.name.as_str()) || rule.name == "default" {
                errors.push((
                    f("name"),
                    format!("duplicate or reserved name `{}`", rule.name),
                ));
            }
            if let Some(p) = &rule.matches.path_prefix
                && !valid_prefix(p)
            {
                errors.push((f("match.pathPrefix"), "must start with /".into()));
            }
            check_limit(&format!("rateLimit.rules[{i}]"), &rule.limit, &mut errors);
        }
        match rl.store_timeout_ms {
            Some(0) => errors.push((
                "rateLimit.storeTimeoutMs".into(),
                "must be at least 1".into(),
            )),
            Some(ms) if ms > MAX_STORE_TIMEOUT_MS => errors.push((
                "rateLimit.storeTimeoutMs".into(),
                format!("must be at most {MAX_STORE_TIMEOUT_MS} (the bound of every Redis call)"),
            )),
            _ => {}
        }
        for (i, cidr) in self.trusted_proxies.iter().enumerate() {
            if parse_cidr(cidr).is_none() {
                errors.push((
                    format!("trustedProxies[{i}]"),
                    format!("`{cidr}` is not a CIDR or an IP address"),
                ));
            }
        }
        let d = &self.upstream_defaults;
        if d.timeout_ms == 0 {
            errors.push((
                "upstreamDefaults.timeoutMs".into(),
                "must be at least 1".into(),
            ));
        }
        if d.dns_refresh_ms != 0 && d.dns_refresh_ms < 100 {
            errors.push((
                "upstreamDefaults.dnsRefreshMs".into(),
                "must be 0 (off) or at least 100".into(),
            ));
        }
        if d.health_check.interval_ms < 50 || d.health_check.timeout_ms == 0 {
            errors.push((
                "upstreamDefaults.healthCheck".into(),
                "intervalMs must be at least 50 and timeoutMs at least 1".into(),
            ));
        }
        if !d.health_check.path.starts_with('/') {
            errors.push((
                "upstreamDefaults.healthCheck.path".into(),
                "must start with /".into(),
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }
}

/// The built-in configuration of `storefront up`: the operator's routes, every service on its
/// default local port, no rate limits.
pub const BUILTIN: &str = include_str!("builtin.yaml");

/// [`BUILTIN`], parsed.
pub fn builtin() -> GatewayConfig {
    // The unit tests prove the built-in text parses; fall back to nothing rather than panic.
    parse(BUILTIN).unwrap_or_else(|_| GatewayConfig {
        version: VERSION,
        routes: Vec::new(),
        rate_limit: RateLimitConfig::default(),
        trusted_proxies: Vec::new(),
        upstream_defaults: UpstreamDefaults::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `operator/src/gateway_config.rs` renders (serde_yaml of its structs).
    const OPERATOR_RENDERED: &str = r#"
version: 1
routes:
- pathPrefix: /.well-known/jwks.json
  service: auth
  upstream: http://shop-auth:8081
  rewrite: /.well-known/jwks.json
  methods:
  - GET
  - HEAD
  auth: public
- pathPrefix: /api/admin/products
  service: search
  upstream: http://shop-search:8082
  rewrite: /v1/products
  methods: [GET, HEAD, POST, PUT, PATCH, DELETE]
  auth: role
  role: admin
rateLimit:
  enabled: true
  clusterWide: true
  store: redis
  failureMode: closed
  defaults:
    key: ip
    rate: 20
    per: second
    burst: 40
  rules:
  - name: login
    match:
      pathPrefix: /api/auth/login
    key: ip
    rate: 10
    per: minute
    burst: 5
  - name: checkout
    match:
      upstream: order
    key: user
    rate: 30
    per: minute
    burst: 30
trustedProxies:
- 10.0.0.0/8
"#;

    #[test]
    fn the_operators_rendering_parses_with_gateway_defaults() {
        let c = parse(OPERATOR_RENDERED).expect("valid");
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].auth, AuthPolicy::Role);
        assert_eq!(c.routes[1].role.as_deref(), Some("admin"));
        assert_eq!(c.routes[1].instance_urls(), vec!["http://shop-search:8082"]);
        let rl = &c.rate_limit;
        assert!(rl.enabled && rl.cluster_wide);
        assert_eq!(
            (rl.store, rl.failure_mode),
            (Store::Redis, FailureMode::Closed)
        );
        assert_eq!(rl.rules[0].limit.per, Per::Minute);
        assert_eq!(rl.rules[1].matches.upstream.as_deref(), Some("order"));
        assert_eq!(c.upstream_defaults, UpstreamDefaults::default());
    }

    #[test]
    fn the_builtin_config_has_the_operators_routes_on_local_ports() {
        let c = parse(BUILTIN).expect("builtin parses");
        let find = |p: &str| c.routes.iter().find(|r| r.path_prefix == p).expect(p);
        assert_eq!(find("/api/sessions").upstream, "http://127.0.0.1:8081");
        assert_eq!(find("/api/search").upstream, "http://127.0.0.1:8082");
        assert_eq!(find("/api/cart").upstream, "http://127.0.0.1:8083");
        assert_eq!(find("/api/orders").upstream, "http://127.0.0.1:8084");
        assert_eq!(find("/api/deliveries").upstream, "http://127.0.0.1:8085");
        assert_eq!(
            find("/api/admin/notifications").upstream,
            "http://127.0.0.1:8086"
        );
        assert_eq!(c.routes.len(), 18);
        assert_eq!(builtin(), c);
    }

    #[test]
    fn host_names_are_told_from_addresses_and_replaced_by_them() {
        assert_eq!(
            dns_name("http://shop-search:8082"),
            Some(("shop-search".into(), 8082))
        );
        assert_eq!(dns_name("http://search"), Some(("search".into(), 80)));
        assert_eq!(dns_name("http://10.1.2.3:8082"), None);
        assert_eq!(dns_name("http://[::1]:8082"), None);
        assert_eq!(dns_name("not a url"), None);
        let v4: std::net::SocketAddr = "10.1.2.3:8082".parse().expect("addr");
        let v6: std::net::SocketAddr = "[fd00::7]:8082".parse().expect("addr");
        assert_eq!(
            at_address("http://shop-search:8082/", v4),
            "http://10.1.2.3:8082"
        );
        assert_eq!(
            at_address("http://shop-search:8082", v6),
            "http://[fd00::7]:8082"
        );
        let err = parse(
            "version: 1\nroutes:\n- {pathPrefix: /a, service: a, upstream: 'http://a:1', methods: [GET], auth: public}\nupstreamDefaults: {dnsRefreshMs: 50}\n",
        )
        .expect_err("too often");
        assert!(
            err.to_string().contains("upstreamDefaults.dnsRefreshMs"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse("version: 1\nroutes:\n- pathPrefix: /a\n  service: a\n  upstream: http://a:1\n  methods: [GET]\n  auth: sometimes\n")
            .expect_err("bad auth");
        assert!(err.to_string().starts_with("routes[0].auth:"), "{err}");
        let err = parse("version: 1\nroutes: [").expect_err("bad yaml");
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn validation_refuses_what_serde_accepts() {
        let text = r#"
version: 2
routes:
- {pathPrefix: api, service: a, upstream: "https://a:1", methods: [get], auth: role}
- {pathPrefix: /b, service: b, upstream: "http://b:1/path", methods: [], auth: public, role: admin}
- {pathPrefix: /b/, service: b, upstream: "http://b:1", methods: [GET], auth: role, role: wizard}
rateLimit:
  clusterWide: true
  rules:
  - {name: "bad name", key: ip, rate: 0, per: second, burst: 0}
  - {name: default, key: ip, rate: 1, per: second, burst: 1}
trustedProxies: [10.0.0.0/33, not-an-ip]
"#;
        let err = parse(text).expect_err("invalid");
        let fields: Vec<&str> = err.0.iter().map(|(f, _)| f.as_str()).collect();
        for expected in [
            "version",
            "routes[0].pathPrefix",
            "routes[0].upstream",
            "routes[0].methods[0]",
            "routes[0].role",
            "routes[1].upstream",
            "routes[1].methods",
            "routes[1].role",
            "routes[2].pathPrefix",
            "routes[2].role",
            "rateLimit.store",
            "rateLimit.rules[0].name",
            "rateLimit.rules[0].rate",
            "rateLimit.rules[0].burst",
            "rateLimit.rules[1].name",
            "trustedProxies[0]",
            "trustedProxies[1]",
        ] {
            assert!(fields.contains(&expected), "{expected} missing in {err}");
        }
    }

    #[test]
    fn a_store_timeout_is_from_1_ms_to_the_bound_of_a_redis_call() {
        let config = |ms: u64| {
            format!(
                "version: 1\nroutes:\n- {{pathPrefix: /a, service: a, upstream: \"http://a:1\", methods: [GET], auth: public}}\nrateLimit:\n  storeTimeoutMs: {ms}\n"
            )
        };
        for ms in [0, MAX_STORE_TIMEOUT_MS + 1, 10_000] {
            let err = parse(&config(ms)).expect_err("out of range");
            assert!(
                err.to_string()
                    .starts_with("rateLimit.storeTimeoutMs: must be at"),
                "{ms}: {err}"
            );
        }
        for ms in [1, 100, MAX_STORE_TIMEOUT_MS] {
            parse(&config(ms)).expect("in range");
        }
    }

    #[test]
    fn trusted_proxies_take_cidrs_and_single_addresses() {
        assert!(parse_cidr("10.0.0.0/8").is_some());
        assert!(parse_cidr("192.0.2.7").is_some());
        assert!(parse_cidr("::1").is_some());
        assert!(parse_cidr("fd00::/8").is_some());
        assert!(parse_cidr("example.com").is_none());
    }
}
