//! The gateway's routing and rate-limit configuration, rendered from a
//! Storefront's spec into `gateway.yaml`. The operator puts the file in the
//! `<name>-gateway` ConfigMap, which the gateway mounts at
//! [`GATEWAY_CONFIG_PATH`]; the SHA-256 of the text goes on the gateway's pod
//! template so that a change rolls the gateway.
//!
//! Format (version 1):
//!
//! ```yaml
//! version: 1
//! routes:                       # longest pathPrefix wins
//!   - pathPrefix: /api/cart     # what the client asks for
//!     service: cart             # which component serves it
//!     upstream: http://shop-cart-pods:8083   # the headless Service: one instance per pod
//!     rewrite: /v1              # replaces pathPrefix before forwarding
//!     methods: [GET, POST, PUT, PATCH, DELETE]
//!     auth: authenticated       # public | authenticated | role
//!     role: admin               # only with auth: role
//! rateLimit:
//!   enabled: true
//!   clusterWide: false          # counters in Redis (store: redis) or per replica (store: memory)
//!   store: memory
//!   failureMode: open           # open | closed, when the store is unreachable
//!   defaults: {key: ip, rate: 20, per: second, burst: 40}   # absent: unmatched requests unlimited
//!   rules:                      # first match wins
//!     - {name: login, match: {pathPrefix: /api/sessions}, key: ip, rate: 10, per: minute, burst: 5}
//! trustedProxies: [10.244.0.0/16]
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    Component, Storefront,
    crd::{FailureMode, RateLimitDefaults, RateLimitKey, RateLimitRule},
};

/// Where the gateway finds its configuration file inside its container.
pub const GATEWAY_CONFIG_PATH: &str = "/etc/storefront/gateway/gateway.yaml";
/// Key of the file in the gateway ConfigMap.
pub const GATEWAY_CONFIG_KEY: &str = "gateway.yaml";

/// The whole gateway configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Format version of this file.
    pub version: u32,
    /// Where requests go, by path prefix.
    pub routes: Vec<Route>,
    /// Rate limiting.
    pub rate_limit: RateLimitConfig,
    /// CIDRs whose forwarding headers are believed.
    pub trusted_proxies: Vec<String>,
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

/// One route: a path prefix served by one component.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Requests whose path starts with this prefix take this route.
    pub path_prefix: String,
    /// The component serving it.
    pub service: Component,
    /// Base URL of the component's Service, `http://<name>-<component>:<port>`.
    pub upstream: String,
    /// What replaces `pathPrefix` in the forwarded path.
    pub rewrite: String,
    /// Allowed HTTP methods.
    pub methods: Vec<String>,
    /// Who may call it.
    pub auth: AuthPolicy,
    /// The role required with `auth: role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// The rate-limit section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitConfig {
    /// Whether requests are limited at all.
    pub enabled: bool,
    /// Whether counters are shared between replicas.
    pub cluster_wide: bool,
    /// `redis` when cluster-wide, else `memory`.
    pub store: String,
    /// Behaviour when the store is unreachable.
    pub failure_mode: FailureMode,
    /// Limit for requests no rule matches; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Limit>,
    /// Rules, first match wins.
    pub rules: Vec<RuleConfig>,
}

/// Period of a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Second,
    Minute,
}

/// A token-bucket limit: `rate` requests per `per`, bursts of `burst`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    /// What requests are counted per.
    pub key: RateLimitKey,
    /// Sustained requests per period.
    pub rate: u32,
    /// The period.
    pub per: Per,
    /// Bucket size.
    pub burst: u32,
}

impl Limit {
    /// Sustained rate in requests per second.
    pub fn per_second(&self) -> f64 {
        match self.per {
            Per::Second => f64::from(self.rate),
            Per::Minute => f64::from(self.rate) / 60.0,
        }
    }
}

/// What a rule matches on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleMatch {
    /// Path prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Component the request is routed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Component>,
}

/// One named rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleConfig {
    /// Rule name (a metric label).
    pub name: String,
    /// What it matches.
    #[serde(rename = "match")]
    pub matches: RuleMatch,
    /// The limit.
    #[serde(flatten)]
    pub limit: Limit,
}

const READ: &[&str] = &["GET", "HEAD"];
const WRITE: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// The platform's routes: (path prefix, component, rewrite, methods, auth, role).
/// Longest prefix wins, so `/api/admin/...` routes override the public ones.
/// (path prefix, component, rewrite, methods, auth, role)
type RouteRow = (
    &'static str,
    Component,
    &'static str,
    &'static [&'static str],
    AuthPolicy,
    Option<&'static str>,
);

const ROUTES: &[RouteRow] = &[
    (
        "/.well-known/jwks.json",
        Component::Auth,
        "/.well-known/jwks.json",
        READ,
        AuthPolicy::Public,
        None,
    ),
    (
        "/api/accounts",
        Component::Auth,
        "/v1/accounts",
        &["POST"],
        AuthPolicy::Public,
        None,
    ),
    (
        "/api/sessions",
        Component::Auth,
        "/v1/sessions",
        &["POST", "DELETE"],
        AuthPolicy::Public,
        None,
    ),
    (
        "/api/me",
        Component::Auth,
        "/v1/me",
        READ,
        AuthPolicy::Authenticated,
        None,
    ),
    (
        "/api/products",
        Component::Search,
        "/v1/products",
        READ,
        AuthPolicy::Public,
        None,
    ),
    (
        "/api/search",
        Component::Search,
        "/v1/search",
        READ,
        AuthPolicy::Public,
        None,
    ),
    (
        "/api/suggest",
        Component::Search,
        "/v1/suggest",
        READ,
        AuthPolicy::Public,
        None,
    ),
    (
        "/api/admin/products",
        Component::Search,
        "/v1/products",
        WRITE,
        AuthPolicy::Role,
        Some("admin"),
    ),
    (
        "/api/admin/reindex",
        Component::Search,
        "/v1/admin/reindex",
        &["POST"],
        AuthPolicy::Role,
        Some("admin"),
    ),
    (
        "/api/cart",
        Component::Cart,
        "/v1/cart",
        WRITE,
        AuthPolicy::Authenticated,
        None,
    ),
    (
        "/api/orders",
        Component::Order,
        "/v1/orders",
        WRITE,
        AuthPolicy::Authenticated,
        None,
    ),
    (
        "/api/admin/stock",
        Component::Order,
        "/v1/stock",
        &["GET", "HEAD", "PUT"],
        AuthPolicy::Role,
        Some("admin"),
    ),
    (
        "/api/deliveries",
        Component::Delivery,
        "/v1/deliveries",
        READ,
        AuthPolicy::Authenticated,
        None,
    ),
    (
        "/api/partner/deliveries",
        Component::Delivery,
        "/v1/partner/deliveries",
        WRITE,
        AuthPolicy::Role,
        Some("partner"),
    ),
    (
        "/api/partner",
        Component::Delivery,
        "/v1/partner",
        READ,
        AuthPolicy::Role,
        Some("partner"),
    ),
    (
        "/api/partner/availability",
        Component::Delivery,
        "/v1/partner/availability",
        &["PUT"],
        AuthPolicy::Role,
        Some("partner"),
    ),
    (
        "/api/admin/partners",
        Component::Delivery,
        "/v1/partners",
        WRITE,
        AuthPolicy::Role,
        Some("admin"),
    ),
    (
        "/api/admin/notifications",
        Component::Notification,
        "/v1/notifications",
        READ,
        AuthPolicy::Role,
        Some("admin"),
    ),
];

/// Name of a component's Service: `<storefront>-<component>`.
pub fn service_name(sf_name: &str, component: Component) -> String {
    format!("{sf_name}-{component}")
}

/// Name of a component's headless Service, whose DNS name lists its ready pods:
/// `<storefront>-<short component>-pods`.
pub fn pods_service_name(sf_name: &str, component: Component) -> String {
    format!("{sf_name}-{}-pods", component.short())
}

/// In-cluster base URL of a component, for the services' typed clients:
/// `http://<storefront>-<component>:<port>` (its ClusterIP Service).
pub fn upstream_url(sf_name: &str, component: Component) -> String {
    format!(
        "http://{}:{}",
        service_name(sf_name, component),
        component.default_port()
    )
}

/// The gateway's base URL of a component: its headless Service,
/// `http://<storefront>-<short component>-pods:<port>`. The gateway resolves the name into
/// one instance per ready pod and balances, health-checks and ejects them one by one; through
/// the ClusterIP Service kube-proxy would spread its keep-alive connections, not requests.
pub fn gateway_upstream_url(sf_name: &str, component: Component) -> String {
    format!(
        "http://{}:{}",
        pods_service_name(sf_name, component),
        component.default_port()
    )
}

fn limit(
    key: RateLimitKey,
    per_second: Option<i32>,
    per_minute: Option<i32>,
    burst: Option<i32>,
) -> Limit {
    let (rate, per) = match (per_second, per_minute) {
        (Some(r), _) => (r, Per::Second),
        (None, Some(r)) => (r, Per::Minute),
        // The CRD's rules require exactly one; treat a missing rate as 1/s.
        (None, None) => (1, Per::Second),
    };
    let rate = u32::try_from(rate.max(1)).unwrap_or(1);
    let burst = burst
        .and_then(|b| u32::try_from(b).ok())
        .filter(|b| *b >= 1)
        .unwrap_or(rate);
    Limit {
        key,
        rate,
        per,
        burst,
    }
}

fn defaults_limit(d: &RateLimitDefaults) -> Limit {
    limit(d.key, d.requests_per_second, d.requests_per_minute, d.burst)
}

fn rule_config(r: &RateLimitRule) -> RuleConfig {
    RuleConfig {
        name: r.name.clone(),
        matches: RuleMatch {
            path_prefix: r.path_prefix.clone(),
            upstream: r.upstream,
        },
        limit: limit(r.key, r.requests_per_second, r.requests_per_minute, r.burst),
    }
}

/// The gateway configuration for a Storefront (pure).
pub fn gateway_config(sf: &Storefront) -> GatewayConfig {
    let name = sf.metadata.name.as_deref().unwrap_or_default();
    let rl = &sf.spec.gateway.rate_limit;
    let routes = ROUTES
        .iter()
        .map(|(prefix, service, rewrite, methods, auth, role)| Route {
            path_prefix: (*prefix).to_owned(),
            service: *service,
            upstream: gateway_upstream_url(name, *service),
            rewrite: (*rewrite).to_owned(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            auth: *auth,
            role: role.map(str::to_owned),
        })
        .collect();
    GatewayConfig {
        version: 1,
        routes,
        rate_limit: RateLimitConfig {
            enabled: rl.enabled,
            cluster_wide: rl.cluster_wide,
            store: if rl.cluster_wide { "redis" } else { "memory" }.to_owned(),
            failure_mode: rl.failure_mode,
            defaults: rl.defaults.as_ref().map(defaults_limit),
            rules: rl.rules.iter().map(rule_config).collect(),
        },
        trusted_proxies: sf.spec.gateway.trusted_proxies.clone(),
    }
}

/// The configuration as the YAML text put in the ConfigMap.
pub fn render(config: &GatewayConfig) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_yaml::to_string(config).unwrap_or_default()
}

/// Hex SHA-256 of a text, put on the gateway pod template.
pub fn checksum(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn storefront(spec: serde_json::Value) -> Storefront {
        serde_json::from_value(json!({
            "apiVersion": "storefront.dev/v1alpha1",
            "kind": "Storefront",
            "metadata": {"name": "shop", "namespace": "ns"},
            "spec": spec
        }))
        .expect("valid storefront")
    }

    /// `storefront up` runs the gateway on its built-in configuration: the same routes with
    /// every service on loopback. Keep the two tables in step.
    #[test]
    fn the_gateways_built_in_routes_are_these_routes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../services/gateway/src/domain/builtin.yaml"
        );
        let text = std::fs::read_to_string(path).expect("read the gateway's builtin.yaml");
        let builtin: GatewayConfig = serde_yaml::from_str(&text).expect("parse builtin.yaml");
        let key = |r: &Route| {
            (
                r.path_prefix.clone(),
                r.service,
                r.rewrite.clone(),
                r.methods.clone(),
                r.auth,
                r.role.clone(),
            )
        };
        let ours: Vec<_> = ROUTES
            .iter()
            .map(|(prefix, c, rewrite, methods, auth, role)| {
                (
                    (*prefix).to_owned(),
                    *c,
                    (*rewrite).to_owned(),
                    methods.iter().map(|m| (*m).to_owned()).collect::<Vec<_>>(),
                    *auth,
                    role.map(str::to_owned),
                )
            })
            .collect();
        let theirs: Vec<_> = builtin.routes.iter().map(key).collect();
        assert_eq!(theirs, ours);
        for r in &builtin.routes {
            assert_eq!(
                r.upstream,
                format!("http://127.0.0.1:{}", r.service.default_port()),
                "{}",
                r.path_prefix
            );
        }
    }

    #[test]
    fn routes_point_at_each_backend_service_by_name_and_port() {
        let config = gateway_config(&storefront(json!({})));
        for c in Component::ALL.into_iter().filter(|c| c.is_backend()) {
            assert!(
                config.routes.iter().any(|r| r.service == c),
                "no route to {c}"
            );
        }
        let cart = config
            .routes
            .iter()
            .find(|r| r.path_prefix == "/api/cart")
            .expect("cart route");
        assert_eq!(cart.upstream, "http://shop-cart-pods:8083");
        assert_eq!(cart.auth, AuthPolicy::Authenticated);
        let admin = config
            .routes
            .iter()
            .find(|r| r.path_prefix == "/api/admin/products")
            .expect("admin route");
        assert_eq!(
            (admin.auth, admin.role.as_deref()),
            (AuthPolicy::Role, Some("admin"))
        );
        assert!(
            config
                .routes
                .iter()
                .all(|r| r.service != Component::Gateway)
        );
        let prefixes: std::collections::HashSet<_> =
            config.routes.iter().map(|r| &r.path_prefix).collect();
        assert_eq!(prefixes.len(), config.routes.len(), "duplicate prefixes");
    }

    #[test]
    fn rate_limit_rules_render_rate_period_and_default_burst() {
        let sf = storefront(json!({
            "gateway": {"rateLimit": {
                "defaults": {"key": "ip", "requestsPerSecond": 20, "burst": 40},
                "rules": [
                    {"name": "login", "pathPrefix": "/api/sessions", "requestsPerMinute": 10, "burst": 5},
                    {"name": "checkout", "upstream": "order", "key": "user", "requestsPerMinute": 30}
                ],
                "clusterWide": true, "failureMode": "closed"
            }},
            "backends": {"redis": {"url": "redis://redis:6379"}}
        }));
        let rl = gateway_config(&sf).rate_limit;
        assert!(rl.enabled && rl.cluster_wide);
        assert_eq!(rl.store, "redis");
        assert_eq!(rl.failure_mode, FailureMode::Closed);
        let defaults = rl.defaults.expect("defaults");
        assert_eq!(
            (defaults.rate, defaults.per, defaults.burst),
            (20, Per::Second, 40)
        );
        assert_eq!(rl.rules[0].name, "login");
        assert_eq!(
            rl.rules[0].matches.path_prefix.as_deref(),
            Some("/api/sessions")
        );
        assert_eq!(
            (
                rl.rules[0].limit.rate,
                rl.rules[0].limit.per,
                rl.rules[0].limit.burst
            ),
            (10, Per::Minute, 5)
        );
        assert!((rl.rules[0].limit.per_second() - 10.0 / 60.0).abs() < 1e-9);
        // No burst given: one period's worth of requests.
        assert_eq!(rl.rules[1].limit.burst, 30);
        assert_eq!(rl.rules[1].limit.key, RateLimitKey::User);
        assert_eq!(rl.rules[1].matches.upstream, Some(Component::Order));
    }

    #[test]
    fn per_replica_limits_use_memory_and_unlimited_without_defaults() {
        let rl = gateway_config(&storefront(json!({}))).rate_limit;
        assert_eq!(rl.store, "memory");
        assert!(!rl.cluster_wide);
        assert!(rl.defaults.is_none());
        assert!(rl.rules.is_empty());
    }

    #[test]
    fn rendered_yaml_parses_back_and_uses_the_documented_keys() {
        let sf = storefront(json!({
            "gateway": {
                "rateLimit": {"rules": [{"name": "s", "upstream": "search", "requestsPerSecond": 5}]},
                "trustedProxies": ["10.0.0.0/8"]
            }
        }));
        let config = gateway_config(&sf);
        let text = render(&config);
        let back: GatewayConfig = serde_yaml::from_str(&text).expect("parses");
        assert_eq!(back, config);
        let value: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
        assert_eq!(value["version"], 1);
        assert_eq!(value["trustedProxies"], json!(["10.0.0.0/8"]));
        assert_eq!(
            value["rateLimit"]["rules"][0]["match"]["upstream"],
            "search"
        );
        assert_eq!(value["rateLimit"]["rules"][0]["rate"], 5);
        assert_eq!(value["rateLimit"]["rules"][0]["per"], "second");
        assert_eq!(value["rateLimit"]["failureMode"], "open");
        assert_eq!(value["routes"][0]["pathPrefix"], "/.well-known/jwks.json");
    }

    #[test]
    fn checksum_changes_with_the_spec_and_only_then() {
        let a = render(&gateway_config(&storefront(json!({}))));
        let b = render(&gateway_config(&storefront(json!({}))));
        let c = render(&gateway_config(&storefront(
            json!({"gateway": {"rateLimit": {"enabled": false}}}),
        )));
        assert_eq!(checksum(&a), checksum(&b));
        assert_ne!(checksum(&a), checksum(&c));
        assert_eq!(checksum(&a).len(), 64);
    }
}
