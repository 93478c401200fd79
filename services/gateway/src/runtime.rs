//! The running configuration: a validated [`GatewayConfig`] compiled into routes with their
//! pools and rate-limit rules, swapped atomically on reload ([`ArcSwap`]) so requests in
//! flight finish on the configuration they started with and no connection is dropped.
//!
//! The file is polled: its content hash is compared every `reload_interval_ms` (Kubernetes
//! swaps a ConfigMap mount by replacing a symlink, which mtime watching misses). A changed
//! file is parsed, validated and compiled; an invalid one keeps the last good configuration
//! and is reported (log, `gateway_config_reload_errors_total`, the `config` check of
//! `/readyz`) until a valid file replaces it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderValue, Method};
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use storefront_kit::auth::Role;
use storefront_kit::metrics::StatusCounter;
use tokio_util::sync::CancellationToken;

use crate::adapters::memory::GovernorStore;
use crate::adapters::redis::RedisStore;
use crate::domain::config::{
    self, AuthPolicy, ConfigError, GatewayConfig, Limit, OutlierConfig, Store, UpstreamDefaults,
};
use crate::domain::gcra::Gcra;
use crate::domain::routing;
use crate::limits::{Limits, Rule};
use crate::ports::LimitStore;
use crate::upstream::{self, HttpClient, Instance, Pool};

/// One compiled route.
pub struct Route {
    pub prefix: String,
    pub service: String,
    pub rewrite: Option<String>,
    pub methods: Vec<Method>,
    /// The `Allow` header of a 405.
    pub allow: HeaderValue,
    pub auth: AuthPolicy,
    pub role: Option<Role>,
    pub pool: Pool,
    pub timeout: Duration,
    pub retries: u32,
    /// `gateway_requests_total{route, status}`.
    pub requests: StatusCounter,
    /// `gateway_upstream_duration_seconds{service}`: each try's time to the upstream's answer.
    pub upstream_duration: metrics::Histogram,
    /// `gateway_upstream_retries_total{service}`.
    pub upstream_retries: metrics::Counter,
}

impl Route {
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }
}

/// A compiled configuration.
pub struct Runtime {
    pub routes: Vec<Route>,
    pub trusted: Vec<IpNet>,
    pub limits: Limits,
    pub defaults: UpstreamDefaults,
    pub outlier: OutlierConfig,
    /// Every instance by base URL (shared by routes, kept across reloads).
    pub instances: HashMap<String, Arc<Instance>>,
    /// SHA-256 of the file text this came from.
    pub hash: String,
    /// The configuration this was compiled from (after the upstream overrides).
    pub config: Arc<GatewayConfig>,
    /// The addresses host-named instance URLs resolved to when this was compiled.
    pub addresses: Arc<Addresses>,
}

/// What each host-named instance URL (as written, without a trailing `/`) last resolved to,
/// sorted; a URL not in the map is one instance under its name.
pub type Addresses = BTreeMap<String, Vec<SocketAddr>>;

impl Runtime {
    /// Sets `gateway_upstream_instances{service}`: how many instances (addresses, once host
    /// names are resolved) each service's routes balance over.
    fn publish_instances(&self) {
        let mut by_service: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for route in &self.routes {
            let bases = by_service.entry(route.service.as_str()).or_default();
            bases.extend(route.pool.instances.iter().map(|i| i.base.as_str()));
        }
        for (service, bases) in by_service {
            metrics::gauge!("gateway_upstream_instances", "service" => service.to_string())
                .set(bases.len() as f64);
        }
    }

    /// The route for `path`: the longest matching prefix.
    pub fn route(&self, path: &str) -> Option<&Route> {
        routing::longest_match(self.routes.iter().map(|r| r.prefix.as_str()), path)
            .map(|i| &self.routes[i])
    }

    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        crate::domain::client_ip::client_ip(peer, headers, &self.trusted)
    }
}

fn role(name: &str) -> Option<Role> {
    match name {
        "customer" => Some(Role::Customer),
        "admin" => Some(Role::Admin),
        "partner" => Some(Role::Partner),
        _ => None,
    }
}

/// What compiling needs besides the file: the Redis store (when configured) and the previous
/// runtime, whose instance health and in-memory buckets carry over.
#[derive(Default)]
pub struct Compiler {
    pub redis: Option<Arc<RedisStore>>,
    /// Upstream base URL by service name, replacing `upstream` of routes without `instances`.
    pub upstreams: BTreeMap<String, String>,
    /// The latest DNS answers for host-named instance URLs ([`resolve_upstreams`] keeps them).
    pub addresses: ArcSwap<Addresses>,
}

impl Compiler {
    pub fn compile(
        &self,
        config: &GatewayConfig,
        hash: String,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, ConfigError> {
        let mut config = config.clone();
        for route in &mut config.routes {
            if let Some(url) = self.upstreams.get(&route.service)
                && route.instances.as_ref().is_none_or(Vec::is_empty)
            {
                route.upstream.clone_from(url);
            }
        }
        config.validate()?;
        // The recorder before the routes' metric handles are taken (one taken without it
        // would count nowhere).
        storefront_kit::metrics::handle();
        let config = Arc::new(config);
        let addresses = self.addresses.load_full();
        let defaults = config.upstream_defaults.clone();
        let mut instances: HashMap<String, Arc<Instance>> = HashMap::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            let mut members = Vec::new();
            for url in r.instance_urls() {
                let url = url.trim_end_matches('/');
                // A host name that resolved is one instance per address.
                let keys: Vec<String> = match addresses.get(url) {
                    Some(addrs) if !addrs.is_empty() && defaults.dns_refresh_ms > 0 => {
                        addrs.iter().map(|a| config::at_address(url, *a)).collect()
                    }
                    _ => vec![url.to_string()],
                };
                for key in keys {
                    let instance = instances
                        .entry(key.clone())
                        .or_insert_with(|| {
                            previous
                                .and_then(|p| p.instances.get(&key).cloned())
                                .unwrap_or_else(|| Arc::new(Instance::new(&r.service, &key)))
                        })
                        .clone();
                    members.push(instance);
                }
            }
            let methods: Vec<Method> = r
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect();
            let allow = HeaderValue::from_str(&r.methods.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            routes.push(Route {
                prefix: r.path_prefix.clone(),
                service: r.service.clone(),
                rewrite: r.rewrite.clone(),
                methods,
                allow,
                auth: r.auth,
                role: r.role.as_deref().and_then(role),
                pool: Pool::new(members, r.load_balancing.unwrap_or(defaults.load_balancing)),
                timeout: Duration::from_millis(r.timeout_ms.unwrap_or(defaults.timeout_ms)),
                retries: r.retries.unwrap_or(defaults.retries),
                requests: StatusCounter::new(
                    "gateway_requests_total",
                    &[("route", &r.path_prefix)],
                ),
                upstream_duration: metrics::histogram!(
                    "gateway_upstream_duration_seconds",
                    "service" => r.service.clone()
                ),
                upstream_retries: metrics::counter!(
                    "gateway_upstream_retries_total",
                    "service" => r.service.clone()
                ),
            });
        }
        let trusted = config
            .trusted_proxies
            .iter()
            .filter_map(|c| config::parse_cidr(c))
            .collect();
        let limits = self.limits(&config, previous)?;
        Ok(Runtime {
            routes,
            trusted,
            limits,
            outlier: defaults.outlier.clone(),
            defaults,
            instances,
            hash,
            config,
            addresses,
        })
    }

    fn limits(
        &self,
        config: &GatewayConfig,
        previous: Option<&Runtime>,
    ) -> Result<Limits, ConfigError> {
        let rl = &config.rate_limit;
        if !rl.enabled {
            return Ok(Limits::disabled());
        }
        let redis: Option<Arc<dyn LimitStore>> = match rl.store {
            Store::Memory => None,
            Store::Redis => match &self.redis {
                Some(r) => Some(r.clone()),
                None => {
                    return Err(ConfigError::one(
                        "rateLimit.store",
                        "store: redis needs the gateway's cache_url \
                         (STOREFRONT_GATEWAY__CACHE_URL) to be a redis:// URL",
                    ));
                }
            },
        };
        let store_for = |name: &str, gcra: Gcra| -> (Arc<dyn LimitStore>, bool) {
            if let Some(r) = &redis {
                return (r.clone(), false);
            }
            // Same rule, same limit, still in memory: keep its buckets.
            let kept = previous.and_then(|p| {
                p.limits
                    .all()
                    .find(|old| old.name == name && old.gcra == gcra && old.memory)
                    .map(|old| old.store.clone())
            });
            (
                kept.unwrap_or_else(|| Arc::new(GovernorStore::new(gcra))),
                true,
            )
        };
        let make = |name: &str, prefix: Option<String>, upstream: Option<String>, l: &Limit| {
            let gcra = Gcra::from_limit(l);
            let (store, memory) = store_for(name, gcra);
            Rule::new(name, prefix, upstream, l.key, gcra, store, memory)
        };
        let rules = rl
            .rules
            .iter()
            .map(|r| {
                make(
                    &r.name,
                    r.matches.path_prefix.clone(),
                    r.matches.upstream.clone(),
                    &r.limit,
                )
            })
            .collect();
        let default = rl.defaults.as_ref().map(|l| make("default", None, None, l));
        Ok(Limits {
            enabled: true,
            failure_mode: rl.failure_mode,
            store_timeout: Duration::from_millis(rl.store_timeout_ms.unwrap_or(100)),
            rules,
            default,
        })
    }
}

/// SHA-256 of a text, hex.
pub fn hash(text: &[u8]) -> String {
    hex::encode(Sha256::digest(text))
}

/// Where the configuration came from and how the last reload went.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub source: String,
    pub hash: String,
    pub loaded_at: Option<SystemTime>,
    /// The last reload's error, until a valid file is loaded.
    pub last_error: Option<String>,
}

/// The running configuration and its status, shared by every request.
pub struct Shared {
    pub current: ArcSwap<Runtime>,
    pub status: ArcSwap<Status>,
    pub compiler: Compiler,
}

impl Shared {
    /// Loads the file (or the built-in configuration) for startup: an invalid file is an error.
    pub async fn load(path: Option<&Path>, compiler: Compiler) -> Result<Self, String> {
        let (text, source) = match path {
            Some(p) => (
                tokio::fs::read(p)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
                p.display().to_string(),
            ),
            None => (config::BUILTIN.as_bytes().to_vec(), "built-in".to_string()),
        };
        let h = hash(&text);
        let runtime = parse_and_compile(&compiler, &text, h.clone(), None)
            .map_err(|e| format!("invalid gateway configuration {source}: {e}"))?;
        runtime.publish_instances();
        Ok(Self {
            current: ArcSwap::from_pointee(runtime),
            status: ArcSwap::from_pointee(Status {
                source,
                hash: h,
                loaded_at: Some(SystemTime::now()),
                last_error: None,
            }),
            compiler,
        })
    }

    /// Applies a new file text; on error the running configuration stays.
    pub fn apply(&self, text: &[u8]) -> Result<(), ConfigError> {
        let h = hash(text);
        let previous = self.current.load_full();
        match parse_and_compile(&self.compiler, text, h.clone(), Some(&previous)) {
            Ok(runtime) => {
                runtime.publish_instances();
                self.current.store(Arc::new(runtime));
                let status = self.status.load();
                self.status.store(Arc::new(Status {
                    source: status.source.clone(),
                    hash: h,
                    loaded_at: Some(SystemTime::now()),
                    last_error: None,
                }));
                metrics::counter!("gateway_config_reloads_total").increment(1);
                tracing::info!(source = %status.source, "gateway configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.record_error(e.to_string());
                Err(e)
            }
        }
    }

    /// Takes new DNS answers: when they differ from those the running configuration was
    /// compiled with, it is compiled again with them (instance health carries over by URL).
    /// A reload racing this wins; the next refresh compares again.
    pub fn set_addresses(&self, addresses: Addresses) {
        let addresses = Arc::new(addresses);
        self.compiler.addresses.store(addresses.clone());
        let previous = self.current.load_full();
        if previous.addresses == addresses {
            return;
        }
        match self
            .compiler
            .compile(&previous.config, previous.hash.clone(), Some(&previous))
        {
            Ok(runtime) => {
                let runtime = Arc::new(runtime);
                let swapped = self.current.compare_and_swap(&previous, runtime.clone());
                if Arc::ptr_eq(&swapped, &previous) {
                    runtime.publish_instances();
                    let instances: usize = addresses.values().map(Vec::len).sum();
                    tracing::info!(
                        names = addresses.len(),
                        instances,
                        "upstream addresses changed"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "upstream addresses not applied"),
        }
    }

    fn record_error(&self, error: String) {
        let status = self.status.load();
        metrics::counter!("gateway_config_reload_errors_total").increment(1);
        tracing::error!(source = %status.source, error = %error, "gateway configuration rejected; keeping the last good one");
        self.status.store(Arc::new(Status {
            last_error: Some(error),
            ..Status::clone(&status)
        }));
    }
}

fn parse_and_compile(
    compiler: &Compiler,
    text: &[u8],
    hash: String,
    previous: Option<&Runtime>,
) -> Result<Runtime, ConfigError> {
    let text = std::str::from_utf8(text).map_err(|e| ConfigError::one("(file)", e.to_string()))?;
    let config = config::parse(text)?;
    compiler.compile(&config, hash, previous)
}

/// Polls the file's content hash and applies changes until `stop`.
pub async fn watch(shared: Arc<Shared>, path: PathBuf, every: Duration, stop: CancellationToken) {
    let mut seen = shared.status.load().hash.clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let text = match tokio::fs::read(&path).await {
            Ok(t) => t,
            Err(e) => {
                // A symlink swap can make the file vanish for an instant: report only a
                // lasting failure, once.
                let message = format!("cannot read {}: {e}", path.display());
                if shared.status.load().last_error.as_deref() != Some(message.as_str()) {
                    tokio::time::sleep(every / 2).await;
                    if tokio::fs::metadata(&path).await.is_err() {
                        shared.record_error(message);
                        seen = String::new();
                    }
                }
                continue;
            }
        };
        let h = hash(&text);
        if h == seen {
            continue;
        }
        seen = h;
        let _ = shared.apply(&text);
    }
}

/// Active health checks of every instance of the running configuration until `stop`.
pub async fn check_health(shared: Arc<Shared>, client: HttpClient, stop: CancellationToken) {
    loop {
        let runtime = shared.current.load_full();
        let hc = runtime.defaults.health_check.clone();
        let timeout = Duration::from_millis(hc.timeout_ms);
        let probes = runtime.instances.values().map(|instance| {
            let client = &client;
            let path = hc.path.as_str();
            async move {
                let up = upstream::probe(client, instance, path, timeout).await;
                instance.set_health(up);
            }
        });
        futures::future::join_all(probes).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(hc.interval_ms)) => {}
        }
    }
}

/// Resolves the host-named instance URLs of the running configuration every
/// `upstreamDefaults.dnsRefreshMs` until `stop`, so each address is an instance of its own
/// (the pods behind a headless Service come and go). A name that fails to resolve keeps its
/// last addresses (and is counted in `gateway_upstream_dns_errors_total`).
pub async fn resolve_upstreams(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let runtime = shared.current.load_full();
        let every = runtime.defaults.dns_refresh_ms;
        if every > 0 {
            let names: BTreeMap<String, (String, u16)> = runtime
                .config
                .routes
                .iter()
                .flat_map(|r| r.instance_urls())
                .filter_map(|url| {
                    let url = url.trim_end_matches('/').to_string();
                    config::dns_name(&url).map(|name| (url, name))
                })
                .collect();
            let mut addresses = Addresses::new();
            for (url, (host, port)) in names {
                let found = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::lookup_host((host.as_str(), port)),
                )
                .await;
                match found {
                    Ok(Ok(addrs)) => {
                        let mut addrs: Vec<SocketAddr> = addrs.collect();
                        addrs.sort();
                        addrs.dedup();
                        addresses.insert(url, addrs);
                    }
                    failed => {
                        let error = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".to_string(),
                        };
                        metrics::counter!("gateway_upstream_dns_errors_total", "host" => host.clone())
                            .increment(1);
                        tracing::warn!(%host, %error, "upstream name did not resolve; keeping its last addresses");
                        if let Some(last) = runtime.addresses.get(&url) {
                            addresses.insert(url, last.clone());
                        }
                    }
                }
            }
            shared.set_addresses(addresses);
        }
        let wait = Duration::from_millis(if every > 0 { every } else { 5_000 });
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Drops idle in-memory buckets every few seconds until `stop`.
pub async fn maintain_limits(shared: Arc<Shared>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let runtime = shared.current.load_full();
        let mut buckets = 0;
        for rule in runtime.limits.all() {
            rule.store.maintain();
            buckets += rule.store.buckets();
        }
        metrics::gauge!("gateway_rate_limit_buckets").set(buckets as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_invalid_reload_keeps_the_running_configuration() {
        let shared = Shared::load(None, Compiler::default())
            .await
            .expect("builtin");
        let before = shared.current.load().routes.len();
        let err = shared
            .apply(b"version: 1\nroutes: []\n")
            .expect_err("no routes");
        assert!(err.to_string().contains("routes"), "{err}");
        assert_eq!(shared.current.load().routes.len(), before);
        assert!(shared.status.load().last_error.is_some());
        let ok = "version: 1\nroutes:\n- {pathPrefix: /x, service: x, upstream: 'http://127.0.0.1:1', methods: [GET], auth: public}\n";
        shared.apply(ok.as_bytes()).expect("valid");
        assert_eq!(shared.current.load().routes.len(), 1);
        assert!(shared.status.load().last_error.is_none());
    }

    #[tokio::test]
    async fn redis_store_without_a_redis_url_is_refused() {
        let compiler = Compiler::default();
        let text = "version: 1\nroutes:\n- {pathPrefix: /x, service: x, upstream: 'http://127.0.0.1:1', methods: [GET], auth: public}\nrateLimit: {enabled: true, clusterWide: true, store: redis, rules: []}\n";
        let config = config::parse(text).expect("parses");
        let err = compiler
            .compile(&config, String::new(), None)
            .err()
            .expect("refused");
        assert!(err.to_string().starts_with("rateLimit.store"), "{err}");
    }

    fn addresses(url: &str, addrs: &[&str]) -> Addresses {
        [(
            url.to_string(),
            addrs.iter().map(|a| a.parse().expect("addr")).collect(),
        )]
        .into()
    }

    fn bases(runtime: &Runtime) -> Vec<String> {
        runtime.routes[0]
            .pool
            .instances
            .iter()
            .map(|i| i.base.clone())
            .collect()
    }

    #[tokio::test]
    async fn each_address_of_a_name_is_an_instance_and_one_still_there_keeps_its_health() {
        let text = "version: 1\nroutes:\n- {pathPrefix: /x, service: x, upstream: 'http://x-pods:8080/', methods: [GET], auth: public}\n";
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, text).expect("write");
        let shared = Shared::load(Some(&path), Compiler::default())
            .await
            .expect("load");
        assert_eq!(
            bases(&shared.current.load()),
            ["http://x-pods:8080"],
            "not resolved yet"
        );

        shared.set_addresses(addresses(
            "http://x-pods:8080",
            &["10.0.0.1:8080", "10.0.0.2:8080"],
        ));
        let first = shared.current.load_full();
        assert_eq!(
            bases(&first),
            ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]
        );
        first.instances["http://10.0.0.2:8080"].set_health(false);

        // The same answer again compiles nothing.
        shared.set_addresses(addresses(
            "http://x-pods:8080",
            &["10.0.0.1:8080", "10.0.0.2:8080"],
        ));
        assert!(Arc::ptr_eq(&first, &shared.current.load_full()));

        // A pod gone, another new: the one still there is the same instance, still unhealthy.
        shared.set_addresses(addresses(
            "http://x-pods:8080",
            &["10.0.0.2:8080", "10.0.0.3:8080"],
        ));
        let second = shared.current.load_full();
        assert_eq!(
            bases(&second),
            ["http://10.0.0.2:8080", "http://10.0.0.3:8080"]
        );
        assert!(Arc::ptr_eq(
            &first.instances["http://10.0.0.2:8080"],
            &second.instances["http://10.0.0.2:8080"]
        ));
        assert!(!second.instances["http://10.0.0.2:8080"].is_healthy());
        assert!(second.instances["http://10.0.0.3:8080"].is_healthy());

        // A reload keeps the addresses; with the refresh off the name is one instance again.
        shared.apply(text.as_bytes()).expect("reload");
        assert_eq!(
            bases(&shared.current.load()),
            ["http://10.0.0.2:8080", "http://10.0.0.3:8080"]
        );
        let off = format!("{text}upstreamDefaults: {{dnsRefreshMs: 0}}\n");
        shared.apply(off.as_bytes()).expect("reload");
        assert_eq!(bases(&shared.current.load()), ["http://x-pods:8080"]);
    }

    #[tokio::test]
    async fn instances_and_unchanged_buckets_survive_a_reload() {
        let text = "version: 1\nroutes:\n- {pathPrefix: /x, service: x, upstream: 'http://127.0.0.1:1', methods: [GET], auth: public}\nrateLimit: {enabled: true, rules: [{name: r, key: ip, rate: 1, per: minute, burst: 1}]}\n";
        let compiler = Compiler::default();
        let config = config::parse(text).expect("parses");
        let first = compiler.compile(&config, "a".into(), None).expect("ok");
        let second = compiler
            .compile(&config, "b".into(), Some(&first))
            .expect("ok");
        assert!(Arc::ptr_eq(
            &first.instances["http://127.0.0.1:1"],
            &second.instances["http://127.0.0.1:1"]
        ));
        assert!(Arc::ptr_eq(
            &first.limits.rules[0].store,
            &second.limits.rules[0].store
        ));
    }
}

#[cfg(test)]
mod override_tests {
    use super::*;

    #[tokio::test]
    async fn upstream_overrides_replace_the_builtin_ports_by_service() {
        let compiler = Compiler {
            upstreams: [("search".to_string(), "http://127.0.0.1:39999".to_string())].into(),
            ..Compiler::default()
        };
        let shared = Shared::load(None, compiler).await.expect("builtin");
        let runtime = shared.current.load();
        let search = runtime.route("/api/search").expect("search route");
        assert_eq!(search.pool.instances[0].base, "http://127.0.0.1:39999");
        let auth = runtime.route("/api/sessions").expect("auth route");
        assert_eq!(auth.pool.instances[0].base, "http://127.0.0.1:8081");
    }
}
