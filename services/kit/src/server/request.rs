//! The layer every route of every service runs under: the request's context (request id and
//! trace context, see [`crate::context`]), its `http` span (or, when nothing reads spans, the
//! same fields for the log lines of its work), its metrics, and the response's `x-request-id`
//! and `traceparent`.
//!
//! One layer with one boxed future per request, in place of a context middleware,
//! tower-http's `TraceLayer` and a metrics middleware: the gateway measured those three at
//! several microseconds of CPU per proxied request, a tenth of its budget (bench/gateway).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::response::Response;
use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, StatusCode};
use metrics::{Counter, Histogram};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::context::{REQUEST_ID, RequestContext, TRACEPARENT, within_trace};
use crate::metrics::KeptHandles;

/// See the module's documentation; `service` labels the span and the metrics.
#[derive(Clone, Copy)]
pub(crate) struct RequestLayer {
    pub service: &'static str,
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    /// Axum layers each route on its own, so each route keeps its own few metric handles.
    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            service: self.service,
            metrics: Arc::default(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct RequestService<S> {
    inner: S,
    service: &'static str,
    metrics: Arc<RouteMetrics>,
}

impl<S> Service<Request<Body>> for RequestService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .cloned()
            .map_or(RouteLabel::Fixed(UNMATCHED), RouteLabel::Matched);
        // The clone that was made ready is the one to call (tower's documented idiom).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        observe(
            self.service,
            route,
            self.metrics.clone(),
            request,
            Echo::Headers,
            move |ctx, mut request| {
                request.extensions_mut().insert(ctx);
                async move {
                    let Ok(response) = inner.call(request).await;
                    response
                }
            },
        )
    }
}

/// Where a response's `x-request-id` and `traceparent` go.
pub(crate) enum Echo {
    /// Into its header map.
    Headers,
    /// To the fast path's writer, which writes them as head lines (see
    /// [`super::fast::RelaySlot::echo`]): no header values made, inserted and dropped.
    Slot(super::fast::RelaySlot),
}

/// [`Echo`] with the request id to echo.
enum Echoed {
    Headers(Option<HeaderValue>),
    Slot(super::fast::RelaySlot, String),
}

/// What the request layer does around `handle`, for a request answered under `route`: the
/// request's context (handed to `handle`), its `http` span, its metrics (kept in `metrics`),
/// and the response's `x-request-id` and `traceparent`.
pub(crate) fn observe<F, Fut>(
    service: &'static str,
    route: RouteLabel,
    metrics: Arc<RouteMetrics>,
    request: Request<Body>,
    echo: Echo,
    handle: F,
) -> BoxFuture<'static, Result<Response, Infallible>>
where
    F: FnOnce(RequestContext, Request<Body>) -> Fut,
    Fut: Future<Output = Response> + Send + 'static,
{
    let started = Instant::now();
    let ctx = RequestContext::from_headers(request.headers());
    let method = request.method().clone();
    // The request id as the response will carry it (the context moves into `handle`).
    let echo = match echo {
        Echo::Headers => Echoed::Headers(HeaderValue::from_str(&ctx.request_id).ok()),
        Echo::Slot(slot) => Echoed::Slot(slot, ctx.request_id.clone()),
    };
    let hop = ctx.trace;
    // A span when something reads spans (an exporter, a span filter); else the log lines of
    // the request's work take its fields from a task-local (see `RequestFields`), which costs
    // a few allocations where a span cost several thousand instructions a request.
    let logged = if crate::telemetry::request_spans() {
        let span = tracing::info_span!(
            "http",
            service,
            method = method.as_str(),
            route = route.as_str(),
            request_id = ctx.request_id.as_str(),
            trace_id = ctx.trace.trace_id(),
        );
        crate::telemetry::continue_trace(&span, &ctx.caller);
        Logged::Span(span)
    } else {
        Logged::Fields(Arc::new(RequestFields {
            service,
            method: method.clone(),
            route: route.clone(),
            request_id: ctx.request_id.clone(),
            trace: ctx.trace,
        }))
    };
    let handled = handle(ctx, request);
    Box::pin(async move {
        // The request's trace context for what it causes: the request's own fields hold it
        // when there is no span (one task-local, not two, set and restored on every poll).
        let mut response = match &logged {
            Logged::Span(span) => within_trace(hop, handled).instrument(span.clone()).await,
            Logged::Fields(fields) => REQUEST.scope(fields.clone(), handled).await,
        };
        let status = response.status();
        let elapsed = started.elapsed();
        let latency_ms = elapsed.as_millis() as u64;
        if status.is_server_error() {
            logged.within(|| {
                tracing::error!(status = status.as_u16(), latency_ms, "response failed");
            });
        } else if tracing::enabled!(tracing::Level::DEBUG) {
            logged.within(|| {
                tracing::debug!(status = status.as_u16(), latency_ms, "answered");
            });
        }
        metrics.record(service, &method, &route, status, elapsed);
        match echo {
            Echoed::Headers(request_id) => {
                let headers = response.headers_mut();
                if let Some(v) = request_id {
                    headers.insert(REQUEST_ID, v);
                }
                headers.insert(TRACEPARENT, hop.header_value());
            }
            Echoed::Slot(slot, request_id) => slot.echo(request_id, hop),
        }
        Ok(response)
    })
}

tokio::task_local! {
    /// The request whose work this task is doing, when it has no `http` span.
    static REQUEST: Arc<RequestFields>;
}

/// A request's fields for the log lines of its work, as its `http` span would hold them.
pub(crate) struct RequestFields {
    service: &'static str,
    method: Method,
    route: RouteLabel,
    request_id: String,
    trace: crate::context::TraceParent,
}

/// The trace context of the request whose work the current task is doing without a span (see
/// [`crate::context::current_trace`]).
pub(crate) fn request_trace() -> Option<crate::context::TraceParent> {
    REQUEST.try_with(|r| r.trace).ok()
}

impl RequestFields {
    /// The fields of the request whose work the current task is doing, if any, as `(name,
    /// value)` pairs in the order of the span's fields, the span's name first.
    pub(crate) fn current_with<R>(with: impl FnOnce(&[(&str, &str)]) -> R) -> Option<R> {
        REQUEST
            .try_with(|r| {
                let trace_id = r.trace.trace_id();
                with(&[
                    ("name", "http"),
                    ("service", r.service),
                    ("method", r.method.as_str()),
                    ("route", r.route.as_str()),
                    ("request_id", &r.request_id),
                    ("trace_id", &trace_id),
                ])
            })
            .ok()
    }
}

/// How a request's log lines learn which request they belong to.
enum Logged {
    Span(tracing::Span),
    Fields(Arc<RequestFields>),
}

impl Logged {
    /// Runs `log` as part of the request.
    fn within(&self, log: impl FnOnce()) {
        match self {
            Self::Span(span) => span.in_scope(log),
            Self::Fields(fields) => REQUEST.sync_scope(fields.clone(), log),
        }
    }
}

/// The `route` label of a request: the path pattern the router matched, or a fixed name.
#[derive(Clone)]
pub(crate) enum RouteLabel {
    Matched(MatchedPath),
    Fixed(&'static str),
}

impl RouteLabel {
    fn as_str(&self) -> &str {
        match self {
            Self::Matched(path) => path.as_str(),
            Self::Fixed(name) => name,
        }
    }
}

/// The `route` label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// A route's metric handles by method and status, so a request costs no label strings or
/// registry lookups once its kind has been seen: `http_requests_total`,
/// `http_request_errors_total` (5xx) and `http_request_duration_seconds`, labelled by service,
/// method, matched route and (not the histogram) status.
pub(crate) struct RouteMetrics {
    kept: KeptHandles<Kind, Handles>,
}

impl Default for RouteMetrics {
    fn default() -> Self {
        Self {
            kept: KeptHandles::new(MAX_KINDS),
        }
    }
}

/// What a route's requests are counted by.
struct Kind {
    method: Method,
    route: RouteLabel,
    status: StatusCode,
}

struct Handles {
    requests: Counter,
    errors: Option<Counter>,
    duration: Histogram,
}

/// Kinds kept per route; past it (a client making up methods), handles are looked up each time.
const MAX_KINDS: usize = 64;

impl RouteMetrics {
    fn record(
        &self,
        service: &'static str,
        method: &Method,
        route: &RouteLabel,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let seconds = elapsed.as_secs_f64();
        self.kept.with(
            |k| k.status == status && k.method == *method && k.route.as_str() == route.as_str(),
            || {
                let labels = [
                    ("service", service.to_owned()),
                    ("method", method.as_str().to_owned()),
                    ("route", route.as_str().to_owned()),
                    ("status", status.as_u16().to_string()),
                ];
                let kind = Kind {
                    method: method.clone(),
                    route: route.clone(),
                    status,
                };
                let handles = Handles {
                    requests: metrics::counter!("http_requests_total", &labels),
                    errors: status
                        .is_server_error()
                        .then(|| metrics::counter!("http_request_errors_total", &labels)),
                    duration: metrics::histogram!("http_request_duration_seconds", &labels[..3]),
                };
                (kind, handles)
            },
            |handles| handles.record(seconds),
        );
    }
}

impl Handles {
    fn record(&self, seconds: f64) {
        self.requests.increment(1);
        if let Some(errors) = &self.errors {
            errors.increment(1);
        }
        self.duration.record(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request layer's choice between the two depends on the process (another test
    /// exporting spans makes every request open one), so the task-local's lines are checked
    /// here on their own; the server's tests check a request's lines whichever it chose.
    #[test]
    fn a_line_logged_for_a_request_without_a_span_carries_its_fields_as_the_span_would() {
        let logs = crate::telemetry::CapturedLogs::start();
        let fields = Arc::new(RequestFields {
            service: "cart",
            method: Method::PUT,
            route: RouteLabel::Fixed("/v1/carts/{id}"),
            request_id: "req-\"7\"".into(),
            trace: crate::context::TraceParent::parse(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .expect("traceparent"),
        });
        let trace = fields.trace;
        REQUEST.sync_scope(fields, || {
            // What the request causes names its trace context, with no `within_trace` around.
            assert_eq!(crate::context::current_trace(), Some(trace));
            tracing::warn!(item = 3, "inside");
            tracing::info_span!("call", service = "order").in_scope(|| tracing::warn!("nested"));
        });
        tracing::warn!("outside");
        let events = logs.events();
        assert_eq!(events.len(), 3, "{events:?}");
        let inside = &events[0];
        assert_eq!(inside["fields"]["message"], "inside");
        assert_eq!(inside["fields"]["item"], 3);
        assert_eq!(inside["level"], "WARN");
        let span = &inside["span"];
        assert_eq!(span["name"], "http");
        assert_eq!(span["service"], "cart");
        assert_eq!(span["method"], "PUT");
        assert_eq!(span["route"], "/v1/carts/{id}");
        assert_eq!(span["request_id"], "req-\"7\"");
        assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        // A span opened within the request is the line's span, as it would be with the
        // request's own span around it.
        assert_eq!(events[1]["span"]["name"], "call");
        assert_eq!(events[1]["span"]["service"], "order");
        assert!(events[2].get("span").is_none(), "{:?}", events[2]);
    }
}
