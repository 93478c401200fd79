//! Request identity that crosses service boundaries: the request id, the W3C trace context and
//! the caller's credentials. Accepted from the incoming request, generated when absent, and
//! passed explicitly to the typed REST clients (and into event envelopes).

use std::fmt;

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};
use rand::RngCore;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const MAX_REQUEST_ID_LEN: usize = 128;

/// A W3C `traceparent` (version 00): trace id, parent (span) id and flags.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header value; `None` when it is not a valid version-00 value.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; later versions may append more.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let lower_hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(lower_hex(version) && lower_hex(trace) && lower_hex(span) && lower_hex(flags)) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        let mut flag = [0u8; 1];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        hex::decode_to_slice(flags, &mut flag).ok()?;
        Self::from_parts(trace_id, span_id, flag[0])
    }

    /// A new trace, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_random(),
            span_id: nonzero_random(),
            flags: 0x01,
        }
    }

    /// The same trace with a new span id: what this hop sends downstream.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: nonzero_random(),
            flags: self.flags,
        }
    }

    pub fn trace_id(&self) -> String {
        hex_text(&self.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex_text(&self.span_id)
    }

    /// `00-<trace id>-<span id>-<flags>`, lower-case hex, without allocating (every request
    /// writes one or two of these).
    pub fn encoded(&self) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        hex_pairs(&self.trace_id, &mut out[3..35]);
        out[35] = b'-';
        hex_pairs(&self.span_id, &mut out[36..52]);
        out[52] = b'-';
        hex_pairs(&[self.flags], &mut out[53..55]);
        out
    }

    /// The `traceparent` header value.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.encoded()).expect("hex digits and dashes are a valid header")
    }

    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// Trace id, span id and flags as bytes (for OpenTelemetry's types).
    pub fn parts(&self) -> ([u8; 16], [u8; 8], u8) {
        (self.trace_id, self.span_id, self.flags)
    }

    /// From trace id, span id and flags; `None` when either id is all zeros (invalid).
    pub fn from_parts(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = self.encoded();
        f.write_str(std::str::from_utf8(&encoded).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

/// The caller's `Authorization` header, forwarded to downstream calls. Never printed.
#[derive(Clone)]
pub struct Credentials(HeaderValue);

impl Credentials {
    pub fn new(mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        Self(value)
    }

    pub fn bearer(token: &str) -> Option<Self> {
        HeaderValue::from_str(&format!("Bearer {token}"))
            .ok()
            .map(Self::new)
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The bearer token, if these are bearer credentials.
    pub fn bearer_token(&self) -> Option<&str> {
        bearer_token(&self.0)
    }

    /// The bearer token's bytes ([`bearer_bytes`]).
    pub fn bearer_bytes(&self) -> Option<&[u8]> {
        bearer_bytes(&self.0)
    }
}

/// The bearer token of an `Authorization` header value, if it holds one.
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    // ASCII (see `bearer_bytes`), so always text.
    std::str::from_utf8(bearer_bytes(value)?).ok()
}

/// [`bearer_token`]'s bytes, not read as text: what a [`crate::auth::Verifier`] finds a
/// token it verified lately by (a token is a few hundred bytes, and every authenticated
/// request to the gateway carries one).
pub fn bearer_bytes(value: &HeaderValue) -> Option<&[u8]> {
    // What `to_str` takes (a header value holds no control characters, so only its ASCII
    // ones), checked a word at a time where `to_str` checks a byte at a time.
    let value = value.as_bytes();
    if !value.is_ascii() {
        return None;
    }
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then_some(token.trim_ascii())
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials([redacted])")
    }
}

tokio::task_local! {
    /// The trace context of the work this task is doing (a request, a consumed event).
    static CURRENT_TRACE: TraceParent;
}

/// Runs `work` as part of the trace `hop` (this service's trace context for it): what it
/// calls or publishes names `hop` as its cause (see [`current_trace`]).
pub async fn within_trace<F: std::future::Future>(hop: TraceParent, work: F) -> F::Output {
    CURRENT_TRACE.scope(hop, work).await
}

/// The trace context of the current request or event: inside [`within_trace`], or in a
/// request the kit's request layer answers.
pub fn current_trace() -> Option<TraceParent> {
    CURRENT_TRACE
        .try_with(|t| *t)
        .ok()
        .or_else(crate::server::request_trace)
}

/// Who and what a request is: handlers extract it and pass it to typed clients.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: String,
    /// The trace context of this service's handling of the request.
    pub trace: TraceParent,
    /// The `traceparent` the request came with, or, when it came with none, the root this
    /// service started: the parent of this hop's exported span (see
    /// [`crate::telemetry::continue_trace`]).
    pub caller: TraceParent,
    pub credentials: Option<Credentials>,
}

impl RequestContext {
    /// A context for work that starts here (a background job, a test, a CLI call).
    pub fn new_root() -> Self {
        let caller = TraceParent::new_root();
        Self {
            request_id: new_request_id(),
            trace: caller.child(),
            caller,
            credentials: None,
        }
    }

    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    /// Reads the context from incoming headers, generating what is absent or invalid.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        // One pass over the headers (a request has a few): three lookups hashed each name.
        let (mut request_id, mut traceparent, mut authorization) = (None, None, None);
        for (name, value) in headers {
            let found = if *name == http::header::AUTHORIZATION {
                &mut authorization
            } else if *name == REQUEST_ID {
                &mut request_id
            } else if *name == TRACEPARENT {
                &mut traceparent
            } else {
                continue;
            };
            // The first of each, as `HeaderMap::get` gives.
            found.get_or_insert(value);
        }
        let request_id = request_id
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| valid_request_id(v))
            .map(str::to_owned)
            .unwrap_or_else(new_request_id);
        let caller = traceparent
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse)
            .unwrap_or_else(TraceParent::new_root);
        let credentials = authorization.cloned().map(Credentials::new);
        Self {
            request_id,
            trace: caller.child(),
            caller,
            credentials,
        }
    }

    /// The `traceparent` a downstream call or an event carries, naming this hop as the parent
    /// of what it causes: the span exported for the current work when OpenTelemetry export is
    /// on, else this hop's own trace context.
    pub fn outgoing_traceparent(&self) -> TraceParent {
        crate::telemetry::current_traceparent().unwrap_or(self.trace)
    }

    /// Headers for a downstream call: request id, the `traceparent` naming this hop as the
    /// parent, the credentials.
    pub fn outgoing_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert(REQUEST_ID, v);
        }
        headers.insert(TRACEPARENT, self.outgoing_traceparent().header_value());
        if let Some(c) = &self.credentials {
            headers.insert(http::header::AUTHORIZATION, c.header_value().clone());
        }
        headers
    }
}

/// Each byte's two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [DIGITS[i >> 4], DIGITS[i & 0x0f]];
        i += 1;
    }
    pairs
};

/// `bytes` in lower-case hex into `out` (twice as long), a pair of digits a byte from a table:
/// about half the instructions of `hex::encode_to_slice`, which works out each digit (every
/// request writes one or two `traceparent` values).
fn hex_pairs(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), 2 * bytes.len());
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
}

/// Random bytes, not all zero (an all-zero trace or span id is invalid).
fn nonzero_random<const N: usize>() -> [u8; N] {
    let mut rng = rand::rng();
    let mut bytes = [0u8; N];
    while bytes == [0; N] {
        rng.fill_bytes(&mut bytes);
    }
    bytes
}

/// A new request id: a UUIDv7, hyphenated, in lower case (what its `Display` writes, without
/// the formatting machinery: every request without an id of its own gets one). Its 74 random
/// bits come from the thread's generator, with no counter kept across ids: uuid's `now_v7`,
/// which orders the ids of one millisecond, cost twice as much, and request ids are told
/// apart, not sorted.
fn new_request_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// `bytes` in lower-case hex.
fn hex_text(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_pairs(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn valid_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic())
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| RequestContext::from_headers(&parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_bearer_token_is_read_as_bytes_as_it_is_as_text() {
        for (value, token) in [
            ("Bearer abc.def", Some("abc.def")),
            ("bearer   abc.def  ", Some("abc.def")),
            ("BEARER x", Some("x")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearerabc", None),
        ] {
            let value = HeaderValue::from_static(value);
            assert_eq!(bearer_token(&value), token, "{value:?}");
            assert_eq!(bearer_bytes(&value), token.map(str::as_bytes), "{value:?}");
        }
        let not_ascii = HeaderValue::from_bytes("Bearer abcé".as_bytes()).expect("obs-text");
        assert_eq!(bearer_bytes(&not_ascii), None);
        assert_eq!(bearer_token(&not_ascii), None);
    }

    #[test]
    fn traceparent_round_trips() {
        let tp = TraceParent::parse(SAMPLE).expect("valid");
        assert_eq!(tp.to_string(), SAMPLE);
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(tp.sampled());
    }

    #[test]
    fn every_byte_is_its_two_hex_digits() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_text(&all), hex::encode(&all));
        let tp = TraceParent::from_parts([0xf0; 16], [0x0f; 8], 0xa5).expect("non-zero ids");
        assert_eq!(
            &tp.encoded()[..],
            format!("00-{}-{}-a5", "f0".repeat(16), "0f".repeat(8)).as_bytes()
        );
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn child_keeps_trace_and_changes_span() {
        let tp = TraceParent::parse(SAMPLE).expect("valid");
        let child = tp.child();
        assert_eq!(child.trace_id(), tp.trace_id());
        assert_ne!(child.span_id(), tp.span_id());
    }

    #[test]
    fn context_takes_incoming_ids_and_generates_missing_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("req-42"));
        headers.insert(TRACEPARENT, HeaderValue::from_static(SAMPLE));
        let ctx = RequestContext::from_headers(&headers);
        assert_eq!(ctx.request_id, "req-42");
        assert_eq!(ctx.caller.to_string(), SAMPLE);
        assert_eq!(ctx.trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(
            ctx.trace.span_id(),
            ctx.caller.span_id(),
            "this hop's own span"
        );

        let fresh = RequestContext::from_headers(&HeaderMap::new());
        let id = uuid::Uuid::parse_str(&fresh.request_id).expect("a UUID");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(fresh.request_id, id.to_string(), "hyphenated, lower case");
        let (secs, _) = id.get_timestamp().expect("a time").to_unix();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert!(secs.abs_diff(now) < 60, "{secs} vs {now}");
        assert_ne!(
            RequestContext::from_headers(&HeaderMap::new()).request_id,
            fresh.request_id
        );
        assert_eq!(fresh.trace.trace_id().len(), 32);
        assert_eq!(fresh.trace.trace_id(), fresh.caller.trace_id());
        assert_eq!(fresh.trace.span_id().len(), 16);

        let mut bad = HeaderMap::new();
        bad.insert(
            REQUEST_ID,
            HeaderValue::from_str(&"x".repeat(500)).expect("hv"),
        );
        assert_ne!(RequestContext::from_headers(&bad).request_id.len(), 500);
    }

    #[test]
    fn credentials_are_forwarded_but_never_printed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def.ghi"),
        );
        let ctx = RequestContext::from_headers(&headers);
        let printed = format!("{ctx:?}");
        assert!(!printed.contains("abc.def.ghi"), "{printed}");
        let out = ctx.outgoing_headers();
        assert_eq!(out[http::header::AUTHORIZATION], "Bearer abc.def.ghi");
        assert_eq!(
            ctx.credentials.as_ref().and_then(Credentials::bearer_token),
            Some("abc.def.ghi")
        );
    }
}
