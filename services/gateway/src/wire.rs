//! The upstream side of the gateway's fast path: a bodyless GET or HEAD written as bytes on a
//! kept HTTP/1.1 connection, and the response relayed to the client's socket as the upstream
//! framed it.
//!
//! The gateway does nothing with such a response but pass it on, yet through hyper (see
//! [`crate::connections`]) its head becomes a `Response` with a header map, its body is polled
//! frame by frame and encoded again, and head and body reach the client in separate writes.
//! Here the response head is parsed (httparse) only for what the gateway needs: the status,
//! the header fields it composes its own head from, and where the body ends. The body goes out
//! as it came, the chunked encoding included (its chunk-size lines are parsed only to find its
//! end; its trailer fields are left out, as hyper's server leaves them out), and the composed
//! head goes out with the body bytes read along with the response head in one write call.
//!
//! Connections are kept as in [`crate::connections`]: by each thread for itself, per instance,
//! the most recently kept taken first, none idle for the idle timeout or longer. One is kept once
//! its response has been relayed to its end with nothing after it. An upstream may have closed
//! a kept connection meanwhile: a request that a kept connection fails before any byte of an
//! answer is written once more on a new connection, which is safe for a bodyless GET or HEAD.
//!
//! Only a connection whose response said HTTP/1.1 without `Connection: close` is kept. One that
//! answered in HTTP/1.0 never is, even with `Connection: keep-alive`: that older persistence is
//! not worth its rules for the upstreams of this gateway, which speak HTTP/1.1.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::connections::{self, ConnectError, Kept, Look, Target, Tried};

/// The longest response head taken: hyper's client's limit (its default read buffer), so an
/// upstream answer hyper's path takes is taken here too.
const MAX_HEAD: usize = 8192 + 4096 * 100;

/// The most header fields a response head may have: hyper's client's limit.
const MAX_FIELDS: usize = 100;

/// The longest chunk-size or trailer line taken, its CRLF excluded.
const MAX_LINE: usize = 4 * 1024;

/// Room made in the read buffer before each read.
const READ_RESERVE: usize = 8 * 1024;

/// Sends request heads to upstream instances over kept connections and relays their responses.
#[derive(Clone, Debug)]
pub struct Wire {
    connect_timeout: Duration,
    max_idle: usize,
}

/// How a response's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: the response to a HEAD request, a 204 or a 304.
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// Chunked (`Transfer-Encoding` ending in `chunked`): the client gets the chunks as sent.
    Chunked,
    /// Whatever comes until the upstream closes the connection: relayed chunked (see
    /// [`Exchange::relay`]), so the caller's head says `Transfer-Encoding: chunked`.
    Close,
}

/// Why no response head came from an upstream.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Writing the request or reading the response head failed.
    #[error("upstream connection failed: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before a complete response head.
    #[error("the upstream closed the connection before a complete response head")]
    Closed,
    /// The response head is not one this relay takes: malformed, over 64 KiB or 64 header
    /// fields, Content-Length values that disagree, 101 Switching Protocols, ...
    #[error("invalid response head from the upstream: {0}")]
    Invalid(&'static str),
}

/// Why a response was not relayed to its end. Once the head went out, closing the client
/// connection is the only honest signal left of either.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading the body from the upstream failed.
    #[error("reading the body from the upstream failed: {0}")]
    Upstream(#[source] io::Error),
    /// The upstream closed the connection before the end of a `Length` or `Chunked` body.
    #[error("the upstream closed the connection before the end of the body")]
    Truncated,
    /// The upstream's chunked encoding is malformed (or has a line over 4 KiB).
    #[error("invalid chunked body from the upstream: {0}")]
    InvalidChunk(&'static str),
    /// Writing to the client failed.
    #[error("writing to the client failed: {0}")]
    Client(#[source] io::Error),
}

impl RelayError {
    /// Whether the client failed (else the upstream did).
    pub fn is_client(&self) -> bool {
        matches!(self, Self::Client(_))
    }
}

/// A connection and what was read from it: `buf` holds the bytes read and not yet relayed,
/// `fields` where the header fields of the response head at its front are.
struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
    fields: Vec<(Range<usize>, Range<usize>)>,
}

/// What a response head says, and how long it is.
struct Head {
    status: u16,
    framing: Framing,
    /// Whether the connection can take another request once the body is read (HTTP/1.1, no
    /// `Connection: close`, framing other than [`Framing::Close`], no smuggling-like framing).
    persistent: bool,
    len: usize,
}

/// A response whose head is in, on its connection: relay it, or drop it (and the connection).
pub struct Exchange {
    conn: Conn,
    target: u64,
    head: Head,
}

/// Why a request got no response head: `before_response` when no byte of one arrived.
struct Failure {
    before_response: bool,
    error: WireError,
}

thread_local! {
    /// This thread's kept connections.
    static KEPT: RefCell<Kept<Conn>> = const { RefCell::new(Kept::new()) };
}

impl Wire {
    /// A wire that gives up connecting after `connect_timeout` and keeps at most `max_idle`
    /// connections per instance and thread.
    pub fn new(connect_timeout: Duration, max_idle: usize) -> Self {
        Self {
            connect_timeout,
            max_idle,
        }
    }

    /// Writes `head` (a complete request head ending in CRLFCRLF, no body) on a kept connection
    /// to `target` (the most recently kept first) or a new one, and reads the response head,
    /// skipping 1xx informational responses. `head_request`: the request was HEAD (its response
    /// has no body whatever its header fields say).
    ///
    /// A kept connection that fails before any byte of a response arrived (a write error, EOF
    /// or an error reading the first bytes: the upstream closed it) is given up and the request
    /// written once more on a new connection, which is safe because these requests are GET or
    /// HEAD without a body. A failure on a new connection is returned.
    pub async fn send(
        &self,
        target: &Target,
        head: &[u8],
        head_request: bool,
    ) -> Result<Exchange, WireError> {
        connections::on_kept_or_new(
            head,
            || take(target.id),
            || self.connect(target),
            |mut conn, head| async move {
                match exchange(&mut conn, head, head_request).await {
                    Ok(head) => {
                        // The body's first bytes, read with the head, are checked now: a
                        // chunked body broken there is the upstream's failure (a 502, and
                        // another try) while nothing has gone to the client yet, not a
                        // connection closed after a head.
                        if let Err(e) = Body::new(head.framing).advance(&conn.buf[head.len..]) {
                            tracing::debug!(error = %e, "an upstream's body was broken from its start");
                            return Tried::Failed(WireError::Invalid("malformed chunked body"));
                        }
                        Tried::Answered(Exchange {
                            conn,
                            target: target.id,
                            head,
                        })
                    }
                    Err(Failure {
                        before_response: true,
                        error,
                    }) => Tried::Unanswered(head, error),
                    Err(Failure { error, .. }) => Tried::Failed(error),
                }
            },
        )
        .await
    }

    async fn connect(&self, target: &Target) -> Result<Conn, WireError> {
        let tcp = connections::connect(target, self.connect_timeout).await?;
        Ok(Conn {
            tcp,
            buf: Vec::new(),
            fields: Vec::new(),
        })
    }

    /// Keeps `conn` (its buffer empty) for `id`'s next requests, unless `max_idle` are kept
    /// already.
    fn keep(&self, id: u64, conn: Conn) {
        KEPT.with_borrow_mut(|kept| kept.keep(id, conn, self.max_idle, |c| open(&c.tcp)));
    }
}

/// The most recently kept connection to `id` that is neither expired nor seen closed, dropping
/// the others on the way.
fn take(id: u64) -> Option<Conn> {
    KEPT.with_borrow_mut(|kept| {
        kept.take(id, |c| if open(&c.tcp) { Look::Take } else { Look::Drop })
    })
}

/// Whether a kept connection may take a request: not closed by the upstream, and nothing
/// unasked for from it (an upstream closing an idle connection may say 408 first). This costs
/// a `recv` only when the runtime saw the socket readable, which after the last read of a
/// response is the `recv` the next response's first read would otherwise spend to learn that
/// nothing is there yet.
fn open(tcp: &TcpStream) -> bool {
    matches!(
        tcp.try_read(&mut [0; 1]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

/// Writes `request` on `conn` (its buffer empty) and reads the response head into its buffer.
async fn exchange(conn: &mut Conn, request: &[u8], head_request: bool) -> Result<Head, Failure> {
    if let Err(e) = conn.tcp.write_all(request).await {
        return Err(Failure {
            before_response: true,
            error: e.into(),
        });
    }
    let mut arrived = false;
    loop {
        if let Some(head) = parse_head(conn, head_request).map_err(|error| Failure {
            before_response: false,
            error,
        })? {
            return Ok(head);
        }
        let error = match read_more(&mut conn.tcp, &mut conn.buf).await {
            Ok(0) => WireError::Closed,
            Ok(_) => {
                arrived = true;
                continue;
            }
            Err(e) => e.into(),
        };
        return Err(Failure {
            before_response: !arrived,
            error,
        });
    }
}

/// The final response head at the front of `conn`'s buffer, once complete, its field spans in
/// `conn.fields`; 1xx informational responses before it are taken out of the buffer.
fn parse_head(conn: &mut Conn, head_request: bool) -> Result<Option<Head>, WireError> {
    while !conn.buf.is_empty() {
        let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut response = httparse::Response::new(&mut slots);
        let len = match response.parse(&conn.buf) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
            Ok(httparse::Status::Partial) if conn.buf.len() < MAX_HEAD => return Ok(None),
            Ok(_) => return Err(WireError::Invalid("response head over 417,792 bytes")),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(WireError::Invalid("more than 100 header fields"));
            }
            Err(_) => return Err(WireError::Invalid("malformed response head")),
        };
        let (Some(status), Some(version)) = (response.code, response.version) else {
            return Err(WireError::Invalid("malformed status line"));
        };
        match status {
            101 => return Err(WireError::Invalid("101 Switching Protocols")),
            100..=199 => {
                conn.buf.drain(..len);
                continue;
            }
            0..=99 => return Err(WireError::Invalid("status code under 100")),
            _ => {}
        }
        let mut said = Said::default();
        conn.fields.clear();
        for field in response.headers.iter() {
            conn.fields.push((
                span(&conn.buf, field.name.as_bytes()),
                span(&conn.buf, field.value),
            ));
            said.field(field.name, field.value);
        }
        let framing = if head_request || status == 204 || status == 304 {
            Framing::None
        } else if let Some(chunked) = said.chunked {
            // An HTTP/1.0 message with Transfer-Encoding has faulty framing (RFC 9112 §6.1).
            if chunked && version == 1 {
                Framing::Chunked
            } else {
                Framing::Close
            }
        } else if let Some(length) = said.length {
            Framing::Length(length.map_err(WireError::Invalid)?)
        } else {
            Framing::Close
        };
        // Both Transfer-Encoding and Content-Length: Transfer-Encoding rules, but the message
        // "ought to be handled as an error" (RFC 9112 §6.3): not trusted with another request.
        let smuggling = framing == Framing::Chunked && said.length.is_some();
        let persistent = version == 1 && !said.close && framing != Framing::Close && !smuggling;
        return Ok(Some(Head {
            status,
            framing,
            persistent,
            len,
        }));
    }
    Ok(None)
}

/// Where `part`, a slice of `buf` (from httparse), is in `buf`.
fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    if part.is_empty() {
        return 0..0;
    }
    let at = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    at..at + part.len()
}

/// What a response head's framing and connection fields say.
#[derive(Default)]
struct Said {
    /// `Transfer-Encoding` was sent: whether its final coding is chunked.
    chunked: Option<bool>,
    /// `Content-Length` was sent: its value, or why it is unusable.
    length: Option<Result<u64, &'static str>>,
    /// `Connection: close` was sent.
    close: bool,
}

impl Said {
    fn field(&mut self, name: &str, value: &[u8]) {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            self.chunked = Some(match elements(value).last() {
                Some(last) => last.eq_ignore_ascii_case(b"chunked"),
                None => self.chunked.unwrap_or(false),
            });
        } else if name.eq_ignore_ascii_case("content-length") {
            for element in value.split(|&b| b == b',') {
                let parsed = digits(trim(element)).ok_or("invalid Content-Length");
                self.length = Some(match (self.length, parsed) {
                    (Some(Err(e)), _) | (_, Err(e)) => Err(e),
                    (Some(Ok(a)), Ok(b)) if a != b => Err("conflicting Content-Length values"),
                    (_, Ok(b)) => Ok(b),
                });
            }
        } else if name.eq_ignore_ascii_case("connection") {
            self.close |= elements(value).any(|token| token.eq_ignore_ascii_case(b"close"));
        }
    }
}

/// The non-empty elements of a comma-separated field value, without optional whitespace.
pub(crate) fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|e| !e.is_empty())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// A non-empty run of decimal digits as a number (no sign, unlike `u64::from_str`).
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Reads what `tcp` has into the end of `buf`: how many bytes (0 at its end).
async fn read_more(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(READ_RESERVE);
    tcp.read_buf(buf).await
}

impl Exchange {
    /// The response's status code (never 1xx).
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// How the response's body ends.
    pub fn framing(&self) -> Framing {
        self.head.framing
    }

    /// The response's header fields as the upstream sent them, in order (name, value). The
    /// names are tokens (httparse took them so), compared as bytes: checking each as UTF-8 cost
    /// more than the comparisons.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let buf = &self.conn.buf;
        self.conn.fields.iter().map(move |(name, value)| {
            (
                buf.get(name.clone()).unwrap_or_default(),
                buf.get(value.clone()).unwrap_or_default(),
            )
        })
    }

    /// Writes `head` (the response head the gateway composed for its client, ending in
    /// CRLFCRLF) to `out`, followed by the body as the upstream framed it: for
    /// [`Framing::Length`] exactly that many bytes; for [`Framing::Chunked`] the chunked
    /// encoding verbatim (chunk-size lines with any extensions, data, the last chunk), parsed
    /// only to find its end, and then the empty line that ends it, without the upstream's
    /// trailer fields (hyper's server sends none to a client that did not ask for them, and
    /// the fast path takes no `TE` header); for [`Framing::Close`]
    /// everything until the upstream closes, each read sent as a chunk and the last chunk
    /// after the close (hyper's server frames such a body so too: the client can tell a whole
    /// body from one cut short, and keep its connection); for [`Framing::None`] nothing. The
    /// head and the
    /// body bytes read with the response head go out in one write call (vectored when `out`
    /// takes vectored writes, as a `TcpStream` does, else copied together); later bytes as they
    /// arrive. Bytes after the body's end are not relayed.
    ///
    /// Afterwards the connection is kept for the target's next requests (at most `wire`'s
    /// `max_idle` per target and thread) when it can take one: the response was HTTP/1.1
    /// without `Connection: close` and framed otherwise than by the close, its body was read to
    /// its end and nothing came after it. Otherwise it is dropped.
    ///
    /// Returns how many body bytes were relayed. On an error the caller closes the client
    /// connection: part of the response may have gone out.
    pub async fn relay<W: AsyncWrite + Unpin>(
        self,
        wire: &Wire,
        out: &mut W,
        head: &[u8],
    ) -> Result<u64, RelayError> {
        let Exchange {
            mut conn,
            target,
            head: response,
        } = self;
        let mut body = Body::new(response.framing);
        // A body that ends with the upstream's connection goes out chunked, so a client can
        // tell it whole from cut short, and keeps its own connection.
        let rechunk = matches!(body, Body::Close);
        let chunked = matches!(body, Body::Chunked(_));
        let mut at = response.len;
        let (n, relaying) = body.advance(&conn.buf[at..])?;
        let first = &conn.buf[at..at + relaying];
        if rechunk {
            write_both(out, head, &as_chunk(first)).await
        } else {
            write_both(out, head, first).await
        }
        .map_err(RelayError::Client)?;
        let mut relayed = relaying as u64;
        at += n;
        while !matches!(body, Body::Done) {
            // Keep what is not relayed yet (part of a line) at the front.
            conn.buf.drain(..at);
            out.flush().await.map_err(RelayError::Client)?;
            let read = read_more(&mut conn.tcp, &mut conn.buf)
                .await
                .map_err(RelayError::Upstream)?;
            if read == 0 {
                if matches!(body, Body::Close) {
                    // The end of the body, and of the upstream's connection.
                    out.write_all(b"0\r\n\r\n")
                        .await
                        .map_err(RelayError::Client)?;
                    return Ok(relayed);
                }
                return Err(RelayError::Truncated);
            }
            let (n, relaying) = body.advance(&conn.buf)?;
            if relaying > 0 {
                if rechunk {
                    out.write_all(&as_chunk(&conn.buf[..relaying])).await
                } else {
                    out.write_all(&conn.buf[..relaying]).await
                }
                .map_err(RelayError::Client)?;
            }
            relayed += relaying as u64;
            at = n;
        }
        if chunked {
            // In place of the trailer section, which ended the body: none.
            out.write_all(b"\r\n").await.map_err(RelayError::Client)?;
            relayed += 2;
        }
        out.flush().await.map_err(RelayError::Client)?;
        if response.persistent && at == conn.buf.len() {
            conn.buf.clear();
            conn.fields.clear();
            wire.keep(target, conn);
        }
        Ok(relayed)
    }
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("target", &self.target)
            .field("status", &self.head.status)
            .field("framing", &self.head.framing)
            .finish_non_exhaustive()
    }
}

/// `bytes` as one chunk of a chunked body, or nothing for none (an empty chunk would end it).
fn as_chunk(bytes: &[u8]) -> Vec<u8> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let mut chunk = Vec::with_capacity(bytes.len() + 20);
    chunk.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
    chunk.extend_from_slice(bytes);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

/// Writes `head` then `body` to `out` in one write call when `out` takes them (see
/// [`Exchange::relay`]).
async fn write_both<W: AsyncWrite + Unpin>(
    out: &mut W,
    head: &[u8],
    body: &[u8],
) -> io::Result<()> {
    if body.is_empty() {
        return out.write_all(head).await;
    }
    if !out.is_write_vectored() {
        let mut both = Vec::with_capacity(head.len() + body.len());
        both.extend_from_slice(head);
        both.extend_from_slice(body);
        return out.write_all(&both).await;
    }
    let mut slices = [IoSlice::new(head), IoSlice::new(body)];
    let mut left = &mut slices[..];
    while !left.is_empty() {
        let n = out.write_vectored(left).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut left, n);
    }
    Ok(())
}

/// Where a body ends, found as its bytes arrive.
#[derive(Debug)]
enum Body {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(Chunk),
    /// Everything until the upstream closes.
    Close,
    Done,
}

/// Where in a chunked body the next byte is.
#[derive(Clone, Copy, Debug)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In a chunk's data, with this many bytes still to come.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: at a trailer field line, or the final CRLF.
    Trailer,
}

impl Body {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::None | Framing::Length(0) => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::Chunked(Chunk::Size),
            Framing::Close => Self::Close,
        }
    }

    /// How many of `bytes` (what follows the body bytes counted so far) belong to the body
    /// (fewer than all when the body ends within them or they end within a line), and how
    /// many of those, from the first, are relayed: all but a chunked body's trailer section.
    fn advance(&mut self, bytes: &[u8]) -> Result<(usize, usize), RelayError> {
        match self {
            Self::Done => Ok((0, 0)),
            Self::Close => Ok((bytes.len(), bytes.len())),
            Self::Length(left) => {
                let n = (*left).min(bytes.len() as u64);
                *left -= n;
                if *left == 0 {
                    *self = Self::Done;
                }
                Ok((n as usize, n as usize))
            }
            Self::Chunked(chunk) => {
                let (n, relayed, done) = chunked(chunk, bytes)?;
                if done {
                    *self = Self::Done;
                }
                Ok((n, relayed))
            }
        }
    }
}

/// How many of `bytes`, from `state` on, belong to a chunked body, how many of those are
/// relayed (up to the end of the last chunk's line: the trailer section is not, as hyper's
/// server sends none to a client that did not ask for trailers, and [`Exchange::relay`] ends
/// the body with the empty line itself), and whether it ends there.
fn chunked(state: &mut Chunk, bytes: &[u8]) -> Result<(usize, usize, bool), RelayError> {
    let invalid = |why| Err(RelayError::InvalidChunk(why));
    let mut at = 0;
    // Where the relayed bytes end: at the start of the trailer section, once in it.
    let mut relayed = matches!(state, Chunk::Trailer).then_some(0);
    let taken = |at: usize, relayed: Option<usize>, done| Ok((at, relayed.unwrap_or(at), done));
    loop {
        let rest = &bytes[at..];
        match *state {
            Chunk::Size => match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete((n, size))) => {
                    // httparse takes an empty size, and any byte but CR in an extension.
                    if n - 2 > MAX_LINE {
                        return invalid("chunk-size line over 4 KiB");
                    }
                    if !rest[0].is_ascii_hexdigit() || rest[..n - 2].contains(&b'\n') {
                        return invalid("malformed chunk-size line");
                    }
                    at += n;
                    *state = if size == 0 {
                        relayed = Some(at);
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    };
                }
                Ok(httparse::Status::Partial) if rest.len() <= MAX_LINE + 1 => {
                    return taken(at, relayed, false);
                }
                Ok(httparse::Status::Partial) => return invalid("chunk-size line over 4 KiB"),
                Err(httparse::InvalidChunkSize) => return invalid("malformed chunk-size line"),
            },
            Chunk::Data(left) => {
                let n = left.min(rest.len() as u64);
                at += n as usize;
                if n < left {
                    *state = Chunk::Data(left - n);
                    return taken(at, relayed, false);
                }
                *state = Chunk::DataEnd;
            }
            Chunk::DataEnd => match rest {
                [b'\r', b'\n', ..] => {
                    at += 2;
                    *state = Chunk::Size;
                }
                [] | [b'\r'] => return taken(at, relayed, false),
                _ => return invalid("chunk data not followed by CRLF"),
            },
            Chunk::Trailer => {
                let window = &rest[..rest.len().min(MAX_LINE + 2)];
                let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
                    if rest.len() > MAX_LINE + 1 {
                        return invalid("trailer line over 4 KiB");
                    }
                    return taken(at, relayed, false);
                };
                if rest[..end].iter().any(|&b| b == b'\r' || b == b'\n') {
                    return invalid("bare CR or LF in a trailer line");
                }
                at += end + 2;
                if end == 0 {
                    return taken(at, relayed, true);
                }
            }
        }
    }
}

/// Connections this thread keeps for `id` (for tests).
#[cfg(test)]
fn kept(id: u64) -> usize {
    KEPT.with_borrow(|kept| kept.count(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use axum::body::Body as AxumBody;
    use http::{Request, Response};
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;

    const SECOND: Duration = Duration::from_secs(1);

    /// The head the gateway composed for its client, in front of every relayed body.
    const COMPOSED: &[u8] = b"HTTP/1.1 200 OK\r\nx-composed: yes\r\n\r\n";

    fn target(port: u16) -> Target {
        static IDS: AtomicU64 = AtomicU64::new(1 << 41);
        Target {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// A hyper HTTP/1 server on a port of its own that counts its connections. `/len` answers
    /// "hello world" with its length, `/chunked` "hello" and "world" as two chunks 30 ms apart,
    /// `/no-content` 204, `/not-modified` 304, `/close` "bye" with `Connection: close`.
    async fn upstream() -> (Target, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::Relaxed);
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let mut response = Response::new(AxumBody::empty());
                    match request.uri().path() {
                        "/len" => *response.body_mut() = AxumBody::from("hello world"),
                        "/chunked" => {
                            *response.body_mut() = AxumBody::from_stream(futures::stream::unfold(
                                0,
                                |part| async move {
                                    match part {
                                        0 => Some((Ok::<_, io::Error>("hello"), 1)),
                                        1 => {
                                            tokio::time::sleep(Duration::from_millis(30)).await;
                                            Some((Ok("world"), 2))
                                        }
                                        _ => None,
                                    }
                                },
                            ));
                        }
                        "/no-content" => *response.status_mut() = http::StatusCode::NO_CONTENT,
                        "/not-modified" => {
                            *response.status_mut() = http::StatusCode::NOT_MODIFIED;
                        }
                        "/close" => {
                            *response.body_mut() = AxumBody::from("bye");
                            response.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                        }
                        _ => *response.status_mut() = http::StatusCode::NOT_FOUND,
                    }
                    Ok::<_, std::convert::Infallible>(response)
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        (target(port), connections)
    }

    /// What [`raw`] does with a request.
    enum Answer {
        /// Writes these bytes and waits for the next request.
        Reply(Vec<u8>),
        /// Writes these bytes and closes the connection.
        ReplyAndClose(Vec<u8>),
        /// Closes the connection without answering.
        Close,
    }

    /// A server on a port of its own that answers the `r`th request (its head, read up to the
    /// blank line) of its `c`th connection with `answer(c, r)`, both from 0. Counts its
    /// connections.
    async fn raw(
        answer: impl Fn(usize, usize) -> Answer + Send + Sync + 'static,
    ) -> (Target, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let c = counted.fetch_add(1, Ordering::Relaxed);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for r in 0.. {
                        let end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            match tcp.read_buf(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                        };
                        buf.drain(..end);
                        match answer(c, r) {
                            Answer::Reply(bytes) => {
                                if tcp.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                            Answer::ReplyAndClose(bytes) => {
                                let _ = tcp.write_all(&bytes).await;
                                return;
                            }
                            Answer::Close => return,
                        }
                    }
                });
            }
        });
        (target(port), connections)
    }

    /// A [`raw`] server that answers every request with `response` and keeps the connection.
    async fn fixed(response: &'static [u8]) -> Target {
        raw(move |_, _| Answer::Reply(response.to_vec())).await.0
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nhost: upstream\r\n\r\n").into_bytes()
    }

    fn head(path: &str) -> Vec<u8> {
        format!("HEAD {path} HTTP/1.1\r\nhost: upstream\r\n\r\n").into_bytes()
    }

    /// Sends a GET for `path` and relays its response: what the client got, and the body
    /// length `relay` returned.
    async fn fetch(wire: &Wire, target: &Target, path: &str) -> (Vec<u8>, u64) {
        let exchange = wire.send(target, &get(path), false).await.expect("send");
        relay_all(exchange, wire).await
    }

    /// Asserts that a `/len` request to `target` is answered in full, and that `target` has
    /// still had one connection only (counted in `connections`).
    async fn the_one_connection_takes_the_next_request(
        wire: &Wire,
        target: &Target,
        connections: &AtomicUsize,
    ) {
        assert_eq!(
            fetch(wire, target, "/len").await,
            (composed(b"hello world"), 11)
        );
        assert_eq!(connections.load(Ordering::Relaxed), 1);
    }

    /// What relaying `exchange` after [`COMPOSED`] wrote, and the body length it returned.
    async fn relay_all(exchange: Exchange, wire: &Wire) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let relayed = exchange
            .relay(wire, &mut out, COMPOSED)
            .await
            .expect("relay");
        (out, relayed)
    }

    fn composed(body: &[u8]) -> Vec<u8> {
        [COMPOSED, body].concat()
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn a_length_body_follows_the_composed_head_and_its_connection_takes_the_next_requests() {
        let (target, connections) = upstream().await;
        let wire = Wire::new(SECOND, 8);
        for _ in 0..3 {
            let exchange = wire.send(&target, &get("/len"), false).await.expect("send");
            assert_eq!(exchange.status(), 200);
            assert_eq!(exchange.framing(), Framing::Length(11));
            assert!(
                exchange
                    .headers()
                    .any(|(name, value)| name == b"content-length" && value == b"11"),
                "{:?}",
                exchange.headers().collect::<Vec<_>>()
            );
            let (out, relayed) = relay_all(exchange, &wire).await;
            assert_eq!((out, relayed), (composed(b"hello world"), 11));
            assert_eq!(kept(target.id), 1);
        }
        assert_eq!(connections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_chunked_body_arriving_in_parts_is_relayed_verbatim_and_its_connection_kept() {
        let (target, connections) = upstream().await;
        let wire = Wire::new(SECOND, 8);
        let exchange = wire
            .send(&target, &get("/chunked"), false)
            .await
            .expect("send");
        assert_eq!(exchange.framing(), Framing::Chunked);
        let (out, relayed) = relay_all(exchange, &wire).await;
        let body: &[u8] = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        assert_eq!((out, relayed), (composed(body), body.len() as u64));
        assert_eq!(kept(target.id), 1);
        the_one_connection_takes_the_next_request(&wire, &target, &connections).await;
    }

    #[tokio::test]
    async fn chunk_extensions_are_relayed_and_trailer_fields_not() {
        let chunks: &[u8] = b"3;name=\"v\"\r\nabc\r\nA\r\n0123456789\r\n0;last\r\n";
        let body = [chunks, b"expires: never\r\nx-sum: 1\r\n\r\n"].concat();
        let relayed = [chunks, b"\r\n"].concat();
        let (target, connections) = raw(move |_, _| {
            Answer::Reply(
                [
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n".as_slice(),
                    body.as_slice(),
                ]
                .concat(),
            )
        })
        .await;
        let wire = Wire::new(SECOND, 8);
        for _ in 0..2 {
            assert_eq!(
                fetch(&wire, &target, "/").await,
                (composed(&relayed), relayed.len() as u64)
            );
        }
        assert_eq!(connections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_composed_head_and_the_body_read_with_the_response_head_go_out_in_one_write() {
        let target = fixed(OK).await;
        let wire = Wire::new(SECOND, 8);
        for vectored in [true, false] {
            let exchange = wire.send(&target, &get("/"), false).await.expect("send");
            let mut out = Recorder {
                vectored,
                ..Recorder::default()
            };
            exchange
                .relay(&wire, &mut out, COMPOSED)
                .await
                .expect("relay");
            assert_eq!((out.bytes, out.writes), (composed(b"ok"), 1), "{vectored}");
        }
    }

    #[tokio::test]
    async fn a_head_request_gets_the_head_only_and_its_connection_kept() {
        let (target, connections) = upstream().await;
        let wire = Wire::new(SECOND, 8);
        let exchange = wire.send(&target, &head("/len"), true).await.expect("send");
        assert_eq!(exchange.framing(), Framing::None);
        assert!(
            exchange
                .headers()
                .any(|(name, _)| name == b"content-length")
        );
        let (out, relayed) = relay_all(exchange, &wire).await;
        assert_eq!((out, relayed), (COMPOSED.to_vec(), 0));
        assert_eq!(kept(target.id), 1);
        the_one_connection_takes_the_next_request(&wire, &target, &connections).await;
    }

    #[tokio::test]
    async fn no_content_and_not_modified_have_no_body_and_keep_their_connection() {
        let (target, connections) = upstream().await;
        let wire = Wire::new(SECOND, 8);
        for (path, status) in [("/no-content", 204), ("/not-modified", 304)] {
            let exchange = wire.send(&target, &get(path), false).await.expect("send");
            assert_eq!(
                (exchange.status(), exchange.framing()),
                (status, Framing::None)
            );
            let (out, relayed) = relay_all(exchange, &wire).await;
            assert_eq!((out, relayed), (COMPOSED.to_vec(), 0));
        }
        the_one_connection_takes_the_next_request(&wire, &target, &connections).await;
    }

    #[tokio::test]
    async fn continue_and_early_hints_are_skipped_for_the_final_response() {
        let target = fixed(
            b"HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        )
        .await;
        let wire = Wire::new(SECOND, 8);
        let exchange = wire.send(&target, &get("/"), false).await.expect("send");
        assert_eq!(exchange.status(), 200);
        assert_eq!(
            exchange.headers().collect::<Vec<_>>(),
            [(b"content-length".as_slice(), b"2".as_slice())]
        );
        let (out, _) = relay_all(exchange, &wire).await;
        assert_eq!(out, composed(b"ok"));
        assert_eq!(kept(target.id), 1);
    }

    #[tokio::test]
    async fn a_close_delimited_body_is_relayed_chunked_to_the_upstreams_close_and_not_kept() {
        let body: &[u8] = b"all of it, until the end";
        let (target, connections) = raw(move |_, _| {
            Answer::ReplyAndClose(
                [
                    b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n".as_slice(),
                    body,
                ]
                .concat(),
            )
        })
        .await;
        let wire = Wire::new(SECOND, 8);
        let exchange = wire.send(&target, &get("/"), false).await.expect("send");
        assert_eq!(exchange.framing(), Framing::Close);
        let (out, relayed) = relay_all(exchange, &wire).await;
        assert_eq!(relayed, body.len() as u64);
        let chunks = out.strip_prefix(COMPOSED).expect("the composed head first");
        // However the reads fell: chunks holding the body, then the last chunk.
        let (mut rest, mut whole) = (chunks, Vec::new());
        loop {
            let line = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a size line");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).expect("hex"), 16)
                .expect("a size");
            rest = &rest[line + 2..];
            if size == 0 {
                assert_eq!(rest, b"\r\n");
                break;
            }
            whole.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n");
            rest = &rest[size + 2..];
        }
        assert_eq!(whole, body);
        assert_eq!(kept(target.id), 0);
        fetch(&wire, &target, "/").await;
        assert_eq!(connections.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn an_http_1_0_response_is_not_kept_even_with_keep_alive() {
        let target =
            fixed(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok")
                .await;
        let wire = Wire::new(SECOND, 8);
        assert_eq!(fetch(&wire, &target, "/").await, (composed(b"ok"), 2));
        assert_eq!(kept(target.id), 0);
    }

    #[tokio::test]
    async fn connection_close_from_the_upstream_is_not_kept() {
        let (target, connections) = upstream().await;
        let wire = Wire::new(SECOND, 8);
        assert_eq!(fetch(&wire, &target, "/close").await, (composed(b"bye"), 3));
        assert_eq!(kept(target.id), 0);
        fetch(&wire, &target, "/len").await;
        assert_eq!(connections.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn bytes_after_the_body_are_not_relayed_and_the_connection_is_not_kept() {
        let target =
            fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n").await;
        let wire = Wire::new(SECOND, 8);
        assert_eq!(fetch(&wire, &target, "/").await, (composed(b"ok"), 2));
        assert_eq!(kept(target.id), 0);
    }

    #[tokio::test]
    async fn a_kept_connection_the_upstream_closed_while_idle_gets_the_next_request_on_a_new_one() {
        let (target, connections) = raw(|_, _| Answer::ReplyAndClose(OK.to_vec())).await;
        let wire = Wire::new(SECOND, 8);
        assert_eq!(fetch(&wire, &target, "/").await, (composed(b"ok"), 2));
        assert_eq!(kept(target.id), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fetch(&wire, &target, "/").await, (composed(b"ok"), 2));
        assert_eq!(connections.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_kept_connection_closed_on_receiving_the_request_gets_it_again_on_a_new_one() {
        // The first connection answers its first request and closes on the second, unanswered.
        let (target, connections) = raw(|c, r| match (c, r) {
            (0, 1) => Answer::Close,
            _ => Answer::Reply(OK.to_vec()),
        })
        .await;
        let wire = Wire::new(SECOND, 8);
        assert_eq!(fetch(&wire, &target, "/").await, (composed(b"ok"), 2));
        assert_eq!(kept(target.id), 1);
        assert_eq!(fetch(&wire, &target, "/").await, (composed(b"ok"), 2));
        assert_eq!(connections.load(Ordering::Relaxed), 2);
        assert_eq!(kept(target.id), 1);
    }

    #[tokio::test]
    async fn a_new_connection_closed_without_an_answer_is_an_error_not_retried() {
        let (target, connections) = raw(|_, _| Answer::Close).await;
        let err = Wire::new(SECOND, 8)
            .send(&target, &get("/"), false)
            .await
            .expect_err("closed");
        assert!(matches!(err, WireError::Closed), "{err:?}");
        assert_eq!(connections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error_naming_the_address() {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("addr").port()
        };
        let err = Wire::new(SECOND, 8)
            .send(&target(port), &get("/"), false)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, WireError::Connect(ConnectError::Refused { .. })),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn content_length_values_must_agree_and_be_plain_digits() {
        let wire = Wire::new(SECOND, 8);
        for response in [
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok".as_slice(),
            b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2,\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\nok",
        ] {
            let target = fixed(response).await;
            let err = wire
                .send(&target, &get("/"), false)
                .await
                .expect_err("invalid");
            assert!(matches!(err, WireError::Invalid(_)), "{err:?}");
        }
        let agreeing =
            fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 2 , 2\r\ncontent-length: 2\r\n\r\nok").await;
        assert_eq!(fetch(&wire, &agreeing, "/").await, (composed(b"ok"), 2));
        assert_eq!(kept(agreeing.id), 1);
    }

    #[tokio::test]
    async fn switching_protocols_too_many_fields_and_oversized_heads_are_invalid() {
        let wire = Wire::new(SECOND, 8);
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}content-length: 0\r\n\r\n",
            "x-field: 1\r\n".repeat(MAX_FIELDS)
        );
        let big = format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
            "b".repeat(MAX_HEAD)
        );
        for (response, why) in [
            (
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n".to_vec(),
                "101 Switching Protocols",
            ),
            (many.into_bytes(), "more than 100 header fields"),
            (big.into_bytes(), "response head over 417,792 bytes"),
            (b"HTTP/1.1 OK\r\n\r\n".to_vec(), "malformed response head"),
        ] {
            let (target, _) = raw(move |_, _| Answer::Reply(response.clone())).await;
            let err = wire
                .send(&target, &get("/"), false)
                .await
                .expect_err("invalid");
            assert!(matches!(err, WireError::Invalid(w) if w == why), "{err:?}");
        }
    }

    #[tokio::test]
    async fn an_upstream_closing_inside_the_body_is_an_upstream_error_after_what_came() {
        let wire = Wire::new(SECOND, 8);
        for (response, came) in [
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".as_slice(),
                b"abc".as_slice(),
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel".as_slice(),
                b"5\r\nhel".as_slice(),
            ),
        ] {
            let (target, _) = raw(move |_, _| Answer::ReplyAndClose(response.to_vec())).await;
            let exchange = wire.send(&target, &get("/"), false).await.expect("send");
            let mut out = Vec::new();
            let err = exchange
                .relay(&wire, &mut out, COMPOSED)
                .await
                .expect_err("truncated");
            assert!(matches!(err, RelayError::Truncated), "{err:?}");
            assert!(!err.is_client());
            assert_eq!(out, composed(came));
            assert_eq!(kept(target.id), 0);
        }
    }

    #[tokio::test]
    async fn a_chunk_malformed_in_what_came_with_the_head_fails_the_send() {
        let target =
            fixed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokX0\r\n\r\n").await;
        let wire = Wire::new(SECOND, 8);
        let err = wire
            .send(&target, &get("/"), false)
            .await
            .expect_err("invalid");
        assert!(
            matches!(err, WireError::Invalid("malformed chunked body")),
            "{err:?}"
        );
        assert_eq!(kept(target.id), 0);
    }

    #[tokio::test]
    async fn a_client_that_cannot_take_the_response_is_a_client_error() {
        let target = fixed(OK).await;
        let wire = Wire::new(SECOND, 8);
        let exchange = wire.send(&target, &get("/"), false).await.expect("send");
        let (mut client, gone) = tokio::io::duplex(64);
        drop(gone);
        let err = exchange
            .relay(&wire, &mut client, COMPOSED)
            .await
            .expect_err("client gone");
        assert!(err.is_client(), "{err:?}");
        assert_eq!(kept(target.id), 0);
    }

    #[tokio::test]
    async fn at_most_max_idle_are_kept_and_none_when_zero() {
        let (target, connections) = upstream().await;
        let wire = Wire::new(SECOND, 2);
        let request = get("/len");
        let exchanges =
            futures::future::join_all((0..4).map(|_| wire.send(&target, &request, false))).await;
        assert_eq!(connections.load(Ordering::Relaxed), 4);
        for exchange in exchanges {
            let (out, _) = relay_all(exchange.expect("send"), &wire).await;
            assert_eq!(out, composed(b"hello world"));
        }
        assert_eq!(kept(target.id), 2);
        let none = Wire::new(SECOND, 0);
        let (other, _) = upstream().await;
        fetch(&none, &other, "/len").await;
        assert_eq!(kept(other.id), 0);
    }

    /// Feeds `pieces` to a chunked body one after another, as `relay` does: the body bytes
    /// found, whether it ended, and what was left after it.
    fn decode(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool, Vec<u8>), RelayError> {
        let mut body = Body::Chunked(Chunk::Size);
        let (mut found, mut buf) = (Vec::new(), Vec::new());
        for piece in pieces {
            buf.extend_from_slice(piece);
            let (n, relayed) = body.advance(&buf)?;
            found.extend_from_slice(&buf[..relayed]);
            buf.drain(..n);
        }
        Ok((found, matches!(body, Body::Done), buf))
    }

    #[test]
    fn a_chunked_body_arriving_a_byte_at_a_time_ends_where_it_ends() {
        let chunks: &[u8] = b"4;a=b\r\nwiki\r\n10\r\n0123456789abcdef\r\n0\r\n";
        let body = [chunks, b"x-t: 1\r\n\r\n"].concat();
        let mut bytes = body.clone();
        bytes.extend_from_slice(b"after");
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        // Relayed: the chunks up to the last one's line, not the trailer section.
        let (found, done, left) = decode(&pieces).expect("valid");
        assert_eq!((found.as_slice(), done), (chunks, true));
        assert_eq!(left, b"after");
        // Any split of it in two, too.
        for at in 0..=bytes.len() {
            let (found, done, left) = decode(&[&bytes[..at], &bytes[at..]]).expect("valid");
            assert_eq!((found.as_slice(), done), (chunks, true), "split at {at}");
            assert_eq!(left, b"after", "split at {at}");
        }
    }

    #[test]
    fn malformed_or_overlong_chunk_lines_are_rejected() {
        let long_size = [b"1;".as_slice(), &[b'x'; MAX_LINE], b"\r\n"].concat();
        let long_trailer = [b"0\r\nx: ".as_slice(), &[b'x'; MAX_LINE], b"\r\n\r\n"].concat();
        let unfinished = [b"0\r\nx: ".as_slice(), &[b'x'; MAX_LINE]].concat();
        for bytes in [
            b"\r\n".as_slice(),
            b" 5\r\nhello\r\n",
            b"g\r\n",
            b"5;a\nb\r\nhello\r\n",
            b"2\r\nokX",
            b"0\r\nx: 1\nmore\r\n\r\n",
            long_size.as_slice(),
            long_trailer.as_slice(),
            unfinished.as_slice(),
        ] {
            let result = decode(&[bytes]);
            assert!(
                matches!(result, Err(RelayError::InvalidChunk(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            );
        }
    }

    /// Collects what is written and counts the write calls.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        writes: usize,
        vectored: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            this.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            let before = this.bytes.len();
            for buf in bufs {
                this.bytes.extend_from_slice(buf);
            }
            Poll::Ready(Ok(this.bytes.len() - before))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
}
