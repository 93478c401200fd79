//! Forwarding one request to a route's pool: instance choice, per-try timeout, retries on
//! another instance for idempotent methods only (connection failures, timeouts, 502/503/504),
//! outlier accounting, streamed bodies both ways and the request size limit (413).

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited, StreamBody};
use storefront_kit::problem::{ApiError, Problem, problem_response};
use tokio::sync::Mutex;

use crate::domain::config::OutlierConfig;
use crate::runtime::Route;
use crate::upstream::{HttpClient, Instance, Target};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
pub(crate) const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is one of the hop-by-hop headers (not counting those a `Connection` header
/// names).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including those the `Connection` header names. Most messages
/// carry none, so the headers are scanned once (comparing names, no hashing) before anything
/// is removed.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Methods that may be sent twice (RFC 9110 §9.2.2).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    problem_response(&Problem {
        problem_type: format!("https://storefront.dev/problems/{kind}"),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail: Some(detail.to_string()),
        instance: None,
        errors: Vec::new(),
    })
}

/// The 413 says `Connection: close`: the refused body may be unread, and the server then
/// closes the connection after answering, so the client must not reuse it for its next request
/// (a reused one would be closed under it).
fn too_large(max: usize) -> Response {
    let mut response =
        ApiError::PayloadTooLarge(format!("The request body is larger than {max} bytes."))
            .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads and discards what the client still sends of a refused body (at most 4x the limit,
/// for at most a second), so it reads the 413 instead of a connection reset by a close with
/// unread data.
async fn drain(body: &Mutex<Body>, max_body: usize) {
    let mut body = body.lock().await;
    let budget = max_body.saturating_mul(4);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut read = 0usize;
        while read <= budget {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    })
    .await;
}

fn is_length_limit(err: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if e.downcast_ref::<LengthLimitError>().is_some()
            || e.to_string().contains("length limit exceeded")
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// What is forwarded: method, path and query for the upstream, headers already prepared.
pub struct Outgoing {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Body,
}

/// Sends `outgoing` to `route`'s pool and answers with the upstream's response (streamed) or a
/// problem: 413 (too large), 502 (no connection or a broken answer), 504 (timeout), 503 (no
/// instance).
pub async fn forward(
    client: &HttpClient,
    route: &Route,
    outlier: &OutlierConfig,
    outgoing: Outgoing,
    max_body: usize,
) -> Response {
    let Outgoing {
        method,
        path_and_query,
        headers,
        body,
    } = outgoing;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return too_large(max_body);
    }
    let retryable = idempotent(&method);
    // Idempotent requests are buffered (bounded) so a retry can send them again; the others
    // stream through, bounded on the way. A streamed body is read through a shared handle, so
    // that what the client still sends after the limit can be drained before the 413.
    let mut client_body: Option<Arc<Mutex<Body>>> = None;
    let (buffered, mut streamed): (Option<Bytes>, Option<Body>) =
        if retryable && axum::body::HttpBody::is_end_stream(&body) {
            // No body (a `GET`, mostly): nothing to read or keep.
            (Some(Bytes::new()), None)
        } else if retryable {
            match Limited::new(body, max_body).collect().await {
                Ok(collected) => (Some(collected.to_bytes()), None),
                Err(e) if is_length_limit(e.as_ref()) => return too_large(max_body),
                Err(_) => {
                    return ApiError::BadRequest("The request body could not be read.".into())
                        .into_response();
                }
            }
        } else {
            let shared = Arc::new(Mutex::new(body));
            client_body = Some(shared.clone());
            let frames = futures::stream::unfold(shared, |shared| async move {
                let frame = shared.lock().await.frame().await;
                frame.map(|f| (f, shared))
            });
            (
                None,
                Some(Body::new(Limited::new(StreamBody::new(frames), max_body))),
            )
        };
    let mut headers = Some(headers);
    let attempted = attempts(route, outlier, retryable, |instance, target, last| {
        let uri = instance.uri(&path_and_query);
        let body = match (&buffered, streamed.take()) {
            (Some(bytes), _) if bytes.is_empty() => Body::empty(),
            (Some(bytes), _) => Body::from(bytes.clone()),
            (None, Some(body)) => body,
            (None, None) => Body::empty(),
        };
        // The last try takes the headers; an earlier one keeps them for the next.
        let headers = if last {
            headers.take().unwrap_or_default()
        } else {
            headers.clone().unwrap_or_default()
        };
        let method = method.clone();
        async move {
            let Ok(uri) = uri else {
                return Attempt::Stop(
                    ApiError::BadRequest("The request path is not valid.".into()).into_response(),
                );
            };
            let mut request = Request::new(body);
            *request.method_mut() = method;
            *request.uri_mut() = uri;
            *request.headers_mut() = headers;
            request
                .headers_mut()
                .insert(header::HOST, instance.host.clone());
            match client.send(target, request).await {
                Ok(response) => Attempt::Answered(response.status(), response),
                // Drained below, outside the try's timeout.
                Err(e) if is_length_limit(&e) => Attempt::Stop(too_large(max_body)),
                Err(e) => Attempt::Failed(storefront_kit::problem::cause_chain(&e)),
            }
        }
    })
    .await;
    match attempted {
        Ok(response) => {
            let mut response = response.map(Body::new);
            strip_hop_by_hop(response.headers_mut());
            response
        }
        Err(problem) => {
            if problem.status() == StatusCode::PAYLOAD_TOO_LARGE
                && let Some(rest) = client_body
            {
                drain(&rest, max_body).await;
            }
            problem
        }
    }
}

/// What one try of a request on one instance came to.
pub enum Attempt<T> {
    /// The instance answered with this status (502, 503 and 504 count as failures of the
    /// instance, and are retried when the request may be).
    Answered(StatusCode, T),
    /// No answer (the error, for the log): a failure of the instance, and a 502 unless a
    /// later try answers.
    Failed(String),
    /// Answer the client with this now, no further try (a path the instance cannot take, a
    /// body over the limit).
    Stop(Response),
}

/// Sends a request to `route`'s pool by `send` (given the instance, where its connections go
/// and whether this is the last try), each try within the route's timeout: up to
/// `1 + retries` tries on different instances when `retryable` (the same one again when every
/// instance was tried, after a short pause), else one. Each try is counted in the route's
/// metrics and in the instance's outlier accounting. The answer, or the problem that ends the
/// tries: 502 (no connection or a broken answer), 504 (timeout), 503 (no instance).
pub async fn attempts<'r, T, F, Fut>(
    route: &'r Route,
    outlier: &OutlierConfig,
    retryable: bool,
    mut send: F,
) -> Result<T, Response>
where
    F: FnMut(&'r Arc<Instance>, &'r Target, bool) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let attempts = if retryable { 1 + route.retries } else { 1 };
    let mut tried = crate::upstream::Indices::new();
    let mut last: Option<Response> = None;
    for attempt in 0..attempts {
        let (index, again) = match route.pool.pick(&tried) {
            Some(i) => (i, false),
            // Every instance tried: try the pool again (a single instance retries itself).
            None => match route.pool.pick(&[]) {
                Some(i) => (i, true),
                None => break,
            },
        };
        if again {
            tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
        }
        if attempt > 0 {
            route.upstream_retries.increment(1);
        }
        tried.push(index);
        let instance = &route.pool.instances[index];
        let Some(target) = instance.target() else {
            tracing::warn!(service = %route.service, instance = %instance.base, "upstream URL is not http://host[:port][/path]");
            last = Some(problem(
                StatusCode::BAD_GATEWAY,
                "bad-gateway",
                "The service behind this route did not answer.",
            ));
            continue;
        };
        let more = attempt + 1 < attempts;
        let in_flight = instance.start();
        let started = tokio::time::Instant::now();
        let result =
            tokio::time::timeout_at(started + route.timeout, send(instance, target, !more)).await;
        drop(in_flight);
        route
            .upstream_duration
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(Attempt::Answered(status, answer)) => {
                let gateway_error = matches!(
                    status,
                    StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                );
                if gateway_error {
                    instance.failed(outlier);
                    if more {
                        tracing::debug!(instance = %instance.authority, %status, "retrying on another instance");
                        continue;
                    }
                } else {
                    instance.succeeded();
                }
                return Ok(answer);
            }
            Ok(Attempt::Stop(response)) => return Err(response),
            Ok(Attempt::Failed(error)) => {
                instance.failed(outlier);
                tracing::warn!(
                    service = %route.service,
                    instance = %instance.authority,
                    error = %error,
                    "upstream request failed"
                );
                last = Some(problem(
                    StatusCode::BAD_GATEWAY,
                    "bad-gateway",
                    "The service behind this route did not answer.",
                ));
            }
            Err(_) => {
                instance.failed(outlier);
                tracing::warn!(
                    service = %route.service,
                    instance = %instance.authority,
                    timeout_ms = route.timeout.as_millis() as u64,
                    "upstream request timed out"
                );
                last = Some(problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway-timeout",
                    "The service behind this route did not answer in time.",
                ));
            }
        }
        if !more {
            break;
        }
    }
    Err(last.unwrap_or_else(|| {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "No instance of the service behind this route is available.",
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_with_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::AUTHORIZATION));

        let mut plain = HeaderMap::new();
        plain.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        plain.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 1, "keep-alive alone is removed too");
        strip_hop_by_hop(&mut plain);
        assert!(plain.contains_key(header::ACCEPT));
    }

    #[test]
    fn only_idempotent_methods_are_retried() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH] {
            assert!(!idempotent(&m), "{m}");
        }
    }
}
