//! Forwarding a request that came by the kit's fast path (a `GET` or `HEAD` with no body, see
//! `storefront_kit::server::Via::FastPath`): the same tries, timeouts, retries and outlier
//! accounting as [`crate::proxy::forward`] ([`crate::proxy::attempts`]), but the request head
//! is written and the response relayed over [`crate::wire`]'s connections, with no hyper
//! client between: the upstream's status and headers become the response the kit's request
//! layer finishes (request id, trace, metrics), and its body is relayed as it comes (a
//! [`Relaying`] in the connection's [`RelaySlot`]).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use storefront_kit::context::{REQUEST_ID, TRACEPARENT};
use storefront_kit::problem::ApiError;
use storefront_kit::server::{Relay, RelaySlot, push_date, push_field};

use crate::domain::config::OutlierConfig;
use crate::limits::RateLimitFields;
use crate::proxy::{self, Attempt};
use crate::runtime::Route;
use crate::upstream::Instance;
use crate::wire::{self, Exchange, Framing, Wire};

/// A bodyless request to forward.
pub struct Bodyless<'a> {
    pub method: &'a Method,
    pub path_and_query: &'a str,
    /// Request head lines, each ending in CRLF: every header but `Host`, which each instance
    /// has its own of.
    pub fields: &'a [u8],
}

/// Sends `request` to `route`'s pool over `wire`; an upstream's response is relayed by what is
/// put in `slot`, with the rate limit's `extra` fields.
pub async fn forward(
    wire: &Wire,
    route: &Route,
    outlier: &OutlierConfig,
    request: Bodyless<'_>,
    extra: Option<RateLimitFields>,
    slot: RelaySlot,
) -> Response {
    let Bodyless {
        method,
        path_and_query,
        fields,
    } = request;
    if !request_target(path_and_query) {
        let mut response =
            ApiError::BadRequest("The request path is not valid.".into()).into_response();
        if let Some(extra) = extra {
            extra.insert_into(response.headers_mut());
        }
        return response;
    }
    let head_request = *method == Method::HEAD;
    // Both methods may be sent twice (RFC 9110 §9.2.2).
    let attempted = proxy::attempts(route, outlier, true, |instance, target, _| {
        let head = request_head(method, instance, path_and_query, fields);
        async move {
            match wire.send(target, &head, head_request).await {
                Ok(exchange) => match StatusCode::from_u16(exchange.status()) {
                    Ok(status) => Attempt::Answered(status, (status, exchange)),
                    Err(_) => Attempt::Failed(format!("status {}", exchange.status())),
                },
                Err(e) => Attempt::Failed(storefront_kit::problem::cause_chain(&e)),
            }
        }
    })
    .await;
    match attempted {
        Ok((status, exchange)) => response(status, exchange, wire, extra, &slot),
        Err(mut problem) => {
            if let Some(extra) = extra {
                extra.insert_into(problem.headers_mut());
            }
            problem
        }
    }
}

/// Whether `target` can go in a request line as it is: no space or control character (it came
/// from a parsed URI and the route's rewrite, so this holds unless a rewrite is odd; UTF-8 is
/// taken, as `http::Uri` takes it on hyper's path).
fn request_target(target: &str) -> bool {
    target.starts_with('/') && target.bytes().all(|b| b > b' ' && b != 0x7f)
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
    head.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(&mut head, b"host", instance.host.as_bytes());
    head.extend_from_slice(fields);
    head.extend_from_slice(b"\r\n");
    head
}

/// Whether the upstream's header field `name` is relayed as it came: not one of one
/// connection (RFC 9110 §7.6.1, the list hyper's path strips; for `Transfer-Encoding` and
/// `Content-Length` see [`Relaying::fields`]), nor the request id or trace context, which the
/// kit's request layer sets on every response.
fn end_to_end(name: &[u8]) -> bool {
    !(proxy::HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
        || name.eq_ignore_ascii_case(REQUEST_ID.as_str().as_bytes())
        || name.eq_ignore_ascii_case(TRACEPARENT.as_str().as_bytes()))
}

/// The client's response: the upstream's `status`; its header fields, then `extra` (the rate
/// limit's), and its body are relayed ([`Relaying`]) after the head the kit writes (the
/// request layer's fields).
fn response(
    status: StatusCode,
    exchange: Exchange,
    wire: &Wire,
    extra: Option<RateLimitFields>,
    slot: &RelaySlot,
) -> Response {
    // No header fields: the kit writes the request id and trace context from the connection's
    // slot, and the relay the rest (an empty map allocates nothing).
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    slot.put(Relaying {
        exchange,
        wire: wire.clone(),
        extra,
    });
    response
}

/// An upstream's response: its end-to-end header fields and its body, relayed to the client
/// after the start of the head the kit wrote.
struct Relaying {
    exchange: Exchange,
    wire: Wire,
    /// Fields the gateway adds, written after the upstream's as head lines (putting them in
    /// the response's header map for the kit to write cost more than writing them).
    extra: Option<RateLimitFields>,
}

impl Relaying {
    /// `head` with the upstream's header fields that are relayed, and the empty line.
    fn head(&self, head: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(head.len() + 512);
        out.extend_from_slice(head);
        if self.fields(&[], &mut out) {
            // Fields the upstream's `Connection` header names are of one connection too: seen
            // only now, so written again without them.
            let named: Vec<&[u8]> = self
                .exchange
                .headers()
                .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
                .flat_map(|(_, value)| wire::elements(value))
                .collect();
            out.truncate(head.len());
            self.fields(&named, &mut out);
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Writes the upstream's header fields that are relayed, but none named in `named`, into
    /// `out`, with the framing field of the body as it is relayed and a `Date` when the upstream
    /// sent none (as hyper's server adds one); whether it had a `Connection` field.
    fn fields(&self, named: &[&[u8]], out: &mut Vec<u8>) -> bool {
        let framing = self.exchange.framing();
        let chunked = framing == Framing::Chunked;
        let (mut connection, mut length, mut date) = (false, false, false);
        for (name, value) in self.exchange.headers() {
            connection |= name.eq_ignore_ascii_case(b"connection");
            date |= name.eq_ignore_ascii_case(b"date");
            // A chunked body relayed as it came keeps its `Transfer-Encoding`; `Content-Length`
            // goes only with a body of that length (or none), never beside another framing
            // (RFC 9112 §6.3: the length would be wrong), and once (the values agree).
            let relayed = if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let first = !length;
                length = true;
                first && matches!(framing, Framing::Length(_) | Framing::None)
            } else {
                end_to_end(name) && !named.iter().any(|n| name.eq_ignore_ascii_case(n))
            };
            if relayed {
                push_field(out, name, value);
            }
        }
        if let Some(extra) = &self.extra {
            extra.write(out);
        }
        if framing == Framing::Close {
            // Relayed chunked (see `wire`).
            push_field(out, b"transfer-encoding", b"chunked");
        }
        if !date {
            push_date(out);
        }
        connection
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
            let Self { exchange, wire, .. } = *self;
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
