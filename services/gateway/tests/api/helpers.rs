//! Real servers for the gateway's tests: echo upstreams (small axum apps on their own runtime,
//! so killing one closes every connection it had), the real auth service on SQLite serving
//! the JWKS, and the gateway itself with a configuration file in a temporary directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use serde_json::{Value, json};
use storefront_auth::settings::SigningKey;
use storefront_gateway::{Application, Settings};
use storefront_kit::auth::{Issuer, Role, VerifierSettings};
use storefront_kit::backend::CacheUrl;
use storefront_kit::server::Platform;
use storefront_kit::settings::Secret;
use storefront_tests::{IsolatedServer, RedisNamespace, Stack};

// ---------------------------------------------------------------- upstreams

#[derive(Clone)]
struct EchoState {
    id: String,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

/// An upstream instance: echoes what it got as JSON with its id; `/v1/fail` answers 503,
/// `/v1/slow` sleeps two seconds, `/v1/close` closes the connection after answering,
/// `/v1/stream` answers `part one, part two` in two chunks 50 ms apart (chunked);
/// `/healthz` is 200 while healthy.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub healthy: Arc<AtomicBool>,
    server: IsolatedServer,
}

async fn echo(State(s): State<EchoState>, request: Request) -> impl IntoResponse {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    if path.ends_with("/fail") {
        return (StatusCode::SERVICE_UNAVAILABLE, "failing on purpose").into_response();
    }
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if path.ends_with("/stream") {
        let parts = futures::stream::unfold(0, |part| async move {
            match part {
                0 => Some((Ok::<_, std::io::Error>("part one, "), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((Ok("part two"), 2))
                }
                _ => None,
            }
        });
        return axum::body::Body::from_stream(parts).into_response();
    }
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    let mut response = axum::Json(json!({
        "instance": s.id,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "headers": headers,
        "body_len": body.len(),
    }))
    .into_response();
    if path.ends_with("/close") {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn healthz(State(s): State<EchoState>) -> StatusCode {
    if s.healthy.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

impl Upstream {
    pub fn start(id: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let state = EchoState {
            id: id.to_string(),
            healthy: Arc::new(AtomicBool::new(true)),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let (hits, healthy) = (state.hits.clone(), state.healthy.clone());
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/", any(echo))
            .route("/{*path}", any(echo))
            .with_state(state);
        Self {
            addr,
            hits,
            healthy,
            server: IsolatedServer::start(listener, app),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the instance: listener and every open connection.
    pub fn kill(&mut self) {
        self.server.kill();
    }
}

// ---------------------------------------------------------------- auth

/// The real auth service (SQLite in a temporary directory) on a runtime of its own, shared by
/// every test of this binary; tokens are signed with the key it publishes.
pub struct Auth {
    pub base: String,
    pub issuer: Issuer,
}

static AUTH: OnceLock<Auth> = OnceLock::new();

pub fn auth() -> &'static Auth {
    AUTH.get_or_init(|| {
        let issuer = Issuer::generate("gateway-test-key", "storefront", "storefront");
        let pem = issuer.to_pkcs8_pem().expect("pem");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let dir = tempfile::tempdir().expect("tempdir");
                let settings = storefront_auth::Settings {
                    listen: "127.0.0.1:0".into(),
                    signing_keys: vec![SigningKey {
                        kid: "gateway-test-key".into(),
                        pem: Secret::new(pem),
                    }],
                    password_memory_kib: 1024,
                    password_iterations: 1,
                    ..storefront_auth::Settings::default()
                };
                let platform = Platform::new(dir.path(), Duration::from_secs(1));
                let app = storefront_auth::app::build(&settings, &platform)
                    .await
                    .expect("auth service");
                tx.send(format!("http://127.0.0.1:{}", app.port()))
                    .expect("send");
                let _ = app.run_until_stopped(platform).await;
                drop(dir);
            });
        });
        let base = rx.recv().expect("auth base url");
        Auth { base, issuer }
    })
}

impl Auth {
    pub fn token(&self, subject: &str, roles: &[Role]) -> String {
        self.issuer
            .token(subject, roles, Duration::from_secs(900))
            .expect("token")
    }
}

// ---------------------------------------------------------------- the gateway

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `redis://...`: the stack's Redis (with `prefix`) or a dead address.
    pub cache_url: Option<String>,
    pub cache_prefix: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub cors_origins: Vec<String>,
}

pub struct TestGateway {
    pub base: String,
    pub http: reqwest::Client,
    pub config_path: PathBuf,
    pub platform: Platform,
    _dir: tempfile::TempDir,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.platform.shutdown.trigger();
    }
}

pub async fn spawn(config: &str) -> TestGateway {
    spawn_with(config, Options::default()).await
}

pub async fn spawn_with(config: &str, options: Options) -> TestGateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("gateway.yaml");
    std::fs::write(&config_path, config).expect("write config");
    spawn_on(config_path, options, dir).await
}

/// A second gateway on the same configuration file.
pub async fn spawn_replica(of: &TestGateway, options: Options) -> TestGateway {
    let dir = tempfile::tempdir().expect("tempdir");
    spawn_on(of.config_path.clone(), options, dir).await
}

/// The gateway reading its configuration from `config_path` (which the test manages).
pub async fn spawn_on(
    config_path: PathBuf,
    options: Options,
    dir: tempfile::TempDir,
) -> TestGateway {
    let auth = auth();
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        cache_url: options
            .cache_url
            .as_deref()
            .map(|u| CacheUrl::parse(u).expect("cache url")),
        cache_prefix: options.cache_prefix.unwrap_or_else(|| "gateway".into()),
        config_path: Some(config_path.clone()),
        reload_interval_ms: 100,
        auth: VerifierSettings {
            jwks_url: format!("{}/.well-known/jwks.json", auth.base),
            ..VerifierSettings::default()
        },
        max_body_bytes: options.max_body_bytes.unwrap_or(1 << 20),
        cors_origins: options.cors_origins,
        ..Settings::default()
    };
    let platform = Platform::new(dir.path(), Duration::from_secs(2));
    let app = Application::build(&settings, &platform)
        .await
        .expect("build the gateway");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(platform.clone()));
    TestGateway {
        base,
        http: reqwest::Client::new(),
        config_path,
        platform,
        _dir: dir,
    }
}

/// Redis of the stack with a namespace of the test's own: (URL, prefix, guard).
pub async fn redis() -> (String, String, RedisNamespace) {
    let stack = Stack::get();
    let ns = stack.redis_namespace().await.expect("redis namespace");
    let prefix = ns.prefix().trim_end_matches(':').to_string();
    (stack.redis_url.clone(), prefix, ns)
}

/// A loopback address where nothing listens.
pub fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr.to_string()
}

/// One route line for a configuration.
pub fn route(prefix: &str, service: &str, upstreams: &[&Upstream], extra: &str) -> String {
    let urls: Vec<String> = upstreams
        .iter()
        .map(|u| format!("\"{}\"", u.url()))
        .collect();
    format!(
        "- {{pathPrefix: {prefix}, service: {service}, upstream: {first}, instances: [{all}], {extra}}}\n",
        first = urls[0],
        all = urls.join(", "),
    )
}

/// A whole configuration: routes, then an optional tail (rateLimit, trustedProxies, ...).
/// Unless the tail says otherwise, health checks run every 100 ms and one failure ejects.
pub fn config(routes: &[String], tail: &str) -> String {
    let defaults = if tail.contains("upstreamDefaults") {
        ""
    } else {
        "upstreamDefaults:\n  healthCheck: {path: /healthz, intervalMs: 100, timeoutMs: 200}\n  outlier: {consecutiveFailures: 1, baseEjectionMs: 30000, maxEjectionMs: 30000}\n"
    };
    format!("version: 1\nroutes:\n{}{tail}\n{defaults}", routes.concat())
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    /// Replaces the configuration file (the gateway notices within its poll interval).
    pub fn write_config(&self, text: &str) {
        // Write then rename, as a ConfigMap update swaps the file at once.
        let tmp = self.config_path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &self.config_path).expect("rename");
    }

    pub async fn readyz(&self) -> (StatusCode, Value) {
        let r = self.get("/readyz").await;
        let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
        (status, r.json().await.expect("json"))
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("text")
    }
}

/// Status, content type and JSON body (Null when not JSON).
pub async fn answer(r: reqwest::Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, ct, body)
}
