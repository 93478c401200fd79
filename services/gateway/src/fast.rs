//! Forwarding a request that came by the kit's fast path (a `GET` or `HEAD` with no body, see
//! `storefront_kit::server::FastPath`): the same tries, timeouts, retries and outlier
//! accounting as [`crate::proxy::forward`] ([`crate::proxy::attempts`]), but the request head
//! is written and the response relayed over [`crate::wire`]'s connections, with no hyper
//! client between: the upstream's status and headers become the response the kit's request
//! layer finishes (request id, trace, metrics), and its body is relayed as it comes
//! ([`Relayed`]).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use storefront_kit::problem::ApiError;
use storefront_kit::server::{Relay, Relayed};

use crate::domain::config::OutlierConfig;
use crate::proxy::{self, Attempt};
use crate::runtime::Route;
use crate::upstream::Instance;
use crate::wire::{Exchange, Framing, Wire};

/// Sends a bodyless `method` request for `path_and_query`, with the header `fields` (request
/// head lines, each ending in CRLF: every header but `Host`, which each instance has its own
/// of), to `route`'s pool over `wire`.
pub async fn forward(
    wire: &Wire,
    route: &Route,
    outlier: &OutlierConfig,
    method: &Method,
    path_and_query: &str,
    fields: &[u8],
) -> Response {
    if !request_target(path_and_query) {
        return ApiError::BadRequest("The request path is not valid.".into()).into_response();
    }
    let head_request = *method == Method::HEAD;
    // Both methods may be sent twice (RFC 9110 §9.2.2).
    let attempted = proxy::attempts(route, outlier, true, |instance, target, _| {
        let head = request_head(method, instance, path_and_query, fields);
        async move {
            match wire.send(target, &head, head_request).await {
                Ok(exchange) => match StatusCode::from_u16(exchange.status()) {
                    Ok(status) => Attempt::Answered(status, exchange),
                    Err(_) => Attempt::Failed(format!("status {}", exchange.status())),
                },
                Err(e) => Attempt::Failed(storefront_kit::problem::cause_chain(&e)),
            }
        }
    })
    .await;
    match attempted {
        Ok(exchange) => response(exchange, wire),
        Err(problem) => problem,
    }
}

/// Whether `target` can go in a request line as it is: visible ASCII only (it came from a
/// parsed URI and the route's rewrite, so this holds unless a rewrite is odd).
fn request_target(target: &str) -> bool {
    target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic())
}

/// The request head for `instance`: its path prefix before `path_and_query`, its `Host`.
fn request_head(
    method: &Method,
    instance: &Instance,
    path_and_query: &str,
    fields: &[u8],
) -> Vec<u8> {
    let mut head = Vec::with_capacity(path_and_query.len() + fields.len() + 128);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(instance.prefix().as_bytes());
    head.extend_from_slice(path_and_query.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(instance.host.as_bytes());
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(fields);
    head.extend_from_slice(b"\r\n");
    head
}

/// The upstream's header fields not relayed: those of one connection (RFC 9110 §7.6.1; for
/// `Transfer-Encoding` see [`Relaying::head`]), and the request id and trace context, which the
/// kit's request layer sets on every response.
const NOT_RELAYED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-request-id",
    "traceparent",
];

/// The client's response: the upstream's status; its header fields and body are relayed
/// ([`Relaying`]) after the head the kit writes (the request layer's fields and the rate
/// limit's).
fn response(exchange: Exchange, wire: &Wire) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() =
        StatusCode::from_u16(exchange.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    if exchange.framing() == Framing::Close {
        // The body ends when the upstream closes: so does the client's connection.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response.extensions_mut().insert(Relayed::new(Relaying {
        exchange,
        wire: wire.clone(),
    }));
    response
}

/// An upstream's response: its end-to-end header fields and its body, relayed to the client
/// after the start of the head the kit wrote.
struct Relaying {
    exchange: Exchange,
    wire: Wire,
}

impl Relaying {
    /// `head` with the upstream's header fields that are relayed, and the empty line.
    fn head(&self, head: &[u8]) -> Vec<u8> {
        let chunked = self.exchange.framing() == Framing::Chunked;
        // Fields the upstream's `Connection` header names are of one connection too.
        let named: Vec<&str> = self
            .exchange
            .headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
            .filter_map(|(_, value)| std::str::from_utf8(value).ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect();
        let mut out = Vec::with_capacity(head.len() + 512);
        out.extend_from_slice(head);
        for (name, value) in self.exchange.headers() {
            // A chunked body relayed as it came keeps its `Transfer-Encoding`, and never a
            // `Content-Length` beside it (RFC 9112 §6.3: the length would be wrong).
            let relayed = if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked
            } else if name.eq_ignore_ascii_case("content-length") {
                !chunked
            } else {
                !(NOT_RELAYED.iter().any(|n| name.eq_ignore_ascii_case(n))
                    || named.iter().any(|n| name.eq_ignore_ascii_case(n)))
            };
            if relayed {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

impl Relay for Relaying {
    fn relay<'a>(
        self: Box<Self>,
        mut out: &'a mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        head: &'a [u8],
    ) -> futures::future::BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            let head = self.head(head);
            let Self { exchange, wire } = *self;
            match exchange.relay(&wire, &mut out, &head).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::debug!(error = %e, "relaying an upstream's response failed");
                    Err(std::io::Error::other(e))
                }
            }
        })
    }
}
