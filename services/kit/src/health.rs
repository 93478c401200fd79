//! `/healthz` (the process is alive) and `/readyz` (every dependency answers), reported per
//! dependency as JSON, 503 when any is down or the process is shutting down.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures::future::{BoxFuture, join_all};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::backend::{BackendUrl, Location};

/// How long one dependency check may take before it counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// One named dependency check.
#[derive(Clone)]
pub struct HealthCheck {
    name: String,
    target: Option<String>,
    advisory: bool,
    check: Arc<CheckFn>,
}

impl HealthCheck {
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.into(),
            target: None,
            advisory: false,
            check: Arc::new(move || Box::pin(check())),
        }
    }

    /// A check that runs `check` on a clone of `value` (an adapter handle) each time, an error
    /// shown by its `Display`.
    pub fn on<T, F, Fut, E>(name: impl Into<String>, value: T, check: F) -> Self
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self::new(name, move || {
            let checked = check(value.clone());
            async move { checked.await.map_err(|e| e.to_string()) }
        })
    }

    /// What the check talks to, shown in `/readyz` (already redacted).
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Reported in `/readyz` but never makes the service unready: when it fails the service
    /// is `degraded` and still answers 200 (e.g. a rejected config reload while the last good
    /// config keeps serving; taking every replica out of rotation would be worse).
    pub fn advisory(mut self) -> Self {
        self.advisory = true;
        self
    }

    /// A reachability check for a backend URL: a TCP connect for network backends, a writable
    /// directory for file-based ones, always up for in-process ones. Adapters that can speak
    /// the backend's protocol register a protocol check instead.
    pub fn reachable(name: impl Into<String>, url: &BackendUrl) -> Self {
        let location = url.location().clone();
        Self::new(name, move || {
            let location = location.clone();
            async move {
                match location {
                    Location::InProcess => Ok(()),
                    Location::Path(path) => {
                        let dir = if path.extension().is_some() {
                            path.parent().map(|p| p.to_path_buf()).unwrap_or_default()
                        } else {
                            path
                        };
                        let dir = if dir.as_os_str().is_empty() {
                            ".".into()
                        } else {
                            dir
                        };
                        tokio::fs::create_dir_all(&dir)
                            .await
                            .map_err(|e| format!("{}: {e}", dir.display()))
                    }
                    Location::Network(hosts) => {
                        let mut last = String::from("no hosts");
                        for (host, port) in hosts {
                            match tokio::net::TcpStream::connect((host.as_str(), port)).await {
                                Ok(_) => return Ok(()),
                                Err(e) => last = format!("{host}:{port}: {e}"),
                            }
                        }
                        Err(last)
                    }
                }
            }
        })
        .with_target(url.redacted())
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The result of one check, as reported by `/readyz`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CheckReport {
    /// `up` or `down`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `/readyz` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReadinessReport {
    /// `ready`, `degraded` (an advisory check is down; still 200), `unready` or
    /// `shutting_down`.
    pub status: String,
    pub service: String,
    pub checks: BTreeMap<String, CheckReport>,
}

/// All of a service's dependency checks.
#[derive(Clone)]
pub struct Readiness {
    service: String,
    checks: Vec<HealthCheck>,
    shutdown: CancellationToken,
}

impl Readiness {
    pub fn new(service: impl Into<String>, shutdown: CancellationToken) -> Self {
        Self {
            service: service.into(),
            checks: Vec::new(),
            shutdown,
        }
    }

    pub fn with(mut self, check: HealthCheck) -> Self {
        self.checks.push(check);
        self
    }

    pub fn add(&mut self, check: HealthCheck) {
        self.checks.push(check);
    }

    /// Runs every check concurrently, each bounded by [`CHECK_TIMEOUT`].
    pub async fn report(&self) -> ReadinessReport {
        let results = join_all(self.checks.iter().map(|c| async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (c.check)()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            };
            let report = CheckReport {
                status: if outcome.is_ok() { "up" } else { "down" }.to_string(),
                target: c.target.clone(),
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                error: outcome.err(),
            };
            (c.name.clone(), c.advisory, report)
        }))
        .await;
        let up = |advisory: bool| {
            results
                .iter()
                .filter(|(_, a, _)| *a == advisory)
                .all(|(_, _, r)| r.status == "up")
        };
        let status = if self.shutdown.is_cancelled() {
            "shutting_down"
        } else if !up(false) {
            "unready"
        } else if !up(true) {
            "degraded"
        } else {
            "ready"
        };
        ReadinessReport {
            status: status.to_string(),
            service: self.service.clone(),
            checks: results.into_iter().map(|(n, _, r)| (n, r)).collect(),
        }
    }
}

/// `GET /healthz`: the process is alive and serving.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "alive" }))
}

/// `GET /readyz`: every dependency answers.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Every dependency is up (or only an advisory check is down: `degraded`)", body = ReadinessReport),
    (status = 503, description = "A dependency is down or the service is shutting down", body = ReadinessReport),
))]
pub async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let report = readiness.report().await;
    let code = if report.status == "ready" || report.status == "degraded" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendKind, BackendUrl};

    #[tokio::test]
    async fn ready_only_when_every_check_is_up() {
        let token = CancellationToken::new();
        let readiness = Readiness::new("cart", token.clone())
            .with(HealthCheck::new("database", || async { Ok(()) }))
            .with(HealthCheck::new("cache", || async {
                Err("refused".to_string())
            }));
        let report = readiness.report().await;
        assert_eq!(report.status, "unready");
        assert_eq!(report.checks["database"].status, "up");
        assert_eq!(report.checks["cache"].status, "down");
        assert_eq!(report.checks["cache"].error.as_deref(), Some("refused"));

        let ok = Readiness::new("cart", token.clone())
            .with(HealthCheck::new("database", || async { Ok(()) }));
        assert_eq!(ok.report().await.status, "ready");
        token.cancel();
        assert_eq!(ok.report().await.status, "shutting_down");
    }

    #[tokio::test]
    async fn a_failed_advisory_check_degrades_but_stays_ready() {
        let token = CancellationToken::new();
        let readiness = Readiness::new("gateway", token)
            .with(HealthCheck::new("cache", || async { Ok(()) }))
            .with(HealthCheck::new("config", || async { Err("bad file".to_string()) }).advisory());
        let report = readiness.report().await;
        assert_eq!(report.status, "degraded");
        assert_eq!(report.checks["config"].error.as_deref(), Some("bad file"));
        let (code, _) = readyz(State(readiness)).await.into_response().into_parts();
        assert_eq!(code.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn reachability_of_real_and_embedded_backends() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = BackendUrl::parse(BackendKind::Cache, &format!("redis://127.0.0.1:{port}"))
            .expect("url");
        assert!((HealthCheck::reachable("cache", &up).check)().await.is_ok());
        drop(listener);
        let down = BackendUrl::parse(BackendKind::Cache, &format!("redis://127.0.0.1:{port}"))
            .expect("url");
        assert!(
            (HealthCheck::reachable("cache", &down).check)()
                .await
                .is_err()
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite =
            BackendUrl::embedded_path(BackendKind::Sql, "sqlite", &dir.path().join("x/cart.db"));
        assert!(
            (HealthCheck::reachable("db", &sqlite).check)()
                .await
                .is_ok()
        );
        assert!(dir.path().join("x").is_dir());
        let mem = BackendUrl::in_memory(BackendKind::Cache);
        assert!(
            (HealthCheck::reachable("cache", &mem).check)()
                .await
                .is_ok()
        );
    }
}
