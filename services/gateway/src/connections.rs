//! Keep-alive HTTP/1 connections to upstream instances, kept by each thread for itself.
//!
//! A thread keeps the connections it made, per instance, and sends a request on the most
//! recently used one that is ready, or on a new one when none is. A connection is kept again
//! as soon as its response head is in, and is ready once that response's body has been read
//! (hyper tells). `hyper_util`'s pooled client, used before, spawned a task per request to wait
//! for that moment, and took a lock and a hashed lookup per request: in bench/gateway's floors
//! it cost 1.1 µs of user time a request more than such a pool.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long an idle connection is kept: less than the upstream service's header read timeout.
const IDLE_TIMEOUT: Duration = storefront_kit::server::IDLE_CONNECTION_TIMEOUT;

/// After how many kept connections a thread also drops what it keeps for instances it no
/// longer sends to (their connections would otherwise stay until the instance closes them).
const SWEEP_EVERY: u32 = 4096;

/// Where an instance's connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Unique in the process: keys the instance's kept connections.
    pub id: u64,
    pub host: String,
    pub port: u16,
}

/// Sends requests to upstream instances over kept connections.
#[derive(Clone, Debug)]
pub struct HttpClient {
    connect_timeout: Duration,
    max_idle: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// Why no connection to an upstream instance was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {at}: {source}")]
    Refused {
        at: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no connection to {at} within {after:?}")]
    Timeout { at: String, after: Duration },
}

/// A new TCP connection to `target`, with `TCP_NODELAY` (both upstream clients' requests go
/// out in one write and are answered before anything else is sent), within `timeout`.
pub(crate) async fn connect(target: &Target, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let at = || format!("{}:{}", target.host, target.port);
    let connecting = TcpStream::connect((target.host.as_str(), target.port));
    let tcp = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(ConnectError::Refused { at: at(), source }),
        Err(_) => {
            return Err(ConnectError::Timeout {
                at: at(),
                after: timeout,
            });
        }
    };
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY on an upstream connection");
    }
    Ok(tcp)
}

/// What sending a request on one connection came to.
pub(crate) enum Tried<T, R, E> {
    Answered(T),
    /// It failed before any of a response arrived: the request, `R`, may go again.
    Unanswered(R, E),
    Failed(E),
}

/// Sends `request` on a kept connection (`take`) or, when there is none, a new one
/// (`connect`), with `send`. A kept connection that fails before answering (its upstream
/// closed it) is given up and the request sent once more on a new connection; a failure on a
/// new connection is returned. Both upstream clients send their requests so.
pub(crate) async fn on_kept_or_new<C, R, T, E, Connecting, Sending>(
    mut request: R,
    take: impl FnOnce() -> Option<C>,
    mut connect: impl FnMut() -> Connecting,
    mut send: impl FnMut(C, R) -> Sending,
) -> Result<T, E>
where
    Connecting: Future<Output = Result<C, E>>,
    Sending: Future<Output = Tried<T, R, E>>,
    E: std::fmt::Display,
{
    let mut kept = take();
    loop {
        let fresh = kept.is_none();
        let conn = match kept.take() {
            Some(conn) => conn,
            None => connect().await?,
        };
        match send(conn, request).await {
            Tried::Answered(answer) => return Ok(answer),
            Tried::Unanswered(again, error) if !fresh => {
                tracing::debug!(
                    error = %error,
                    "a kept upstream connection failed before answering: \
                     sending the request again on a new one"
                );
                request = again;
            }
            Tried::Unanswered(_, error) | Tried::Failed(error) => return Err(error),
        }
    }
}

thread_local! {
    /// This thread's kept connections.
    static KEPT: RefCell<Kept<SendRequest<Body>>> = const { RefCell::new(Kept::new()) };
}

/// What [`Kept::take`] does with a kept connection it looks at.
pub(crate) enum Look {
    /// Take it for the request.
    Take,
    /// Keep it, and look at an older one (it is busy).
    Skip,
    /// Drop it (closed), and look at an older one.
    Drop,
}

/// The connections one thread keeps, per instance id, oldest first: both of the gateway's
/// upstream clients keep theirs in one (hyper's here, [`crate::wire`]'s raw ones).
pub(crate) struct Kept<C> {
    by_instance: Vec<(u64, Vec<(C, Instant)>)>,
    since_sweep: u32,
}

impl<C> Kept<C> {
    pub(crate) const fn new() -> Self {
        Self {
            by_instance: Vec::new(),
            since_sweep: 0,
        }
    }

    /// Keeps `conn` for `id`'s next requests unless `max_idle` are kept already, after dropping
    /// those idle for [`IDLE_TIMEOUT`]. Every [`SWEEP_EVERY`] keeps, also drops, for every
    /// instance, the connections expired or not `alive` (those of instances no longer sent to
    /// would otherwise stay until the instance closes them).
    pub(crate) fn keep(&mut self, id: u64, conn: C, max_idle: usize, alive: impl Fn(&C) -> bool) {
        if max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let kept = match self.by_instance.iter().position(|(i, _)| *i == id) {
            Some(p) => &mut self.by_instance[p].1,
            None => {
                self.by_instance.push((id, Vec::new()));
                &mut self.by_instance.last_mut().expect("just pushed").1
            }
        };
        let expired = kept
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT)
            .count();
        kept.drain(..expired);
        if kept.len() < max_idle {
            kept.push((conn, now));
        }
        self.since_sweep += 1;
        if self.since_sweep < SWEEP_EVERY {
            return;
        }
        self.since_sweep = 0;
        for (_, kept) in &mut self.by_instance {
            kept.retain(|(conn, since)| now.duration_since(*since) < IDLE_TIMEOUT && alive(conn));
        }
        self.by_instance.retain(|(_, kept)| !kept.is_empty());
    }

    /// The most recently kept connection to `id` that `look` takes, not idle for
    /// [`IDLE_TIMEOUT`]; what it drops, and the expired, are dropped on the way.
    pub(crate) fn take(&mut self, id: u64, look: impl Fn(&C) -> Look) -> Option<C> {
        let now = Instant::now();
        let (_, kept) = self.by_instance.iter_mut().find(|(i, _)| *i == id)?;
        let expired = kept
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT)
            .count();
        kept.drain(..expired);
        let mut k = kept.len();
        while k > 0 {
            k -= 1;
            match look(&kept[k].0) {
                Look::Take => return Some(kept.remove(k).0),
                Look::Skip => {}
                Look::Drop => {
                    kept.remove(k);
                }
            }
        }
        None
    }

    /// Connections kept for `id`.
    #[cfg(test)]
    pub(crate) fn count(&self, id: u64) -> usize {
        self.by_instance
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(0, |(_, kept)| kept.len())
    }
}

impl HttpClient {
    /// A client that gives up connecting after `connect_timeout` and keeps at most `max_idle`
    /// connections per instance and thread.
    pub fn new(connect_timeout: Duration, max_idle: usize) -> Self {
        Self {
            connect_timeout,
            max_idle,
        }
    }

    /// Sends `request` (its URI in origin form, its `Host` set) to `target`. A request a kept
    /// connection turns out unable to take (it closed) is sent once more on a new connection;
    /// one that was written is never sent twice.
    pub async fn send(
        &self,
        target: &Target,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        on_kept_or_new(
            request,
            || take(target.id),
            || self.connect(target),
            |mut sender, request| async move {
                match sender.try_send_request(request).await {
                    Ok(response) => {
                        self.keep(target.id, sender);
                        Tried::Answered(response)
                    }
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => Tried::Unanswered(unsent, e.into_error().into()),
                        None => Tried::Failed(e.into_error().into()),
                    },
                }
            },
        )
        .await
    }

    async fn connect(&self, target: &Target) -> Result<SendRequest<Body>, UpstreamError> {
        let tcp = connect(target, self.connect_timeout).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Keeps `sender` for `id`'s next requests, unless `max_idle` are kept already.
    fn keep(&self, id: u64, sender: SendRequest<Body>) {
        KEPT.with_borrow_mut(|kept| {
            kept.keep(id, sender, self.max_idle, |s| !s.is_closed());
        });
    }
}

/// The most recently kept ready connection to `id`, dropping closed ones on the way.
fn take(id: u64) -> Option<SendRequest<Body>> {
    KEPT.with_borrow_mut(|kept| {
        kept.take(id, |sender| {
            if sender.is_closed() {
                Look::Drop
            } else if sender.is_ready() {
                Look::Take
            } else {
                Look::Skip
            }
        })
    })
}

/// Connections this thread keeps for `id` (for tests).
#[cfg(test)]
pub fn kept(id: u64) -> usize {
    KEPT.with_borrow(|kept| kept.count(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A plain HTTP/1 server on a port of its own that counts its connections; it closes each
    /// after `per_connection` requests (0: never). `/slow` answers "ok" in two parts 300 ms
    /// apart.
    async fn upstream(per_connection: usize) -> (Target, Arc<AtomicUsize>) {
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
                tokio::spawn(async move {
                    let served = Arc::new(AtomicUsize::new(0));
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                        let slow = request.uri().path() == "/slow";
                        async move {
                            let body = if slow {
                                Body::from_stream(futures::stream::unfold(0, |part| async move {
                                    match part {
                                        0 => Some((Ok::<_, std::io::Error>("o"), 1)),
                                        1 => {
                                            tokio::time::sleep(Duration::from_millis(300)).await;
                                            Some((Ok("k"), 2))
                                        }
                                        _ => None,
                                    }
                                }))
                            } else {
                                Body::from("ok")
                            };
                            let mut response = Response::new(body);
                            if per_connection > 0 && n >= per_connection {
                                response.headers_mut().insert(
                                    http::header::CONNECTION,
                                    http::HeaderValue::from_static("close"),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 40);
        let target = Target {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            host: "127.0.0.1".into(),
            port,
        };
        (target, connections)
    }

    fn get() -> Request<Body> {
        request("/v1/x")
    }

    fn request(path: &str) -> Request<Body> {
        Request::get(path)
            .header(http::header::HOST, "upstream")
            .body(Body::empty())
            .expect("request")
    }

    async fn body(response: Response<Incoming>) -> String {
        use http_body_util::BodyExt as _;
        let bytes = response.into_body().collect().await.expect("body");
        String::from_utf8(bytes.to_bytes().to_vec()).expect("utf-8")
    }

    /// Sends a `GET` and checks it is answered in full.
    async fn answered(client: &HttpClient, target: &Target) {
        let response = client.send(target, get()).await.expect("send");
        assert_eq!(body(response).await, "ok");
    }

    #[test]
    fn the_newest_connection_a_look_takes_is_taken_and_the_dropped_are_gone() {
        let mut kept: Kept<&str> = Kept::new();
        for conn in ["old", "busy", "closed"] {
            kept.keep(1, conn, 8, |_| true);
        }
        kept.keep(1, "over the limit", 3, |_| true);
        kept.keep(2, "other instance", 0, |_| true);
        assert_eq!((kept.count(1), kept.count(2)), (3, 0));
        let look = |c: &&str| match *c {
            "closed" => Look::Drop,
            "busy" => Look::Skip,
            _ => Look::Take,
        };
        assert_eq!(kept.take(1, look), Some("old"));
        assert_eq!(kept.count(1), 1, "the busy one stays");
        assert_eq!(kept.take(1, look), None);
        assert_eq!(kept.take(2, look), None);
    }

    #[tokio::test]
    async fn requests_one_after_another_share_one_kept_connection() {
        let (target, connections) = upstream(0).await;
        let client = HttpClient::new(Duration::from_secs(1), 8);
        for _ in 0..5 {
            answered(&client, &target).await;
        }
        assert_eq!(connections.load(Ordering::Relaxed), 1);
        assert_eq!(kept(target.id), 1);
    }

    #[tokio::test]
    async fn a_response_still_arriving_makes_the_next_request_open_another() {
        let (target, connections) = upstream(0).await;
        let client = HttpClient::new(Duration::from_secs(1), 8);
        let slow = client.send(&target, request("/slow")).await.expect("slow");
        let quick = client.send(&target, get()).await.expect("quick");
        assert_eq!(connections.load(Ordering::Relaxed), 2);
        assert_eq!(
            (body(slow).await, body(quick).await),
            ("ok".into(), "ok".into())
        );
        // Both answered in full: either connection takes the next request.
        client.send(&target, get()).await.expect("third");
        assert_eq!(connections.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn an_upstream_closing_after_each_answer_gets_every_request_on_a_new_connection() {
        let (target, connections) = upstream(1).await;
        let client = HttpClient::new(Duration::from_secs(1), 8);
        for _ in 0..4 {
            answered(&client, &target).await;
            // Give the closed connection's task a moment to see the close.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(connections.load(Ordering::Relaxed), 4);
        // Without the pause a kept connection may still look open when taken: the request it
        // could not take goes on a new one, and every request is answered.
        for _ in 0..20 {
            answered(&client, &target).await;
        }
    }

    #[tokio::test]
    async fn at_most_max_idle_are_kept_and_none_when_zero() {
        let (target, _) = upstream(0).await;
        let client = HttpClient::new(Duration::from_secs(1), 2);
        let responses =
            futures::future::join_all((0..4).map(|_| client.send(&target, get()))).await;
        assert_eq!(kept(target.id), 2);
        for response in responses {
            body(response.expect("send")).await;
        }
        let (other, _) = upstream(0).await;
        let none = HttpClient::new(Duration::from_secs(1), 0);
        body(none.send(&other, get()).await.expect("send")).await;
        assert_eq!(kept(other.id), 0);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error_naming_the_address() {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("addr").port()
        };
        let target = Target {
            id: u64::MAX,
            host: "127.0.0.1".into(),
            port,
        };
        let err = HttpClient::new(Duration::from_secs(1), 8)
            .send(&target, get())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, UpstreamError::Connect(ConnectError::Refused { .. })),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
