//! The base of every typed REST client (our counterpart of Feign clients): connect and request
//! timeouts, retries with jittered exponential backoff for idempotent calls only, and
//! propagation of the request id, the `traceparent` and the caller's credentials; each call is
//! a `call` span.
//!
//! A service exposes its callers a small typed client built on [`RestClient`], e.g.
//! `SearchClient::product(&ctx, id) -> Result<Product, ClientError>`.

use std::time::Duration;

use http::{Method, StatusCode};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use url::Url;

use crate::context::RequestContext;
use crate::problem::{ApiError, Problem};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSettings {
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// Extra attempts after the first, for idempotent calls.
    pub max_retries: u32,
    /// No retry starts once the call has taken this long: a slow failure (a dependency whose
    /// own backend is down answers 503 only after its timeout) is passed on at once instead
    /// of multiplying the caller's wait.
    pub retry_budget_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 1_000,
            request_timeout_ms: 5_000,
            max_retries: 2,
            retry_budget_ms: 1_000,
            backoff_base_ms: 50,
            backoff_max_ms: 1_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{service} is unreachable: {message}")]
    Unreachable {
        service: &'static str,
        message: String,
    },
    #[error("{service} did not answer in time")]
    Timeout { service: &'static str },
    #[error("{service} answered {status}")]
    Status {
        service: &'static str,
        status: StatusCode,
        problem: Option<Box<Problem>>,
    },
    #[error("{service} sent a body we cannot read: {message}")]
    Decode {
        service: &'static str,
        message: String,
    },
    #[error("bad client configuration: {0}")]
    Config(String),
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Status { status, .. } => matches!(
                *status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            Self::Decode { .. } | Self::Config(_) => false,
        }
    }
}

/// A downstream failure as seen by our own callers: a dependency that is down is a 503;
/// a 4xx from downstream is passed on; anything else is an internal error.
impl From<ClientError> for ApiError {
    fn from(err: ClientError) -> Self {
        match &err {
            ClientError::Unreachable { service, .. } | ClientError::Timeout { service } => {
                ApiError::Unavailable(format!("The {service} service is unavailable."))
            }
            ClientError::Status {
                status,
                problem,
                service,
            } => match *status {
                StatusCode::NOT_FOUND => ApiError::NotFound(
                    problem
                        .as_ref()
                        .and_then(|p| p.detail.clone())
                        .unwrap_or_else(|| "Not found.".into()),
                ),
                StatusCode::UNAUTHORIZED => ApiError::Unauthorized("Not authenticated.".into()),
                StatusCode::FORBIDDEN => ApiError::Forbidden("Not allowed.".into()),
                s if s.is_server_error() => {
                    ApiError::Unavailable(format!("The {service} service is unavailable."))
                }
                _ => ApiError::internal(err),
            },
            _ => ApiError::internal(err),
        }
    }
}

/// The shared HTTP client of one downstream service.
#[derive(Clone, Debug)]
pub struct RestClient {
    service: &'static str,
    base: Url,
    http: reqwest::Client,
    settings: ClientSettings,
}

impl RestClient {
    pub fn new(
        service: &'static str,
        base_url: &str,
        settings: ClientSettings,
    ) -> Result<Self, ClientError> {
        let mut base = Url::parse(base_url)
            .map_err(|e| ClientError::Config(format!("{service} base URL `{base_url}`: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .pool_idle_timeout(crate::server::IDLE_CONNECTION_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Self {
            service,
            base,
            http,
            settings,
        })
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ClientError::Config(format!("path `{path}`: {e}")))
    }

    /// `GET path` decoded as JSON (retried: GET is idempotent).
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        ctx: &RequestContext,
        path: &str,
    ) -> Result<T, ClientError> {
        self.call::<(), T>(ctx, Method::GET, path, None, false)
            .await
    }

    /// Sends `body` as JSON with `method`, decoding a JSON answer. Retried only when the method
    /// is idempotent or `idempotent` says the call is safe to repeat (it carries an
    /// idempotency key).
    pub async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        ctx: &RequestContext,
        method: Method,
        path: &str,
        body: &B,
        idempotent: bool,
    ) -> Result<T, ClientError> {
        self.call(ctx, method, path, Some(body), idempotent).await
    }

    /// One call, retries included, in a `call` span: with OpenTelemetry export on, the span
    /// is what the callee's `traceparent` names as its parent.
    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        ctx: &RequestContext,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotent: bool,
    ) -> Result<T, ClientError> {
        let span = tracing::info_span!("call", service = self.service, method = %method, path);
        async move {
            let url = self.url(path)?;
            let may_retry = idempotent || method.is_idempotent();
            let attempts = if may_retry {
                self.settings.max_retries + 1
            } else {
                1
            };
            let started = std::time::Instant::now();
            let budget = Duration::from_millis(self.settings.retry_budget_ms);
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut request = self
                    .http
                    .request(method.clone(), url.clone())
                    .headers(ctx.outgoing_headers());
                if let Some(b) = body {
                    request = request.json(b);
                }
                let result = match request.send().await {
                    Ok(response) => self.decode(response).await,
                    Err(e) => Err(self.transport_error(e)),
                };
                match result {
                    Err(err)
                        if attempt < attempts && err.retryable() && started.elapsed() < budget =>
                    {
                        let delay = self.backoff(attempt);
                        tracing::debug!(service = self.service, attempt, ?delay, error = %err, "retrying");
                        tokio::time::sleep(delay).await;
                    }
                    other => return other,
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            let problem = serde_json::from_slice::<Problem>(&bytes).ok().map(Box::new);
            return Err(ClientError::Status {
                service: self.service,
                status,
                problem,
            });
        }
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
            service: self.service,
            message: e.to_string(),
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout {
                service: self.service,
            }
        } else {
            ClientError::Unreachable {
                service: self.service,
                message: e.to_string(),
            }
        }
    }

    /// Full-jitter exponential backoff.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .settings
            .backoff_base_ms
            .saturating_mul(1 << attempt.min(16))
            .min(self.settings.backoff_max_ms)
            .max(1);
        Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Credentials, TraceParent};
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Clone, Default)]
    struct Seen {
        calls: Arc<AtomicU32>,
        fail_first: u32,
        last: Arc<tokio::sync::Mutex<Option<HeaderMap>>>,
    }

    async fn echo(
        State(seen): State<Seen>,
        headers: HeaderMap,
    ) -> Result<Json<serde_json::Value>, StatusCode> {
        let n = seen.calls.fetch_add(1, Ordering::SeqCst) + 1;
        *seen.last.lock().await = Some(headers.clone());
        if n <= seen.fail_first {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
        Ok(Json(serde_json::json!({ "calls": n })))
    }

    async fn spawn(seen: Seen) -> String {
        let app = Router::new()
            .route("/v1/echo", get(echo))
            .route("/v1/create", post(echo))
            .with_state(seen);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn fast() -> ClientSettings {
        ClientSettings {
            backoff_base_ms: 1,
            backoff_max_ms: 5,
            ..ClientSettings::default()
        }
    }

    #[tokio::test]
    async fn propagates_request_id_traceparent_and_credentials() {
        let seen = Seen::default();
        let base = spawn(seen.clone()).await;
        let client = RestClient::new("echo", &base, fast()).expect("client");
        let ctx = RequestContext::new_root().with_credentials(Credentials::bearer("tok.en.x"));
        let _: serde_json::Value = client.get_json(&ctx, "/v1/echo").await.expect("call");
        let headers = seen.last.lock().await.clone().expect("headers");
        assert_eq!(headers["x-request-id"], ctx.request_id.as_str());
        let tp =
            TraceParent::parse(headers["traceparent"].to_str().expect("ascii")).expect("valid");
        assert_eq!(tp.trace_id(), ctx.trace.trace_id(), "same trace");
        assert_eq!(
            tp.span_id(),
            ctx.trace.span_id(),
            "this hop is the parent of the callee's span"
        );
        assert_eq!(headers["authorization"], "Bearer tok.en.x");
    }

    #[tokio::test]
    async fn with_export_on_the_callee_is_a_child_of_the_call_span() {
        let captured = crate::telemetry::CapturedSpans::start();
        let seen = Seen::default();
        let base = spawn(seen.clone()).await;
        let client = RestClient::new("echo", &base, fast()).expect("client");
        let ctx = RequestContext::new_root();
        let _: serde_json::Value = client.get_json(&ctx, "/v1/echo").await.expect("call");
        let headers = seen.last.lock().await.clone().expect("headers");
        let sent =
            TraceParent::parse(headers["traceparent"].to_str().expect("ascii")).expect("valid");
        let spans = captured.finished();
        let call = spans
            .iter()
            .find(|s| s.name == "call")
            .expect("a call span");
        assert_eq!(sent.span_id(), call.span_context.span_id().to_string());
        assert_eq!(sent.trace_id(), call.span_context.trace_id().to_string());
    }

    #[tokio::test]
    async fn retries_idempotent_calls_on_503() {
        let seen = Seen {
            fail_first: 2,
            ..Seen::default()
        };
        let base = spawn(seen.clone()).await;
        let client = RestClient::new("echo", &base, fast()).expect("client");
        let body: serde_json::Value = client
            .get_json(&RequestContext::new_root(), "v1/echo")
            .await
            .expect("third try succeeds");
        assert_eq!(body["calls"], 3);
    }

    #[tokio::test]
    async fn no_retry_once_the_budget_is_spent() {
        let seen = Seen {
            fail_first: 2,
            ..Seen::default()
        };
        let base = spawn(seen.clone()).await;
        // A budget of 0 ms is spent by the first attempt: its 503 goes back as it is.
        let client = RestClient::new(
            "echo",
            &base,
            ClientSettings {
                retry_budget_ms: 0,
                ..fast()
            },
        )
        .expect("client");
        let err = client
            .get_json::<serde_json::Value>(&RequestContext::new_root(), "v1/echo")
            .await
            .expect_err("no retry");
        assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn does_not_retry_non_idempotent_calls() {
        let seen = Seen {
            fail_first: 1,
            ..Seen::default()
        };
        let base = spawn(seen.clone()).await;
        let client = RestClient::new("echo", &base, fast()).expect("client");
        let err = client
            .send_json::<_, serde_json::Value>(
                &RequestContext::new_root(),
                Method::POST,
                "/v1/create",
                &serde_json::json!({}),
                false,
            )
            .await
            .expect_err("one attempt only");
        assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(seen.calls.load(Ordering::SeqCst), 1);

        // The same call marked idempotent (it carries an idempotency key) is retried.
        let _: serde_json::Value = client
            .send_json(
                &RequestContext::new_root(),
                Method::POST,
                "/v1/create",
                &serde_json::json!({}),
                true,
            )
            .await
            .expect("retried");
    }

    #[tokio::test]
    async fn an_unreachable_service_maps_to_503() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let client = RestClient::new("search", &format!("http://{addr}"), fast()).expect("client");
        let err = client
            .get_json::<serde_json::Value>(&RequestContext::new_root(), "/v1/x")
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
        assert_eq!(
            ApiError::from(err).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
