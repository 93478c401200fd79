//! The fast path of a [`Front`](super::Front): the simplest requests of a connection, read and
//! answered without hyper, and everything else handed to hyper.
//!
//! A `GET` or `HEAD` over HTTP/1.1 with no body and none of the headers that change how a
//! message is framed or what the connection becomes (`Content-Length`, `Transfer-Encoding`,
//! `Expect`, `Upgrade`, `TE`, `Trailer`, a `Connection` other than `keep-alive`) ends where its
//! head ends: there is no body whose length two parsers could read differently, which is where
//! request smuggling lives. Such a request, when the front takes it, is parsed by `httparse`
//! (the parser hyper itself uses), answered by the same [`Front::answer`](super::Front) under the
//! same context, span, metrics and panic handling as hyper's requests are
//! ([`super::front_call`]), and its response written here: a front may put a [`Relay`] in the
//! connection's [`RelaySlot`] and write the response's body itself (the gateway relays its
//! upstream's bytes).
//!
//! Anything else (a body, an upgrade, HTTP/1.0, a malformed head, a path the front leaves to
//! the router) ends the fast path for that connection: hyper serves the rest of it, starting
//! with the bytes already read ([`Rewind`]), and reads them as it would have: a head is handed
//! over whole (or once it is malformed), with hyper's own limits on its size and fields, so
//! hyper's header read timeout, which starts again, only ever runs for the next request.
//!
//! Why: bench/gateway counts hyper's server and client at about 16,000 instructions a proxied
//! request more than reading and writing the same bytes by hand, nearly what nginx spends on a
//! whole request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::{OWN_PATHS, ShardApp};
use crate::context::{REQUEST_ID, TRACEPARENT, TraceParent};

/// Which server read a request a [`super::Front`] answers: hyper, or the fast path, which
/// hands the front its connection's [`RelaySlot`]. (A parameter, not a request extension: the
/// first extension allocates the request's extension map.)
#[derive(Clone, Debug)]
pub enum Via {
    Hyper,
    FastPath(RelaySlot),
}

impl Via {
    pub fn is_fast(&self) -> bool {
        matches!(self, Self::FastPath(_))
    }
}

/// A response a front finishes writing itself, after the start of the head the fast path
/// composed.
pub trait Relay: Send + 'static {
    /// Writes `head` (the status line and the response's header fields, each line ending in
    /// CRLF, but not the empty line that ends the head), any header fields of its own, the
    /// empty line, and then the body, to `out`. An error leaves the response unfinished: the
    /// connection is closed.
    fn relay<'a>(
        self: Box<Self>,
        out: &'a mut (dyn AsyncWrite + Unpin + Send),
        head: &'a [u8],
    ) -> BoxFuture<'a, std::io::Result<()>>;
}

/// Where a front answering a fast-path request puts a [`Relay`] for the response it answers
/// with: the end of that response's head and its body are then written by the relay, not taken
/// from the response's own (empty) body, and the fast path adds no header fields of its own (no
/// `Date`, no `Content-Length`: they, and the framing, are the relay's). One per connection,
/// emptied after each answer. (Not a response extension: an extension costs the response an
/// extension map, and the relay a shared box, on every request.) The request layer leaves the
/// response's request id and trace context here too, written as head lines first.
///
/// Locked only for a move in or out, never across an await: a `parking_lot` mutex, whose
/// release is one atomic operation where Tokio's takes its waiters' lock.
#[derive(Clone)]
pub struct RelaySlot(Arc<parking_lot::Mutex<Slot>>);

/// What a [`RelaySlot`] holds for the response being answered.
#[derive(Default)]
struct Slot {
    relay: Option<Box<dyn Relay>>,
    /// The `x-request-id` and `traceparent` the response carries.
    echo: Option<(String, TraceParent)>,
}

impl RelaySlot {
    fn new() -> Self {
        Self(Arc::new(parking_lot::Mutex::new(Slot::default())))
    }

    /// Has `relay` finish the response the front answers with (the fast path takes it once
    /// the answer is made).
    pub fn put(&self, relay: impl Relay) {
        self.0.lock().relay = Some(Box::new(relay));
    }

    /// Has the response carry `request_id` and `trace` (the request layer's, in place of
    /// header values in its map).
    pub(super) fn echo(&self, request_id: String, trace: TraceParent) {
        self.0.lock().echo = Some((request_id, trace));
    }

    fn take(&self) -> Slot {
        std::mem::take(&mut *self.0.lock())
    }
}

impl std::fmt::Debug for RelaySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelaySlot")
    }
}

/// The most a request head may take: hyper's own limit (its default read buffer), so a head
/// the fast path gives up on is one hyper refuses too.
const MAX_HEAD: usize = 8192 + 4096 * 100;

/// Header fields of one request head: hyper's limit, so a head with more goes to hyper only to
/// be refused there.
const MAX_HEADERS: usize = 100;

/// What the fast path leaves to hyper: the connection and what was read from it unanswered.
pub(super) struct Rest<I> {
    pub io: I,
    pub read: BytesMut,
}

/// What reading the next request head came to.
// A request is large beside the other two, but one is made and moved once per request: a box
// would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A request for the fast path, the front's route label for it, and the length of its
    /// head (no longer in the read buffer once [`next`] gives it).
    Take(Request<Body>, &'static str, usize),
    /// The head is not complete yet: read on.
    Partial,
    /// The connection is hyper's from here.
    Hyper,
}

/// Serves `io`'s requests while they are simple (see the module's documentation); returns the
/// connection for hyper at the first that is not, or `None` once it is closed.
pub(super) async fn serve_connection<I>(
    mut io: I,
    peer: std::net::SocketAddr,
    shard: &Arc<ShardApp>,
    header_read_timeout: Duration,
    stop: &CancellationToken,
) -> Option<Rest<I>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    let front = shard.front.as_ref()?;
    let mut read = BytesMut::with_capacity(8 * 1024);
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    // The head's deadline, checked when this timer fires, which is set again only then: moving
    // a timer for every request cost more than the rest of reading its head (the timer wheel
    // takes it out and puts it back). It fires at the latest deadline it was set to, never
    // later than the current one.
    let mut timer = std::pin::pin!(tokio::time::sleep(header_read_timeout));
    let slot = RelaySlot::new();
    loop {
        let deadline = tokio::time::Instant::now() + header_read_timeout;
        let (request, route) = loop {
            if !read.is_empty() {
                match next(&mut read, front.as_ref()) {
                    Next::Take(request, route, _) => break (request, route),
                    Next::Hyper => return Some(Rest { io, read }),
                    Next::Partial => {}
                }
            }
            if read.capacity() - read.len() < 1024 {
                read.reserve(8 * 1024);
            }
            let filled = tokio::select! {
                biased;
                filled = io.read_buf(&mut read) => filled,
                () = timer.as_mut() => {
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    timer.as_mut().reset(deadline);
                    continue;
                }
                // Stopping: an idle connection closes; one partway through a head gets until
                // its deadline to finish it, as hyper's graceful shutdown gives it.
                () = stop.cancelled(), if read.is_empty() => return None,
            };
            match filled {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        };
        let head_only = request.method() == Method::HEAD;
        let mut answer = std::pin::pin!(super::front_call(
            shard,
            front,
            peer,
            route,
            request,
            Via::FastPath(slot.clone())
        ));
        // A client that closes its connection while its request is answered has left: the
        // answer is dropped (and its upstream try with it), as hyper does. Bytes that come
        // meanwhile (a pipelined request) wait in `read`.
        let response = loop {
            if !read.is_empty() || read.capacity() == read.len() {
                break answer.await;
            }
            tokio::select! {
                biased;
                response = answer.as_mut() => break response,
                filled = io.read_buf(&mut read) => match filled {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
            }
        };
        let Ok(response) = response;
        // Stopping: this is the connection's last response, and says so.
        let closing = stop.is_cancelled();
        let Slot { relay, echo } = slot.take();
        // A front that panicked after putting its relay is answered by the 500 alone.
        let relay = relay.filter(|_| response.extensions().get::<super::Panicked>().is_none());
        let written = Written {
            relay,
            echo,
            head_only,
            closing,
        };
        let close = write_response(&mut io, &mut head, response, written).await;
        if close || closing {
            let _ = io.shutdown().await;
            return None;
        }
    }
}

/// Reads the request head at the start of `read`: a request for the front's fast path (taken
/// out of `read`), a head not complete yet, or the connection for hyper (`read` as it was).
/// See the module's documentation for what is simple.
fn next(read: &mut BytesMut, front: &dyn super::Front) -> Next {
    // What was read, shared: the request's URI and header values are slices of it, not copies
    // (six allocations and copies a request, and the `Authorization` value is cloned again
    // into the request's context).
    let bytes = read.split().freeze();
    let next = parse(&bytes, front);
    match &next {
        Next::Take(_, _, length) => {
            if *length < bytes.len() {
                // A pipelined request's first bytes.
                read.extend_from_slice(&bytes[*length..]);
            }
        }
        Next::Partial | Next::Hyper => {
            // Nothing refers to `bytes` now: `read` becomes the buffer they were split from,
            // unchanged.
            drop(std::mem::take(read));
            *read = bytes
                .try_into_mut()
                .unwrap_or_else(|bytes| BytesMut::from(&bytes[..]));
        }
    }
    next
}

/// What the request head `bytes` start with comes to (see [`next`]).
fn parse(bytes: &Bytes, front: &dyn super::Front) -> Next {
    // Not initialized first: 100 slots cost 100 stores a request, and few are ever used.
    let mut headers: [std::mem::MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let length = match parsed.parse_with_uninit_headers(bytes, &mut headers) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if bytes.len() < MAX_HEAD => return Next::Partial,
        // Oversized, malformed or with too many headers: hyper answers it as it should.
        _ => return Next::Hyper,
    };
    let method = match parsed.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Next::Hyper,
    };
    let (Some(path), Some(1)) = (parsed.path, parsed.version) else {
        return Next::Hyper;
    };
    let Ok(uri) = Uri::from_maybe_shared(bytes.slice_ref(path.as_bytes())) else {
        return Next::Hyper;
    };
    // As hyper's requests are matched: by the parsed path (a `#...` is not part of it).
    if !path.starts_with('/') || OWN_PATHS.contains(&uri.path()) {
        return Next::Hyper;
    }
    let mut map = http::HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Next::Hyper;
        };
        if !simple(&name, h.value) {
            return Next::Hyper;
        }
        let Ok(value) = HeaderValue::from_maybe_shared(bytes.slice_ref(h.value)) else {
            return Next::Hyper;
        };
        map.append(name, value);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = map;
    match front.takes(&request) {
        Some(route) => Next::Take(request, route, length),
        None => Next::Hyper,
    }
}

/// Whether a request header keeps the request simple: none of the framing, connection or
/// protocol headers.
fn simple(name: &HeaderName, value: &[u8]) -> bool {
    if *name == header::CONNECTION {
        return value.eq_ignore_ascii_case(b"keep-alive");
    }
    !(*name == header::CONTENT_LENGTH
        || *name == header::TRANSFER_ENCODING
        || *name == header::EXPECT
        || *name == header::UPGRADE
        || *name == header::TE
        || *name == header::TRAILER
        || name.as_str() == "http2-settings")
}

/// How a response is written besides its own status, fields and body.
struct Written {
    /// What finishes it, when the front put a relay in the slot.
    relay: Option<Box<dyn Relay>>,
    /// Its `x-request-id` and `traceparent`, when the request layer left them in the slot
    /// (they replace any the response's map holds, as inserting them there would).
    echo: Option<(String, TraceParent)>,
    /// A `HEAD`'s: without its body.
    head_only: bool,
    /// With `Connection: close`.
    closing: bool,
}

/// Writes `response` as `written` says; whether the connection must close after it.
async fn write_response<I>(
    io: &mut I,
    head: &mut Vec<u8>,
    mut response: Response,
    written: Written,
) -> bool
where
    I: AsyncWrite + Unpin + Send,
{
    let Written {
        relay,
        echo,
        head_only,
        closing,
    } = written;
    let status = response.status();
    head.clear();
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    let close = response
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let echoed = echo.is_some();
    if let Some((request_id, trace)) = echo {
        push_field(head, REQUEST_ID.as_str().as_bytes(), request_id.as_bytes());
        push_field(head, TRACEPARENT.as_str().as_bytes(), &trace.encoded());
    }
    for (name, value) in response.headers() {
        if echoed && (*name == REQUEST_ID || *name == TRACEPARENT) {
            continue;
        }
        push_field(head, name.as_str().as_bytes(), value.as_bytes());
    }
    if closing && !close {
        push_field(head, b"connection", b"close");
    }
    if let Some(relay) = relay {
        return relay.relay(io, head).await.is_err() || close;
    }
    if !response.headers().contains_key(header::DATE) {
        push_date(head);
    }
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = match std::mem::take(response.body_mut()).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "a response body failed");
            return true;
        }
    };
    if !no_body && !response.headers().contains_key(header::CONTENT_LENGTH) {
        let mut digits = itoa::Buffer::new();
        push_field(
            head,
            b"content-length",
            digits.format(body.len()).as_bytes(),
        );
    }
    head.extend_from_slice(b"\r\n");
    if !head_only && !no_body {
        head.extend_from_slice(&body);
    }
    io.write_all(head).await.is_err() || close
}

thread_local! {
    /// This thread's `Date` header line and the second it was made for.
    static DATE: std::cell::RefCell<(u64, Vec<u8>)> = const { std::cell::RefCell::new((u64::MAX, Vec::new())) };
}

/// Appends a `date` header line to a response head being written (made once a second per
/// thread, as hyper does).
pub fn push_date(head: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(made, line)| {
        if *made != second {
            *made = second;
            line.clear();
            push_field(line, b"date", httpdate::fmt_http_date(now).as_bytes());
        }
        head.extend_from_slice(line);
    });
}

/// Appends the header line `name: value` to a message head being written.
pub fn push_field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// A connection whose first bytes were already read: they are read again first, so hyper
/// serves it as if it had read them itself.
pub(super) struct Rewind<I> {
    read: BytesMut,
    io: I,
}

impl<I> Rewind<I> {
    pub fn new(rest: Rest<I>) -> Self {
        Self {
            read: rest.read,
            io: rest.io,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
