//! The `Storefront` custom resource (`storefront.dev/v1alpha1`, short name `sf`).
//!
//! Every doc comment on a field becomes its `description` in the CRD, so
//! `kubectl explain storefront.spec...` reads the text below. Validation that
//! spans fields lives in CEL rules (`x-kubernetes-validations`) declared with
//! `#[x_kube(validation = ...)]`, so the apiserver rejects a bad spec with a
//! clear message and no webhook is needed. Defaults are serde defaults, which
//! schemars copies into the schema so the apiserver applies them too.
//!
//! Rules that look inside lists or strings need `maxItems` / `maxLength`
//! bounds, or the apiserver refuses the CRD because the rule's estimated cost
//! is unbounded; that is why those bounds appear next to the rules.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{EnvVar, ResourceRequirements, SecretKeySelector},
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Component, Result};

/// API group of the Storefront resource.
pub const GROUP: &str = "storefront.dev";
/// API version of the Storefront resource.
pub const VERSION: &str = "v1alpha1";
/// Longest allowed Storefront name: child objects are named `<name>-<component>`,
/// the longest being `<name>-notification`, and Service names stop at 63 characters.
pub const MAX_NAME_LENGTH: usize = 50;

/// Condition type: every component is available and the gateway serves traffic.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: the operator is rolling out a change.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: something is wrong that the operator cannot fix by itself.
pub const CONDITION_DEGRADED: &str = "Degraded";
/// Condition type: reconciliation is paused (`spec.paused`).
pub const CONDITION_PAUSED: &str = "Paused";

/// Desired state of one Storefront e-commerce platform: the image its seven
/// services run, how each service is scaled, the gateway's ingress and rate
/// limits, and the backing stores it connects to.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "storefront.dev",
    version = "v1alpha1",
    kind = "Storefront",
    namespaced,
    status = "StorefrontStatus",
    shortname = "sf",
    category = "storefront",
    derive = "PartialEq",
    doc = "A Storefront e-commerce platform (gateway, auth, search, cart, order, delivery and notification services) managed by the storefront operator.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every component is available"
    ),
    printcolumn(
        name = "Gateway URL",
        type_ = "string",
        json_path = ".status.gatewayUrl",
        description = "Where the gateway serves the platform"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 50")
        .message("metadata.name must be at most 50 characters: it prefixes child objects such as <name>-notification, whose names must fit in 63"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS label starting with a letter (lowercase letters, digits and '-'), because it names Services"),
)]
#[x_kube(
    validation = Rule::new("!self.gateway.rateLimit.clusterWide || has(self.backends.redis)")
        .message("gateway.rateLimit.clusterWide needs backends.redis: replicas share their counters through Redis")
        .field_path(".gateway.rateLimit.clusterWide")
)]
#[serde(rename_all = "camelCase")]
pub struct StorefrontSpec {
    /// Stop reconciling: the operator leaves every child object as it is until
    /// this is false again, and reports a Paused condition. Use it for manual
    /// maintenance.
    #[serde(default)]
    pub paused: bool,

    /// Container image that every service runs: one image holding the
    /// `storefront` binary, started as `storefront run <service>`.
    #[serde(default)]
    pub image: ImageSpec,

    /// Scaling, resources and extra environment per service.
    #[serde(default)]
    pub services: ServicesSpec,

    /// Gateway behaviour: ingress, rate limiting and trusted proxies.
    #[serde(default)]
    pub gateway: GatewaySpec,

    /// External stores and brokers the services connect to. Secrets are
    /// referenced, never inlined. A backend left out is not used; services that
    /// need it fall back to their embedded or in-memory implementation where
    /// they have one.
    #[serde(default)]
    pub backends: BackendsSpec,
}

// ---------------------------------------------------------------- image

/// Container image reference and pull policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Registry host (and optional port), e.g. `ghcr.io` or `registry.local:5000`.
    /// Omit for images loaded into the nodes or pulled from Docker Hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub registry: Option<String>,

    /// Image repository (name) within the registry, e.g. `acme/storefront`.
    #[serde(default = "default_repository")]
    #[schemars(length(min = 1, max = 255))]
    pub repository: String,

    /// Image tag. Pin a release tag in production; `dev` matches the image that
    /// CI builds and loads into kind.
    #[serde(default = "default_tag")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: String,

    /// When the kubelet pulls the image.
    #[serde(default)]
    pub pull_policy: PullPolicy,
}

impl ImageSpec {
    /// The full image reference, `[registry/]repository:tag`.
    pub fn reference(&self) -> String {
        match &self.registry {
            Some(registry) => format!("{registry}/{}:{}", self.repository, self.tag),
            None => format!("{}:{}", self.repository, self.tag),
        }
    }
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            registry: None,
            repository: default_repository(),
            tag: default_tag(),
            pull_policy: PullPolicy::default(),
        }
    }
}

fn default_repository() -> String {
    "storefront".to_owned()
}

fn default_tag() -> String {
    "dev".to_owned()
}

/// Image pull policy, as in a Pod's `imagePullPolicy`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The value for a container's `imagePullPolicy`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

// ---------------------------------------------------------------- services

/// Per-service workload settings. Every service is always deployed; a service
/// left out gets one replica and no resource requests.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicesSpec {
    /// The gateway: the public HTTP entry point (port 8080).
    #[serde(default)]
    pub gateway: ComponentSpec,
    /// The auth service: users, sessions and tokens (port 8081).
    #[serde(default)]
    pub auth: ComponentSpec,
    /// The search service: product catalogue search (port 8082).
    #[serde(default)]
    pub search: ComponentSpec,
    /// The cart service: shopping carts (port 8083).
    #[serde(default)]
    pub cart: ComponentSpec,
    /// The order service: checkout and orders (port 8084).
    #[serde(default)]
    pub order: ComponentSpec,
    /// The delivery service: shipping and tracking (port 8085).
    #[serde(default)]
    pub delivery: ComponentSpec,
    /// The notification service: e-mail notifications (port 8086).
    #[serde(default)]
    pub notification: ComponentSpec,
}

impl ServicesSpec {
    /// The settings of one component.
    pub fn get(&self, component: Component) -> &ComponentSpec {
        match component {
            Component::Gateway => &self.gateway,
            Component::Auth => &self.auth,
            Component::Search => &self.search,
            Component::Cart => &self.cart,
            Component::Order => &self.order,
            Component::Delivery => &self.delivery,
            Component::Notification => &self.notification,
        }
    }
}

/// Workload settings of one service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Number of pods. Ignored while autoscaling is enabled; 0 stops the service.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// CPU and memory requests and limits of the service container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Horizontal pod autoscaling. Present and enabled: the operator creates a
    /// HorizontalPodAutoscaler and `replicas` is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Extra environment variables for the service container, added after (and
    /// overriding) the ones the operator sets, e.g. `RUST_LOG` or
    /// `STOREFRONT_...` settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,
}

impl Default for ComponentSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            resources: None,
            autoscaling: None,
            env: Vec::new(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}

/// Horizontal pod autoscaling of one service, on CPU and/or memory utilisation
/// (percent of the container's requests, so set `resources.requests`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas")
        .message("autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas")
        .field_path(".minReplicas"),
    validation = Rule::new("!self.enabled || has(self.targetCPUUtilizationPercentage) || has(self.targetMemoryUtilizationPercentage)")
        .message("enabled autoscaling needs targetCPUUtilizationPercentage and/or targetMemoryUtilizationPercentage")
)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Whether the HorizontalPodAutoscaler exists. Set false to keep these
    /// settings but go back to a fixed `replicas`.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Fewest pods the autoscaler keeps.
    #[serde(default = "default_min_replicas")]
    #[x_kube(validation = Rule::new("self >= 1").message("autoscaling.minReplicas must be at least 1"))]
    pub min_replicas: i32,

    /// Most pods the autoscaler creates.
    #[x_kube(validation = Rule::new("self >= 1").message("autoscaling.maxReplicas must be at least 1"))]
    pub max_replicas: i32,

    /// Target average CPU use, in percent of the CPU request.
    #[serde(
        rename = "targetCPUUtilizationPercentage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[x_kube(validation = Rule::new("self >= 1").message("targetCPUUtilizationPercentage must be at least 1"))]
    pub target_cpu_utilization_percentage: Option<i32>,

    /// Target average memory use, in percent of the memory request.
    #[serde(
        rename = "targetMemoryUtilizationPercentage",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[x_kube(validation = Rule::new("self >= 1").message("targetMemoryUtilizationPercentage must be at least 1"))]
    pub target_memory_utilization_percentage: Option<i32>,
}

fn default_true() -> bool {
    true
}

fn default_min_replicas() -> i32 {
    1
}

// ---------------------------------------------------------------- gateway

/// Gateway behaviour.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Exposure of the gateway through an Ingress. Without it the gateway is
    /// reachable through its ClusterIP Service only.
    #[serde(default)]
    pub ingress: IngressSpec,

    /// Request rate limiting at the gateway.
    #[serde(default)]
    pub rate_limit: RateLimitSpec,

    /// Proxies (CIDRs) whose `X-Forwarded-For` / `Forwarded` headers the gateway
    /// believes when it works out the client IP, e.g. the ingress controller's
    /// pod network. Requests from anywhere else are keyed by their peer address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    #[x_kube(
        validation = Rule::new("self.all(c, isCIDR(c))")
            .message("trustedProxies entries must be CIDRs such as 10.244.0.0/16 or fd00::/8"),
        merge_strategy = ListMerge::Set
    )]
    pub trusted_proxies: Vec<String>,
}

/// Ingress for the gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!self.enabled || has(self.host)")
        .message("ingress.host is required when ingress.enabled is true")
        .field_path(".host")
)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Whether the operator creates an Ingress for the gateway.
    #[serde(default)]
    pub enabled: bool,

    /// Host name the Ingress serves, e.g. `shop.example.com`. Required when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,

    /// IngressClass to use; the cluster default class when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,

    /// Secret (in this namespace) holding the TLS certificate for `host`. Omit
    /// to serve plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: Option<String>,

    /// Extra annotations on the Ingress, e.g. for cert-manager or the ingress controller.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Rate limiting at the gateway. A request is checked against the first rule
/// that matches it, or against `defaults` when none does.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Whether the gateway limits request rates at all.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Limit for requests that no rule matches. Without it those requests are
    /// not limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<RateLimitDefaults>,

    /// Limits for particular routes, checked in order; the first match applies.
    /// Names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub rules: Vec<RateLimitRule>,

    /// Share counters between gateway replicas through Redis
    /// (`backends.redis`), so a limit holds for the whole platform. When false
    /// each replica counts on its own and the effective limit is the limit
    /// times the number of gateway replicas.
    #[serde(default)]
    pub cluster_wide: bool,

    /// What the gateway does when it cannot reach Redis to check a cluster-wide
    /// limit: `open` lets the request through, `closed` rejects it with 503.
    #[serde(default)]
    pub failure_mode: FailureMode,
}

impl Default for RateLimitSpec {
    fn default() -> Self {
        Self {
            enabled: default_true(),
            defaults: None,
            rules: Vec::new(),
            cluster_wide: false,
            failure_mode: FailureMode::default(),
        }
    }
}

/// Limit applied to requests that no rule matches.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.requestsPerSecond) != has(self.requestsPerMinute)")
        .message("set exactly one of requestsPerSecond or requestsPerMinute")
)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitDefaults {
    /// What a client is: the authenticated user, the client IP, or everyone together.
    #[serde(default)]
    pub key: RateLimitKey,

    /// Sustained rate, in requests per second per key. Set this or `requestsPerMinute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("requestsPerSecond must be greater than 0"))]
    pub requests_per_second: Option<i32>,

    /// Sustained rate, in requests per minute per key. Set this or `requestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("requestsPerMinute must be greater than 0"))]
    pub requests_per_minute: Option<i32>,

    /// Requests a key may make at once above the sustained rate. Defaults to
    /// the number of requests per period (second or minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("burst must be at least 1"))]
    pub burst: Option<i32>,
}

/// Limit for requests matching a path prefix and/or an upstream service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.requestsPerSecond) != has(self.requestsPerMinute)")
        .message("set exactly one of requestsPerSecond or requestsPerMinute"),
    validation = Rule::new("has(self.pathPrefix) || has(self.upstream)")
        .message("a rate-limit rule must match on pathPrefix, upstream or both")
)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitRule {
    /// Name of the rule, unique in the list; it labels the gateway's
    /// rate-limited-requests metric.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Requests whose path starts with this prefix match, e.g. `/api/sessions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("pathPrefix must start with '/'"))]
    pub path_prefix: Option<String>,

    /// Requests the gateway routes to this service match: auth, search, cart,
    /// order, delivery or notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self != 'gateway'")
        .message("upstream must be a service behind the gateway (auth, search, cart, order, delivery or notification), not the gateway itself"))]
    pub upstream: Option<Component>,

    /// What a client is: the authenticated user, the client IP, or everyone together.
    #[serde(default)]
    pub key: RateLimitKey,

    /// Sustained rate, in requests per second per key. Set this or `requestsPerMinute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("requestsPerSecond must be greater than 0"))]
    pub requests_per_second: Option<i32>,

    /// Sustained rate, in requests per minute per key. Set this or `requestsPerSecond`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("requestsPerMinute must be greater than 0"))]
    pub requests_per_minute: Option<i32>,

    /// Requests a key may make at once above the sustained rate. Defaults to
    /// the number of requests per period (second or minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("burst must be at least 1"))]
    pub burst: Option<i32>,
}

/// What a rate limit counts requests per: `user` (authenticated user, falling
/// back to the client IP), `ip` (client IP) or `global` (all requests together).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitKey {
    User,
    #[default]
    Ip,
    Global,
}

/// Behaviour when the shared rate-limit store is unreachable: `open` or `closed`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    #[default]
    Open,
    Closed,
}

// ---------------------------------------------------------------- backends

/// External backends. Credentials always come from Secrets in the Storefront's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendsSpec {
    /// MySQL, used by the auth, cart, order and delivery services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<DatabaseBackend>,

    /// MongoDB, used by the search service's catalogue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<DatabaseBackend>,

    /// SMTP server the notification service sends e-mail through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpBackend>,

    /// Redis, for sessions, caches and cluster-wide rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<UrlBackend>,

    /// Elasticsearch, for product search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch: Option<UrlBackend>,

    /// Kafka, for events between services, and the topics the platform uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaBackend>,
}

/// A database reached either through a connection URL kept in a Secret, or
/// through host, port, database name and a credentials Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.urlSecretRef) ? !(has(self.host) || has(self.port) || has(self.database) || has(self.credentialsSecretRef)) : has(self.host)")
        .message("set either urlSecretRef alone, or host (with optional port, database and credentialsSecretRef)")
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseBackend {
    /// Secret key holding the whole connection URL, credentials included, e.g.
    /// `mysql://user:pass@mysql:3306/storefront`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeySelector>,

    /// Server host name or address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,

    /// Server port; the backend's usual port (3306 for MySQL, 27017 for MongoDB) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// Database name; `storefront` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub database: Option<String>,

    /// Secret with the user name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,
}

/// An SMTP server reached either through a URL kept in a Secret
/// (`smtp://user:pass@host:587`, `smtps://...`), or through host, port and a
/// credentials Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.urlSecretRef) ? !(has(self.host) || has(self.port) || has(self.credentialsSecretRef)) : has(self.host)")
        .message("set either urlSecretRef alone, or host (with optional port and credentialsSecretRef)")
)]
#[serde(rename_all = "camelCase")]
pub struct SmtpBackend {
    /// Secret key holding the whole SMTP URL, credentials included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeySelector>,

    /// Server host name or address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,

    /// Server port; 587 when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// Secret with the user name and password; omit for a relay that needs no login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,

    /// Sender address of the e-mail the platform sends, e.g. `Shop <no-reply@shop.example.com>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 320))]
    pub from: Option<String>,
}

/// A Secret holding a user name and a password.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret, in the Storefront's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key of the user name in the Secret.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: String,

    /// Key of the password in the Secret.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".to_owned()
}

fn default_password_key() -> String {
    "password".to_owned()
}

/// A service reached through a URL, given inline or, when it carries
/// credentials, kept in a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.url) != has(self.urlSecretRef)")
        .message("set exactly one of url or urlSecretRef")
)]
#[serde(rename_all = "camelCase")]
pub struct UrlBackend {
    /// Connection URL without secrets, e.g. `redis://redis:6379` or `http://elasticsearch:9200`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub url: Option<String>,

    /// Secret key holding the connection URL, for URLs that carry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeySelector>,
}

/// Kafka brokers and the topics the platform uses on them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.topicManagement != 'strimzi' || has(self.strimziCluster)")
        .message("strimziCluster is required when topicManagement is strimzi")
        .field_path(".strimziCluster")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBackend {
    /// Comma-separated `host:port` list of brokers to bootstrap from, e.g. `kafka-bootstrap:9092`.
    #[schemars(length(min = 1, max = 2048))]
    pub bootstrap_servers: String,

    /// Who creates the platform's topics: `admin` (the operator, through the
    /// Kafka admin API), `strimzi` (the operator creates KafkaTopic resources
    /// for the Strimzi topic operator) or `none` (they already exist).
    #[serde(default)]
    pub topic_management: TopicManagement,

    /// Name of the Strimzi `Kafka` resource, put on KafkaTopics as the
    /// `strimzi.io/cluster` label. Required with `topicManagement: strimzi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub strimzi_cluster: Option<String>,

    /// Prefix put before every topic name (`<prefix>orders.v1`, ...), so that
    /// several Storefronts can share one Kafka cluster without sharing events,
    /// e.g. `shop-a.`. Empty: the platform's plain names (`catalog.v1`,
    /// `orders.v1`, `deliveries.v1`, `notifications.dlq.v1`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 200), regex(pattern = r"^[a-zA-Z0-9._-]*$"))]
    pub topic_prefix: String,

    /// Settings of every topic the platform creates.
    #[serde(default)]
    pub topics: TopicSettings,

    /// What happens to the topics when the Storefront is deleted: `retain`
    /// keeps them and their events, `delete` removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Settings of the platform's Kafka topics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.minInsyncReplicas <= self.replicationFactor")
        .message("minInsyncReplicas must be less than or equal to replicationFactor, or no write could ever succeed")
        .field_path(".minInsyncReplicas")
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSettings {
    /// Partitions per topic: the most consumers of a group that share the work.
    /// It can grow but never shrink.
    #[serde(default = "default_partitions")]
    #[x_kube(
        validation = Rule::new("self >= 1").message("partitions must be at least 1"),
        validation = Rule::new("self >= oldSelf").message("partitions cannot be decreased: Kafka cannot remove partitions from a topic")
    )]
    pub partitions: i32,

    /// Copies of each partition across brokers; at most the number of brokers.
    #[serde(default = "default_replication_factor")]
    #[x_kube(validation = Rule::new("self >= 1").message("replicationFactor must be at least 1"))]
    pub replication_factor: i32,

    /// How long events are kept, in milliseconds; -1 keeps them forever.
    /// Seven days by default.
    #[serde(default = "default_retention_ms")]
    #[x_kube(validation = Rule::new("self == -1 || self > 0")
        .message("retentionMs must be -1 (keep forever) or a positive number of milliseconds"))]
    pub retention_ms: i64,

    /// Replicas that must acknowledge a write (`min.insync.replicas`).
    #[serde(default = "default_min_insync_replicas")]
    #[x_kube(validation = Rule::new("self >= 1").message("minInsyncReplicas must be at least 1"))]
    pub min_insync_replicas: i32,
}

impl Default for TopicSettings {
    fn default() -> Self {
        Self {
            partitions: default_partitions(),
            replication_factor: default_replication_factor(),
            retention_ms: default_retention_ms(),
            min_insync_replicas: default_min_insync_replicas(),
        }
    }
}

fn default_partitions() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    1
}

fn default_retention_ms() -> i64 {
    7 * 24 * 60 * 60 * 1000
}

fn default_min_insync_replicas() -> i32 {
    1
}

/// Who creates Kafka topics: `admin`, `strimzi` or `none`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TopicManagement {
    #[default]
    Admin,
    Strimzi,
    None,
}

/// What happens to external state when the Storefront is deleted: `retain` or `delete`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

// ---------------------------------------------------------------- status

/// Observed state of a Storefront, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorefrontStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions: Ready, Progressing, Degraded and Paused, one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Readiness of each service, by component name (gateway, auth, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentStatus>,

    /// URL the platform is served at: the Ingress host when there is one,
    /// otherwise the gateway Service's in-cluster address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
}

impl StorefrontStatus {
    /// The condition of the given type, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the Ready condition is True.
    pub fn is_ready(&self) -> bool {
        self.condition(CONDITION_READY)
            .is_some_and(|c| c.status == "True")
    }
}

/// Readiness of one service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Pods of the service that are ready.
    pub ready_replicas: i32,
    /// Pods the service should have.
    pub desired_replicas: i32,
}

impl ComponentStatus {
    /// Whether every desired pod is ready.
    pub fn is_ready(&self) -> bool {
        self.ready_replicas >= self.desired_replicas
    }
}

// ---------------------------------------------------------------- rendering

/// The CRD as YAML, exactly as committed in `crds/storefront.yaml`.
///
/// Object keys are sorted so the output does not depend on whether some other
/// crate in the build enables serde_json's `preserve_order` feature; CI
/// regenerates the file and fails on any diff.
pub fn crd_yaml() -> Result<String> {
    let crd = sort_keys(serde_json::to_value(Storefront::crd())?);
    let body = serde_yaml::to_string(&crd)?;
    Ok(format!(
        "# Generated by `cargo run -q -p storefront-operator --bin crdgen > crds/storefront.yaml`.\n\
         # Do not edit by hand: change operator/src/crd.rs and regenerate.\n{body}"
    ))
}

fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sort_keys).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn crd_json() -> Value {
        serde_json::to_value(Storefront::crd()).expect("CRD serializes")
    }

    fn schema() -> Value {
        crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    /// A spec that uses every section and passes every rule.
    fn valid_spec() -> Value {
        json!({
            "image": {"registry": "registry.local:5000", "repository": "storefront", "tag": "1.2.3"},
            "services": {
                "gateway": {"replicas": 2},
                "cart": {
                    "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 75},
                    "env": [{"name": "RUST_LOG", "value": "info"}]
                }
            },
            "gateway": {
                "ingress": {"enabled": true, "host": "shop.example.com", "tlsSecretName": "shop-tls"},
                "rateLimit": {
                    "defaults": {"key": "ip", "requestsPerSecond": 20, "burst": 40},
                    "rules": [
                        {"name": "login", "pathPrefix": "/api/sessions", "requestsPerMinute": 10, "burst": 5},
                        {"name": "search", "upstream": "search", "key": "user", "requestsPerSecond": 50}
                    ],
                    "clusterWide": true,
                    "failureMode": "closed"
                },
                "trustedProxies": ["10.244.0.0/16", "fd00::/8"]
            },
            "backends": {
                "mysql": {"urlSecretRef": {"name": "mysql", "key": "url"}},
                "mongodb": {"host": "mongodb", "port": 27017, "credentialsSecretRef": {"name": "mongodb"}},
                "smtp": {"host": "mailpit", "port": 1025, "from": "no-reply@shop.example.com"},
                "redis": {"url": "redis://redis:6379"},
                "elasticsearch": {"url": "http://elasticsearch:9200"},
                "kafka": {
                    "bootstrapServers": "kafka:9092",
                    "topicManagement": "strimzi",
                    "strimziCluster": "events",
                    "topics": {"partitions": 6, "replicationFactor": 3, "minInsyncReplicas": 2}
                }
            }
        })
    }

    fn object(name: &str, spec: Value) -> Value {
        json!({
            "apiVersion": "storefront.dev/v1alpha1",
            "kind": "Storefront",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": spec
        })
    }

    /// Messages of the CEL rules the object breaks, as the apiserver would report them
    /// (schema defaults are applied first, as the apiserver does).
    fn cel_failures(obj: &Value, old: Option<&Value>) -> Vec<String> {
        match kube_cel::Validator::new().validate(&schema(), obj, old) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// Every `x-kubernetes-validations` rule in the schema, with the path of its node.
    fn rules(node: &Value, path: &str, out: &mut Vec<(String, Value)>) {
        if let Some(list) = node
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        {
            out.extend(list.iter().map(|r| (path.to_owned(), r.clone())));
        }
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                rules(v, &format!("{path}.{k}"), out);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = node.get(key).filter(|c| c.is_object()) {
                rules(child, &format!("{path}[]"), out);
            }
        }
    }

    fn all_rules() -> Vec<(String, Value)> {
        let mut out = Vec::new();
        rules(&schema(), "", &mut out);
        out
    }

    #[test]
    fn crd_names_group_version_scope_and_short_name() {
        let crd = crd_json();
        assert_eq!(crd["metadata"]["name"], "storefronts.storefront.dev");
        assert_eq!(crd["spec"]["group"], GROUP);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["kind"], "Storefront");
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["sf"]));
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], VERSION);
        assert_eq!(version["served"], true);
        assert_eq!(version["storage"], true);
        assert_eq!(version["subresources"]["status"], json!({}));
    }

    #[test]
    fn printer_columns_show_ready_gateway_url_and_age() {
        let columns = crd_json()["spec"]["versions"][0]["additionalPrinterColumns"].clone();
        let by_name = |name: &str| {
            columns
                .as_array()
                .expect("columns")
                .iter()
                .find(|c| c["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no {name} column in {columns}"))
        };
        assert_eq!(
            by_name("Ready")["jsonPath"],
            r#".status.conditions[?(@.type=="Ready")].status"#
        );
        assert_eq!(by_name("Gateway URL")["jsonPath"], ".status.gatewayUrl");
        assert_eq!(by_name("Age")["jsonPath"], ".metadata.creationTimestamp");
        assert_eq!(by_name("Age")["type"], "date");
    }

    #[test]
    fn conditions_are_a_list_map_keyed_by_type() {
        let conditions = &schema()["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
        let required = conditions["items"]["required"]
            .as_array()
            .expect("required");
        assert!(
            required.contains(&json!("type")),
            "list-map keys must be required: {required:?}"
        );
    }

    #[test]
    fn named_lists_are_list_maps_so_duplicates_are_rejected() {
        let spec = &schema()["properties"]["spec"]["properties"];
        let rules = &spec["gateway"]["properties"]["rateLimit"]["properties"]["rules"];
        assert_eq!(rules["x-kubernetes-list-type"], "map");
        assert_eq!(rules["x-kubernetes-list-map-keys"], json!(["name"]));
        let env = &spec["services"]["properties"]["cart"]["properties"]["env"];
        assert_eq!(env["x-kubernetes-list-type"], "map");
        assert_eq!(env["x-kubernetes-list-map-keys"], json!(["name"]));
    }

    #[test]
    fn schema_carries_the_cel_rules_the_issue_asks_for() {
        let rules = all_rules();
        let has = |path: &str, rule: &str| {
            rules
                .iter()
                .any(|(p, r)| p == path && r["rule"] == rule && r["message"].is_string())
        };
        let expected = [
            (
                ".spec.services.cart.autoscaling",
                "self.minReplicas <= self.maxReplicas",
            ),
            (
                ".spec.gateway.rateLimit.rules[].requestsPerSecond",
                "self > 0",
            ),
            (
                ".spec.gateway.rateLimit.rules[].requestsPerMinute",
                "self > 0",
            ),
            (".spec.gateway.rateLimit.rules[].burst", "self >= 1"),
            (".spec.gateway.rateLimit.defaults.burst", "self >= 1"),
            (
                ".spec.gateway.rateLimit.rules[].upstream",
                "self != 'gateway'",
            ),
            (".spec.gateway.ingress", "!self.enabled || has(self.host)"),
            (".spec.backends.kafka.topics.partitions", "self >= 1"),
            (".spec.backends.kafka.topics.replicationFactor", "self >= 1"),
            (
                ".spec.backends.kafka.topics",
                "self.minInsyncReplicas <= self.replicationFactor",
            ),
            (
                ".spec",
                "!self.gateway.rateLimit.clusterWide || has(self.backends.redis)",
            ),
            ("", "self.metadata.name.size() <= 50"),
        ];
        for (path, rule) in expected {
            assert!(has(path, rule), "missing rule {rule:?} at {path}");
        }
    }

    #[test]
    fn every_cel_rule_has_a_message_and_compiles() {
        let rules = all_rules();
        assert!(
            rules.len() > 20,
            "expected the full rule set, found {}",
            rules.len()
        );
        for (path, rule) in &rules {
            assert!(
                rule["message"].is_string(),
                "rule at {path} has no message: {rule}"
            );
        }
        fn errors(node: &kube_cel::CompiledSchema, out: &mut Vec<String>) {
            out.extend(node.compilation_errors().iter().map(|e| format!("{e:?}")));
            node.properties.values().for_each(|p| errors(p, out));
            node.items.iter().for_each(|i| errors(i, out));
            node.additional_properties
                .iter()
                .for_each(|a| errors(a, out));
        }
        let mut out = Vec::new();
        errors(&kube_cel::compile_schema(&schema()), &mut out);
        assert!(out.is_empty(), "CEL rules that do not compile: {out:#?}");
    }

    #[test]
    fn cel_rules_are_within_the_apiserver_cost_budget() {
        fn check(node: &kube_cel::CompiledSchema, out: &mut Vec<String>) {
            for compiled in node.validations.iter().flatten() {
                // kube-cel's coarse estimate (its scope check mistakes comprehension
                // variables for unknown ones, so only the cost part is used).
                let warnings = kube_cel::estimate_rule_cost(&compiled.rule.rule, node);
                out.extend(
                    warnings
                        .into_iter()
                        .map(|w| format!("{}: {}", w.rule, w.message)),
                );
            }
            node.properties.values().for_each(|p| check(p, out));
            node.items.iter().for_each(|i| check(i, out));
            node.additional_properties
                .iter()
                .for_each(|a| check(a, out));
        }
        let mut out = Vec::new();
        check(&kube_cel::compile_schema(&schema()), &mut out);
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn every_field_of_spec_and_status_has_a_description() {
        fn walk(node: &Value, path: &str, missing: &mut Vec<String>) {
            if node
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                missing.push(path.to_owned());
            }
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    walk(v, &format!("{path}.{k}"), missing);
                }
            }
            if let Some(items) = node.get("items").filter(|i| i.get("properties").is_some()) {
                walk(items, &format!("{path}[]"), missing);
            }
        }
        let schema = schema();
        let mut missing = Vec::new();
        walk(&schema["properties"]["spec"], "spec", &mut missing);
        walk(&schema["properties"]["status"], "status", &mut missing);
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:#?}"
        );
    }

    #[test]
    fn empty_spec_gets_the_documented_defaults() {
        let spec: StorefrontSpec = serde_yaml::from_str("{}").expect("empty spec is valid");
        assert_eq!(spec, StorefrontSpec::default());
        assert!(!spec.paused);
        assert_eq!(spec.image.reference(), "storefront:dev");
        assert_eq!(spec.image.pull_policy, PullPolicy::IfNotPresent);
        for c in Component::ALL {
            assert_eq!(spec.services.get(c).replicas, 1, "{c}");
            assert!(spec.services.get(c).autoscaling.is_none(), "{c}");
        }
        assert!(!spec.gateway.ingress.enabled);
        assert!(spec.gateway.rate_limit.enabled);
        assert!(!spec.gateway.rate_limit.cluster_wide);
        assert_eq!(spec.gateway.rate_limit.failure_mode, FailureMode::Open);
        assert_eq!(spec.backends, BackendsSpec::default());
    }

    #[test]
    fn sample_yaml_deserializes_with_nested_defaults_applied() {
        let yaml = r#"
image:
  registry: ghcr.io
  repository: acme/storefront
  tag: "1.4.0"
services:
  search:
    replicas: 3
  cart:
    autoscaling:
      maxReplicas: 6
      targetMemoryUtilizationPercentage: 70
gateway:
  rateLimit:
    rules:
      - name: checkout
        upstream: order
        key: user
        requestsPerMinute: 30
backends:
  mysql:
    host: mysql
    credentialsSecretRef:
      name: mysql-credentials
  kafka:
    bootstrapServers: kafka:9092
"#;
        let spec: StorefrontSpec = serde_yaml::from_str(yaml).expect("sample spec parses");
        assert_eq!(spec.image.reference(), "ghcr.io/acme/storefront:1.4.0");
        assert_eq!(spec.services.search.replicas, 3);
        assert_eq!(spec.services.auth.replicas, 1);
        let autoscaling = spec
            .services
            .cart
            .autoscaling
            .as_ref()
            .expect("autoscaling");
        assert!(autoscaling.enabled);
        assert_eq!(autoscaling.min_replicas, 1);
        let rule = &spec.gateway.rate_limit.rules[0];
        assert_eq!(rule.upstream, Some(Component::Order));
        assert_eq!(rule.key, RateLimitKey::User);
        let credentials = spec
            .backends
            .mysql
            .as_ref()
            .and_then(|m| m.credentials_secret_ref.as_ref());
        assert_eq!(
            credentials.map(|c| c.username_key.as_str()),
            Some("username")
        );
        assert_eq!(
            credentials.map(|c| c.password_key.as_str()),
            Some("password")
        );
        let kafka = spec.backends.kafka.as_ref().expect("kafka");
        assert_eq!(kafka.topic_management, TopicManagement::Admin);
        assert_eq!(kafka.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(kafka.topics, TopicSettings::default());
        assert_eq!(kafka.topics.partitions, 3);
        assert_eq!(kafka.topics.retention_ms, 604_800_000);
    }

    #[test]
    fn schema_defaults_match_serde_defaults() {
        // The apiserver fills in schema defaults, the operator serde defaults; they must agree.
        let defaulted = kube_cel::apply_defaults(&schema(), &object("shop", json!({})));
        let spec: StorefrontSpec =
            serde_json::from_value(defaulted["spec"].clone()).expect("defaulted spec parses");
        assert_eq!(spec, StorefrontSpec::default());
        assert_eq!(
            defaulted["spec"]["services"]["notification"]["replicas"],
            json!(1),
            "{defaulted}"
        );
    }

    #[test]
    fn valid_spec_passes_every_rule() {
        let obj = object("shop", valid_spec());
        assert_eq!(cel_failures(&obj, None), Vec::<String>::new());
        let spec: StorefrontSpec =
            serde_json::from_value(obj["spec"].clone()).expect("valid spec deserializes");
        assert_eq!(spec.services.gateway.replicas, 2);
    }

    #[test]
    fn empty_spec_passes_every_rule() {
        assert_eq!(
            cel_failures(&object("shop", json!({})), None),
            Vec::<String>::new()
        );
    }

    /// Applies `value` at `pointer` in a valid spec and returns the rule failures.
    fn failures_with(pointer: &str, value: Value) -> Vec<String> {
        let mut spec = valid_spec();
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
        let target = spec
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{parent} is not an object in the valid spec"));
        if value.is_null() {
            target.remove(key);
        } else {
            target.insert(key.to_owned(), value);
        }
        cel_failures(&object("shop", spec), None)
    }

    fn assert_rejected(failures: &[String], field: &str, message: &str) {
        assert!(
            failures
                .iter()
                .any(|f| f.contains(field) && f.contains(message)),
            "expected {field:?} to be rejected with {message:?}, got {failures:#?}"
        );
    }

    #[test]
    fn rejects_min_replicas_above_max_replicas() {
        let failures = failures_with("/services/cart/autoscaling/minReplicas", json!(6));
        assert_rejected(
            &failures,
            "spec.services.cart.autoscaling",
            "minReplicas must be less than or equal to autoscaling.maxReplicas",
        );
    }

    #[test]
    fn rejects_enabled_autoscaling_without_a_target() {
        let failures = failures_with(
            "/services/cart/autoscaling/targetCPUUtilizationPercentage",
            Value::Null,
        );
        assert_rejected(
            &failures,
            "autoscaling",
            "needs targetCPUUtilizationPercentage",
        );
    }

    #[test]
    fn rejects_zero_rates_and_bursts() {
        let failures = failures_with("/gateway/rateLimit/defaults/requestsPerSecond", json!(0));
        assert_rejected(&failures, "requestsPerSecond", "must be greater than 0");
        let failures = failures_with("/gateway/rateLimit/defaults/burst", json!(0));
        assert_rejected(&failures, "defaults.burst", "burst must be at least 1");

        let mut spec = valid_spec();
        spec["gateway"]["rateLimit"]["rules"][0]["requestsPerMinute"] = json!(0);
        spec["gateway"]["rateLimit"]["rules"][1]["burst"] = json!(0);
        let failures = cel_failures(&object("shop", spec), None);
        assert_rejected(
            &failures,
            "rules[0].requestsPerMinute",
            "must be greater than 0",
        );
        assert_rejected(&failures, "rules[1].burst", "burst must be at least 1");
    }

    #[test]
    fn rejects_a_rule_with_both_or_neither_rate() {
        let mut spec = valid_spec();
        spec["gateway"]["rateLimit"]["rules"][0]["requestsPerSecond"] = json!(1);
        let failures = cel_failures(&object("shop", spec), None);
        assert_rejected(
            &failures,
            "rules[0]",
            "exactly one of requestsPerSecond or requestsPerMinute",
        );

        let failures = failures_with("/gateway/rateLimit/defaults/requestsPerSecond", Value::Null);
        assert_rejected(
            &failures,
            "defaults",
            "exactly one of requestsPerSecond or requestsPerMinute",
        );
    }

    #[test]
    fn rejects_a_rule_that_matches_nothing_or_targets_the_gateway() {
        let mut spec = valid_spec();
        spec["gateway"]["rateLimit"]["rules"][1]
            .as_object_mut()
            .expect("rule")
            .remove("upstream");
        let failures = cel_failures(&object("shop", spec), None);
        assert_rejected(
            &failures,
            "rules[1]",
            "must match on pathPrefix, upstream or both",
        );

        let mut spec = valid_spec();
        spec["gateway"]["rateLimit"]["rules"][1]["upstream"] = json!("gateway");
        let failures = cel_failures(&object("shop", spec), None);
        assert_rejected(&failures, "rules[1].upstream", "not the gateway itself");

        let mut spec = valid_spec();
        spec["gateway"]["rateLimit"]["rules"][0]["pathPrefix"] = json!("api/auth");
        let failures = cel_failures(&object("shop", spec), None);
        assert_rejected(&failures, "rules[0].pathPrefix", "must start with '/'");
    }

    #[test]
    fn unknown_upstream_does_not_deserialize() {
        let rule = json!({"name": "x", "upstream": "payments", "requestsPerSecond": 1});
        let err = serde_json::from_value::<RateLimitRule>(rule).expect_err("unknown service");
        assert!(err.to_string().contains("payments"), "{err}");
        let upstream = &schema()["properties"]["spec"]["properties"]["gateway"]["properties"]["rateLimit"]
            ["properties"]["rules"]["items"]["properties"]["upstream"];
        assert!(
            upstream["enum"]
                .as_array()
                .expect("enum")
                .contains(&json!("notification")),
            "the schema lists the known services: {upstream}"
        );
    }

    #[test]
    fn rejects_cluster_wide_limits_without_redis() {
        let failures = failures_with("/backends/redis", Value::Null);
        assert_rejected(&failures, "spec", "clusterWide needs backends.redis");
    }

    #[test]
    fn rejects_trusted_proxies_that_are_not_cidrs() {
        let failures = failures_with(
            "/gateway/trustedProxies",
            json!(["10.0.0.0/8", "proxy.local"]),
        );
        assert_rejected(&failures, "trustedProxies", "must be CIDRs");
    }

    #[test]
    fn rejects_enabled_ingress_without_host() {
        let failures = failures_with("/gateway/ingress/host", Value::Null);
        assert_rejected(
            &failures,
            "ingress",
            "ingress.host is required when ingress.enabled is true",
        );
    }

    #[test]
    fn rejects_bad_topic_settings() {
        let failures = failures_with("/backends/kafka/topics/partitions", json!(0));
        assert_rejected(
            &failures,
            "topics.partitions",
            "partitions must be at least 1",
        );
        let failures = failures_with("/backends/kafka/topics/replicationFactor", json!(0));
        assert_rejected(
            &failures,
            "topics.replicationFactor",
            "replicationFactor must be at least 1",
        );
        let failures = failures_with("/backends/kafka/topics/minInsyncReplicas", json!(4));
        assert_rejected(
            &failures,
            "topics",
            "minInsyncReplicas must be less than or equal to replicationFactor",
        );
        let failures = failures_with("/backends/kafka/topics/retentionMs", json!(0));
        assert_rejected(&failures, "topics.retentionMs", "retentionMs must be -1");
    }

    #[test]
    fn rejects_decreasing_partitions_on_update() {
        let old = object("shop", valid_spec());
        let mut new = old.clone();
        new["spec"]["backends"]["kafka"]["topics"]["partitions"] = json!(3);
        let failures = cel_failures(&new, Some(&old));
        assert_rejected(
            &failures,
            "topics.partitions",
            "partitions cannot be decreased",
        );

        new["spec"]["backends"]["kafka"]["topics"]["partitions"] = json!(12);
        assert_eq!(cel_failures(&new, Some(&old)), Vec::<String>::new());
    }

    #[test]
    fn rejects_strimzi_topic_management_without_a_cluster_name() {
        let failures = failures_with("/backends/kafka/strimziCluster", Value::Null);
        assert_rejected(
            &failures,
            "kafka",
            "strimziCluster is required when topicManagement is strimzi",
        );
    }

    #[test]
    fn rejects_ambiguous_backend_references() {
        let failures = failures_with(
            "/backends/mysql",
            json!({"urlSecretRef": {"name": "mysql", "key": "url"}, "host": "mysql"}),
        );
        assert_rejected(&failures, "mysql", "set either urlSecretRef alone, or host");
        let failures = failures_with("/backends/mongodb", json!({"database": "catalogue"}));
        assert_rejected(
            &failures,
            "mongodb",
            "set either urlSecretRef alone, or host",
        );
        let failures = failures_with("/backends/smtp", json!({"port": 25}));
        assert_rejected(&failures, "smtp", "set either urlSecretRef alone, or host");
        let failures = failures_with("/backends/redis", json!({}));
        assert_rejected(&failures, "redis", "set exactly one of url or urlSecretRef");
    }

    #[test]
    fn rejects_names_too_long_or_not_dns_labels() {
        let long = "a".repeat(MAX_NAME_LENGTH + 1);
        let failures = cel_failures(&object(&long, valid_spec()), None);
        assert_rejected(&failures, "", "must be at most 50 characters");
        let failures = cel_failures(&object("1shop", valid_spec()), None);
        assert_rejected(&failures, "", "must be a DNS label starting with a letter");
        let longest = "a".repeat(MAX_NAME_LENGTH);
        assert_eq!(
            cel_failures(&object(&longest, valid_spec()), None),
            Vec::<String>::new()
        );
        assert!(format!("{longest}-notification").len() <= 63);
    }

    #[test]
    fn status_reports_ready_from_the_ready_condition() {
        let status: StorefrontStatus = serde_json::from_value(json!({
            "observedGeneration": 3,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "AllAvailable", "message": "",
                 "lastTransitionTime": "2025-01-01T00:00:00Z"}
            ],
            "components": {"gateway": {"readyReplicas": 2, "desiredReplicas": 2}},
            "gatewayUrl": "https://shop.example.com"
        }))
        .expect("status parses");
        assert!(status.is_ready());
        assert!(status.components["gateway"].is_ready());
        assert!(
            StorefrontStatus::default()
                .condition(CONDITION_READY)
                .is_none()
        );
    }

    #[test]
    fn crd_yaml_is_deterministic_and_parses_back() {
        let first = crd_yaml().expect("renders");
        assert_eq!(first, crd_yaml().expect("renders again"));
        let parsed: Value = serde_yaml::from_str(&first).expect("valid YAML");
        assert_eq!(parsed, crd_json());
    }
}
