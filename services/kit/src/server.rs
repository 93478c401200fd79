//! One HTTP service with everything every service has: `/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`, request context, tracing spans by matched route, metrics, problem+json for
//! unknown routes and panics, a body size limit, and graceful shutdown.

mod balance;
mod fast;
mod request;

pub use fast::{Relay, RelaySlot, Via, push_date, push_field};

use std::any::Any;
use std::convert::Infallible;
use std::fmt::Display;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::{Listener, ListenerExt, TapIo};
use axum::{Json, Router};
use futures::FutureExt;
use futures::future::{BoxFuture, Either};
use http::Request;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::OpenApi;

use crate::context::RequestContext;
use crate::health::{self, Readiness};
use crate::problem::{self, ApiError};
use crate::shutdown::Shutdown;
use balance::{Balanced, Balancer};
pub(crate) use request::{RequestFields, request_trace};
use request::{RequestLayer, RouteLabel, RouteMetrics};

/// A listener whose accepted connections have `TCP_NODELAY` set: a response written in more
/// than one piece (a streamed or proxied body whose chunks arrive apart) goes out at once, not
/// held by Nagle's algorithm until the client's delayed ACK (up to 40 ms on Linux).
type Accepting = TapIo<TcpListener, fn(&mut tokio::net::TcpStream)>;

fn accepting(listener: TcpListener) -> Accepting {
    listener.tap_io(no_delay as fn(&mut tokio::net::TcpStream))
}

/// Sets `TCP_NODELAY` on an accepted connection (see [`Accepting`]); both kinds of server do.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
    }
}

/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// What the `storefront` binary hands every service it runs.
#[derive(Clone)]
pub struct Platform {
    /// Where embedded backends keep their files.
    pub data_dir: PathBuf,
    pub shutdown: Shutdown,
    /// The in-process event bus every `memory://` events URL of this process shares.
    pub memory_bus: crate::bus::MemoryBus,
}

impl Platform {
    /// Embedded backends under `data_dir`, a fresh in-process bus, and a shutdown that drains
    /// within `drain`. Services that must share one bus set `memory_bus` over this
    /// (`Platform { memory_bus, ..Platform::new(dir, drain) }`).
    pub fn new(data_dir: impl Into<PathBuf>, drain: Duration) -> Self {
        // The metrics recorder before any service is built on this platform: a gauge set
        // while building (or by a task the build spawns) before it was installed is lost.
        crate::metrics::handle();
        Self {
            data_dir: data_dir.into(),
            shutdown: Shutdown::new(drain),
            memory_bus: crate::bus::MemoryBus::new(),
        }
    }
}

/// The error a service fails to start with: `"{service}: {what}: {e}"`, `what` naming the
/// part that failed (`database`, `events`, ...).
pub fn startup_error(service: &str, what: &str, e: impl Display) -> std::io::Error {
    std::io::Error::other(format!("{service}: {what}: {e}"))
}

/// Whether a request's `If-None-Match` names `etag` (a quoted entity tag such as `"3"`), so a
/// `GET` may answer 304: `*`, or any listed tag equal to it under the weak comparison of
/// RFC 9110 section 8.8.3.2 (a `W/` prefix on either side is ignored).
pub fn none_match(headers: &http::HeaderMap, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

/// A service's own parts; [`Service::into_router`] adds the shared ones.
pub struct Service {
    pub name: &'static str,
    /// The service's `/v1/...` routes, state already applied.
    pub router: Router,
    /// The service's OpenAPI document; the health and metrics paths are added to it.
    pub openapi: OpenApi,
    pub readiness: Readiness,
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(health::healthz, health::readyz))]
struct OpsDoc;

/// The paths every service serves itself ([`Service::into_router`]); a [`Front`] never sees
/// them.
const OWN_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];

impl Service {
    pub fn into_router(self) -> Router {
        // Install the recorder before the first request is counted.
        crate::metrics::handle();
        let mut doc = self.openapi;
        doc.merge(<OpsDoc as utoipa::OpenApi>::openapi());
        problem::document_common_responses(&mut doc);
        let doc = Arc::new(doc);
        let name = self.name;
        let [healthz, readyz, metrics, openapi] = OWN_PATHS;
        let ops = Router::new()
            .route(healthz, get(health::healthz))
            .route(readyz, get(health::readyz))
            .with_state(self.readiness)
            .route(metrics, get(crate::metrics::render))
            .route(
                openapi,
                get(move || {
                    let doc = doc.clone();
                    async move { Json(doc.as_ref().clone()) }
                }),
            );
        self.router
            .merge(ops)
            .fallback(problem::not_found)
            .method_not_allowed_fallback(problem::method_not_allowed)
            // Inside the request layer: a panic becomes a 500 that is logged in the request's
            // span, counted, and carries its request id.
            .layer(CatchPanicLayer::custom(panic_to_problem))
            .layer(RequestLayer { service: name })
            .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
    }
}

fn panic_to_problem(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    let mut response = ApiError::internal("handler panicked").into_response();
    response.extensions_mut().insert(Panicked);
    response
}

/// Marks the 500 a panic was turned into: on the fast path, a relay the front put in its slot
/// before panicking is dropped, not used to finish that 500 with an upstream's fields and body.
#[derive(Clone, Copy)]
struct Panicked;

/// A bound listener and its app; bind first (so the port is known), then run.
pub struct HttpServer {
    name: &'static str,
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
}

impl HttpServer {
    pub async fn bind(listen: &str, service: Service) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{}: cannot listen on {listen}: {e}", service.name),
            )
        })?;
        Ok(Self {
            name: service.name,
            listener,
            app: service.into_router(),
            header_read_timeout: HEADER_READ_TIMEOUT,
        })
    }

    /// Another limit than [`HEADER_READ_TIMEOUT`] for a client to send a request's headers.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until `stop` is cancelled, then finishes in-flight requests. Each connection
    /// has the same [`HEADER_READ_TIMEOUT`] as a [`ShardedServer`]'s (`axum::serve` sets none).
    pub async fn run(self, stop: CancellationToken) -> std::io::Result<()> {
        tracing::info!(service = self.name, addr = %self.local_addr(), "listening");
        serve_router(
            self.name,
            self.listener,
            self.app,
            self.header_read_timeout,
            stop,
        )
        .await;
        Ok(())
    }
}

/// Serves `router` on `listener` as an [`HttpServer`] does (hyper's HTTP/1 server, the given
/// header read timeout, the peer's address as [`ConnectInfo`]) until `stop` is cancelled, then
/// finishes in-flight requests. For a router that is not a [`Service`], as the operator's
/// `/healthz`, `/readyz` and `/metrics` are.
pub async fn serve_router(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    let app = ShardApp {
        name,
        router,
        front: None,
        metrics: Arc::default(),
    };
    serve(
        accepting(listener),
        Arc::new(app),
        header_read_timeout,
        stop,
    )
    .await;
}

/// A service bound and ready to run, with its state: what each service's `app::build`
/// returns (the port is known before it runs; tests and seeding reach the state).
///
/// Each service names it `pub type Application = Bound<AppState>`. That is the zero2prod shape
/// (`build`, `port`, `run_until_stopped`) written once: an alias cannot carry the service's
/// own constructor, so `build` is a free function in its `app` module rather than
/// `Application::build`, which would need a wrapper type per service again.
pub struct Bound<S> {
    server: HttpServer,
    state: S,
}

impl<S> Bound<S> {
    /// Binds `service` on `listen` (see [`HttpServer::bind`]) and keeps `state` beside it.
    pub async fn bind(listen: &str, service: Service, state: S) -> std::io::Result<Self> {
        let server = HttpServer::bind(listen, service).await?;
        Ok(Self { server, state })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The service's state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Serves until the platform's shutdown begins, then drains in-flight requests.
    pub async fn run_until_stopped(self, platform: Platform) -> std::io::Result<()> {
        self.server.run(platform.shutdown.token()).await
    }
}

/// What a sharded service answers ahead of its router: the gateway's requests, which then skip
/// the router's matching, its per-route layers and their boxed services and futures
/// (bench/gateway). A request a front takes runs under the same request context, `http` span
/// and metrics as the router's requests do, and a panic in it is answered with a 500 problem
/// as the router's are; the paths every service serves itself (`/healthz`, `/readyz`,
/// `/metrics`, `/openapi.json`) always go to the router.
pub trait Front: Send + Sync + 'static {
    /// The `route` label (of the span and the metrics) under which this front answers
    /// `request`, or `None` to leave it to the router.
    fn takes(&self, request: &Request<Body>) -> Option<&'static str>;

    /// Answers a request [`Front::takes`] took, from `peer`, read `via` hyper or the fast
    /// path; the fast path's answer may be finished by a [`Relay`] the front puts in the slot
    /// [`Via::FastPath`] hands it.
    fn answer(
        &self,
        peer: SocketAddr,
        ctx: RequestContext,
        request: Request<Body>,
        via: Via,
    ) -> BoxFuture<'static, Response>;

    /// Whether a connection's simple requests (a `GET` or `HEAD` with no body, see the `fast`
    /// module) are read and answered without hyper while the front takes them. Off unless the
    /// front says so.
    fn fast(&self) -> bool {
        false
    }
}

/// One serving thread's service: a [`Service`] and, optionally, its [`Front`].
pub struct Shard {
    pub service: Service,
    pub front: Option<Arc<dyn Front>>,
}

impl From<Service> for Shard {
    fn from(service: Service) -> Self {
        Self {
            service,
            front: None,
        }
    }
}

/// One service served by several threads, each with a current-thread Tokio runtime. Every
/// thread accepts on the same listening socket, and a new connection goes to the thread with
/// the fewest open connections (see [`balance`]). A request then stays on one thread from
/// accept to answer, with no work-stealing or cross-thread wake-ups, as in nginx's worker
/// processes; each shard's own state (the gateway's upstream connection pool) stays on its
/// thread too.
pub struct ShardedServer {
    name: &'static str,
    addr: SocketAddr,
    shards: Vec<(std::net::TcpListener, ShardApp)>,
    header_read_timeout: Duration,
}

/// How long a client of an [`HttpServer`] or a [`ShardedServer`] may take to send a request's
/// headers, counted from when its connection opens or its previous response went out (hyper's
/// own default once it has a timer). A client that opens connections and sends nothing, sends
/// its headers a byte at a time (slowloris) or leaves a keep-alive connection idle is cut
/// off, and does not hold the connection, its task and its file descriptor for ever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long our clients (the typed REST clients, the JWKS fetch, the gateway's upstream pool)
/// keep an idle keep-alive connection: less than [`HEADER_READ_TIMEOUT`], so they drop it
/// before the server on the other end closes it, and never send a request (one not safe to
/// retry, say) down a connection the server is closing at that moment.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(20);
const _: () = assert!(IDLE_CONNECTION_TIMEOUT.as_secs() < HEADER_READ_TIMEOUT.as_secs());

impl ShardedServer {
    /// Binds one socket on `listen` (port 0: a free port) for the shards given (at least one);
    /// an address something already listens on is refused.
    pub async fn bind(
        listen: &str,
        shards: impl IntoIterator<Item = impl Into<Shard>>,
    ) -> std::io::Result<Self> {
        let shards: Vec<Shard> = shards.into_iter().map(Into::into).collect();
        let Some(name) = shards.first().map(|s| s.service.name) else {
            return Err(std::io::Error::other(
                "a sharded server needs at least one shard",
            ));
        };
        let cannot = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("{name}: cannot listen on {listen}: {e}"))
        };
        let addr = tokio::net::lookup_host(listen)
            .await
            .map_err(cannot)?
            .next()
            .ok_or_else(|| cannot(std::io::Error::other("the address resolves to nothing")))?;
        // Registered with this runtime's reactor by `TcpListener::bind`; each shard registers
        // a duplicate with its own.
        let listener = TcpListener::bind(addr)
            .await
            .and_then(TcpListener::into_std)
            .map_err(cannot)?;
        let addr = listener.local_addr().map_err(cannot)?;
        let mut bound = Vec::with_capacity(shards.len());
        for Shard { service, front } in shards {
            let maker = ShardApp {
                name: service.name,
                router: service.into_router(),
                front,
                metrics: Arc::default(),
            };
            bound.push((listener.try_clone().map_err(cannot)?, maker));
        }
        Ok(Self {
            name,
            addr,
            shards: bound,
            header_read_timeout: HEADER_READ_TIMEOUT,
        })
    }

    /// Another limit than [`HEADER_READ_TIMEOUT`] for a client to send a request's headers.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves on one thread per shard until `stop` is cancelled, then finishes in-flight
    /// requests on every thread before returning.
    pub async fn run(self, stop: CancellationToken) -> std::io::Result<()> {
        tracing::info!(service = self.name, addr = %self.addr, threads = self.shards.len(), "listening");
        let mut done = Vec::with_capacity(self.shards.len());
        let (balancer, inboxes) = Balancer::new(self.shards.len());
        for (i, ((listener, maker), inbox)) in self.shards.into_iter().zip(inboxes).enumerate() {
            let balancer = balancer.clone();
            let (tx, rx) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
            let stop = stop.clone();
            let header_read_timeout = self.header_read_timeout;
            std::thread::Builder::new()
                .name(format!("{}-{i}", self.name))
                .spawn(move || {
                    let served = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .and_then(|runtime| {
                            runtime.block_on(async move {
                                let listener = Balanced::new(i, listener, inbox, balancer)?;
                                let _heartbeat = Heartbeat::start();
                                serve(listener, Arc::new(maker), header_read_timeout, stop).await;
                                Ok(())
                            })
                        });
                    let _ = tx.send(served);
                })?;
            done.push(rx);
        }
        // Each thread's end is seen when it happens: a shard that fails is logged at once
        // while the others go on serving the same app.
        let mut done: futures::stream::FuturesUnordered<_> = done.into_iter().collect();
        let mut result = Ok(());
        while let Some(served) = futures::StreamExt::next(&mut done).await {
            let served =
                served.unwrap_or_else(|_| Err(std::io::Error::other("a serving thread panicked")));
            if let Err(e) = served {
                tracing::error!(service = self.name, error = %e, "a serving thread stopped");
                result = Err(e);
            }
        }
        result
    }
}

/// Serves one listener's connections (an [`HttpServer`]'s, or one shard's of a
/// [`ShardedServer`]) with hyper's HTTP/1 server until `stop`, then lets each finish its
/// in-flight request (graceful shutdown) before returning.
///
/// Each connection is a task of the runtime serving it (a shard's own) running hyper directly:
/// `axum::serve` would also wrap the service in a tower adapter that clones it for every
/// request, and sets no header read timeout.
async fn serve<L>(
    mut listener: L,
    shard: Arc<ShardApp>,
    header_read_timeout: Duration,
    stop: CancellationToken,
) where
    L: Listener<Addr = SocketAddr>,
{
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let shard = shard.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let fast = shard.front.as_ref().is_some_and(|front| front.fast());
            if !fast {
                return serve_hyper(io, peer, shard, header_read_timeout, stop).await;
            }
            if let Some(rest) =
                fast::serve_connection(io, peer, &shard, header_read_timeout, &stop).await
            {
                let io = fast::Rewind::new(rest);
                serve_hyper(io, peer, shard, header_read_timeout, stop).await;
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves `io` with hyper's HTTP/1 server until it closes; once `stop` is cancelled, lets its
/// in-flight request finish and closes it (graceful shutdown).
async fn serve_hyper<I>(
    io: I,
    peer: SocketAddr,
    shard: Arc<ShardApp>,
    header_read_timeout: Duration,
    stop: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = ShardService { peer, shard };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A shard's service: the router and, optionally, the front in front of it.
struct ShardApp {
    name: &'static str,
    router: Router,
    front: Option<Arc<dyn Front>>,
    /// The metric handles of the front's requests (the router's routes keep their own).
    metrics: Arc<RouteMetrics>,
}

/// One connection's service: the front's requests to the front, the rest to the router (with
/// the peer's address as [`ConnectInfo`], as `into_make_service_with_connect_info` gives it).
struct ShardService {
    peer: SocketAddr,
    shard: Arc<ShardApp>,
}

type ShardFuture = Either<
    BoxFuture<'static, Result<Response, Infallible>>,
    axum::routing::future::RouteFuture<Infallible>,
>;

impl hyper::service::Service<Request<hyper::body::Incoming>> for ShardService {
    type Response = Response;
    type Error = Infallible;
    type Future = ShardFuture;

    fn call(&self, request: Request<hyper::body::Incoming>) -> Self::Future {
        let mut request = request.map(Body::new);
        let shard = &self.shard;
        if let Some(front) = &shard.front
            && !OWN_PATHS.contains(&request.uri().path())
            && let Some(route) = front.takes(&request)
        {
            return Either::Left(front_call(
                shard,
                front,
                self.peer,
                route,
                request,
                Via::Hyper,
            ));
        }
        request.extensions_mut().insert(ConnectInfo(self.peer));
        Either::Right(tower::Service::call(&mut shard.router.clone(), request))
    }
}

/// Answers a request `front` took under `route`, as the router's requests are answered: the
/// request layer's context, span and metrics ([`request::observe`]), and a panic making the
/// answer or while it runs turned into a 500, as the router's `CatchPanicLayer` does. Both
/// hyper's requests and the fast path's come through here.
fn front_call(
    shard: &ShardApp,
    front: &Arc<dyn Front>,
    peer: SocketAddr,
    route: &'static str,
    request: Request<Body>,
    via: Via,
) -> BoxFuture<'static, Result<Response, Infallible>> {
    let front = front.clone();
    let echo = match &via {
        Via::FastPath(slot) => request::Echo::Slot(slot.clone()),
        Via::Hyper => request::Echo::Headers,
    };
    request::observe(
        shard.name,
        RouteLabel::Fixed(route),
        shard.metrics.clone(),
        request,
        echo,
        move |ctx, request| {
            let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
                front.answer(peer, ctx, request, via)
            }));
            async move {
                match answer {
                    Ok(answer) => AssertUnwindSafe(answer)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(panic_to_problem),
                    Err(panic) => panic_to_problem(panic),
                }
            }
        },
    )
}

/// A timer that fires every second on a serving thread, for as long as it is kept.
///
/// Tokio's time driver sleeps until its earliest timer. With none pending (every request on
/// the thread answered), a request's timeout registered next is earlier than that sleep, so
/// the driver is woken to take it: a write to its eventfd, a system call that the gateway
/// made for 0.35 of its proxied requests (bench/gateway). With this timer pending, a timeout
/// longer than a second never needs that wake-up.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start() -> Self {
        Self(tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::RequestContext;
    use crate::health::HealthCheck;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Duration;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn accepted_connections_have_no_delay() {
        use axum::serve::Listener;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        assert!(!accepted.nodelay().expect("nodelay"), "off unless set");
        drop((plain, accepted));
        let mut listener = accepting(listener);
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, peer) = Listener::accept(&mut listener).await;
        assert!(accepted.nodelay().expect("nodelay"));
        assert_eq!(peer, client.local_addr().expect("client addr"));
    }

    #[test]
    fn none_match_compares_weakly_and_takes_a_star_or_a_list() {
        let headers = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(
                    http::header::IF_NONE_MATCH,
                    http::HeaderValue::from_str(v).expect("value"),
                );
            }
            h
        };
        assert!(none_match(&headers(&["\"3\""]), "\"3\""));
        assert!(none_match(&headers(&["W/\"3\""]), "\"3\""));
        assert!(none_match(&headers(&["\"3\""]), "W/\"3\""));
        assert!(none_match(&headers(&["\"1\", \"3\""]), "\"3\""));
        assert!(none_match(&headers(&["\"1\"", "\"3\""]), "\"3\""));
        assert!(none_match(&headers(&["*"]), "\"3\""));
        assert!(!none_match(&headers(&["\"31\""]), "\"3\""));
        assert!(
            !none_match(&headers(&["3"]), "\"3\""),
            "an unquoted tag is not one"
        );
        assert!(!none_match(&headers(&[]), "\"3\""));
    }

    async fn start(readiness: Readiness, token: CancellationToken) -> String {
        let router = Router::new()
            .route("/v1/ping", get(|| async { "pong" }))
            .route(
                "/v1/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }),
            )
            .route("/v1/panic", get(boom));
        let service = Service {
            name: "test",
            router,
            openapi: OpenApi::default(),
            readiness,
        };
        let server = HttpServer::bind("127.0.0.1:0", service)
            .await
            .expect("bind");
        let base = format!("http://{}", server.local_addr());
        tokio::spawn(server.run(token));
        base
    }

    /// Calls `path` of `app` in-process, with `traceparent` when given: the `traceparent` the
    /// response announces, and the body.
    async fn call_with_trace(
        app: &Router,
        path: &str,
        traceparent: Option<&str>,
    ) -> (String, String) {
        use tower::ServiceExt as _;
        let mut request = Request::get(path);
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let announced = response.headers()["traceparent"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        (announced, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    #[tokio::test]
    async fn a_handlers_log_lines_carry_the_requests_span_and_a_5xx_is_logged_in_it() {
        use tower::ServiceExt as _;

        let logs = crate::telemetry::CapturedLogs::start();
        let app = Service {
            name: "logged",
            router: Router::new()
                .route(
                    "/v1/log",
                    get(|| async {
                        tracing::warn!("inside");
                        "ok"
                    }),
                )
                .route(
                    "/v1/fail",
                    get(|| async { ApiError::internal("broken").into_response() }),
                ),
            openapi: OpenApi::default(),
            readiness: Readiness::new("logged", CancellationToken::new()),
        }
        .into_router();
        for path in ["/v1/log", "/v1/fail"] {
            let request = Request::get(path)
                .header("x-request-id", "log-1")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(Body::empty())
                .expect("request");
            app.clone().oneshot(request).await.expect("infallible");
        }
        let events = logs.events();
        let find = |message: &str| {
            events
                .iter()
                .find(|e| e["fields"]["message"] == message)
                .unwrap_or_else(|| panic!("no {message:?} in {events:?}"))
        };
        let inside = &find("inside")["span"];
        assert_eq!(inside["name"], "http");
        assert_eq!(inside["service"], "logged");
        assert_eq!(inside["method"], "GET");
        assert_eq!(inside["route"], "/v1/log");
        assert_eq!(inside["request_id"], "log-1");
        assert_eq!(inside["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let failed = find("response failed");
        assert_eq!(failed["level"], "ERROR");
        assert_eq!(failed["fields"]["status"], 500);
        assert_eq!(failed["span"]["route"], "/v1/fail");
        assert_eq!(failed["span"]["request_id"], "log-1");
    }

    #[tokio::test]
    async fn without_export_what_a_request_causes_names_this_hop() {
        let app = Service {
            name: "plain",
            router: Router::new().route(
                "/v1/emit",
                get(|| async {
                    crate::event::Envelope::new("Next", "plain", "s", 0)
                        .traceparent
                        .unwrap_or_default()
                }),
            ),
            openapi: OpenApi::default(),
            readiness: Readiness::new("plain", CancellationToken::new()),
        }
        .into_router();
        let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (hop, body) = call_with_trace(&app, "/v1/emit", Some(caller)).await;
        // The event names this hop (the context the response announces), in the caller's trace.
        assert_eq!(body, hop);
        assert!(
            hop.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{hop}"
        );
    }

    #[tokio::test]
    async fn exported_spans_continue_the_callers_trace_and_parent_what_they_cause() {
        use crate::context::TraceParent;

        let captured = crate::telemetry::CapturedSpans::start();
        // The handler answers with the traceparent it would send downstream or put on an event.
        let app = Service {
            name: "traced",
            router: Router::new().route(
                "/v1/next",
                get(|ctx: RequestContext| async move { ctx.outgoing_traceparent().to_string() }),
            ),
            openapi: OpenApi::default(),
            readiness: Readiness::new("traced", CancellationToken::new()),
        }
        .into_router();
        let call = |traceparent: Option<&'static str>| {
            let app = app.clone();
            async move {
                let (announced, body) = call_with_trace(&app, "/v1/next", traceparent).await;
                (
                    TraceParent::parse(&announced).expect("announced"),
                    TraceParent::parse(&body).expect("a traceparent"),
                )
            }
        };
        let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (_, continued) = call(Some(caller)).await;
        let (started, fresh) = call(None).await;
        let spans = captured.finished();
        let http: Vec<_> = spans.iter().filter(|s| s.name == "http").collect();
        assert_eq!(http.len(), 2, "{spans:?}");

        // With a traceparent: the span joins the caller's trace as the caller's child, and
        // what this hop causes is the exported span's child.
        let first = http[0];
        assert_eq!(
            first.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(first.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(continued.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            continued.span_id(),
            first.span_context.span_id().to_string()
        );

        // Without one: the trace id the response announces (and the logs carry) is the one
        // exported, and downstream work is again the exported span's child.
        let second = http[1];
        assert_eq!(
            second.span_context.trace_id().to_string(),
            started.trace_id()
        );
        assert_eq!(fresh.trace_id(), started.trace_id());
        assert_eq!(fresh.span_id(), second.span_context.span_id().to_string());
    }

    #[tokio::test]
    async fn bound_keeps_its_state_and_stops_with_the_platform() {
        let platform = Platform::new("unused", Duration::from_secs(1));
        let service = Service {
            name: "bound",
            router: Router::new().route("/v1/ping", get(|| async { "pong" })),
            openapi: OpenApi::default(),
            readiness: Readiness::new("bound", platform.shutdown.token()),
        };
        let bound = Bound::bind("127.0.0.1:0", service, 7_u8)
            .await
            .expect("bind");
        assert_eq!(*bound.state(), 7);
        let url = format!("http://127.0.0.1:{}/v1/ping", bound.port());
        let running = tokio::spawn(bound.run_until_stopped(platform.clone()));
        let body = reqwest::get(url).await.expect("ping").text().await;
        assert_eq!(body.expect("body"), "pong");
        platform.shutdown.trigger();
        running.await.expect("join").expect("served");
        assert_eq!(
            startup_error("bound", "database", "refused").to_string(),
            "bound: database: refused"
        );
    }

    fn timed_service(token: &CancellationToken) -> Service {
        Service {
            name: "timed",
            router: Router::new().route("/v1/x", get(|| async { "x" })),
            openapi: OpenApi::default(),
            readiness: Readiness::new("timed", token.clone()),
        }
    }

    /// Asserts that a server with a 300 ms header read timeout on `addr` cuts off, within 3 s,
    /// a client that sends nothing, one that sends half a header and stalls, and one that is
    /// answered and then leaves its keep-alive connection idle; and keeps one whose every request
    /// comes in time, however long the connection lasts.
    async fn cuts_off_slow_clients(addr: SocketAddr) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        // Connects, sends `sent` and reads until the server closes the connection: what it
        // read, and how long the server took to close after `sent` was written.
        async fn cut_off(addr: SocketAddr, sent: &[u8]) -> (String, Duration) {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(sent).await.expect("write");
            let started = std::time::Instant::now();
            let mut read = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => break,
                    Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
                    Err(_) => panic!("still open after 10 s"),
                }
            }
            (
                String::from_utf8_lossy(&read).into_owned(),
                started.elapsed(),
            )
        }

        // Sends nothing.
        let (_, after) = cut_off(addr, b"").await;
        assert!(after < Duration::from_secs(3), "{after:?}");
        // Sends half a header, then stalls.
        let (_, after) = cut_off(addr, b"GET /v1/x HTTP/1.1\r\nHost: a\r\n").await;
        assert!(after < Duration::from_secs(3), "{after:?}");
        // Is answered, then leaves its keep-alive connection idle.
        let (answer, after) = cut_off(addr, b"GET /v1/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(after < Duration::from_secs(3), "{after:?}");
        // Sends each request well within the limit, the three together over it: each head
        // has the limit from when the server starts waiting for it.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tcp.write_all(b"GET /v1/x HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .expect("write");
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
                .await
                .expect("answered in time")
                .expect("read");
            let answer = String::from_utf8_lossy(&buf[..n]);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }

    #[tokio::test]
    async fn both_servers_cut_off_clients_that_do_not_send_their_headers_in_time() {
        let token = CancellationToken::new();
        let limit = Duration::from_millis(300);
        let sharded = ShardedServer::bind("127.0.0.1:0", [timed_service(&token)])
            .await
            .expect("bind")
            .with_header_read_timeout(limit);
        let plain = HttpServer::bind("127.0.0.1:0", timed_service(&token))
            .await
            .expect("bind")
            .with_header_read_timeout(limit);
        // The fast path reads heads itself, so it keeps the same limit on its own.
        let fast = Shard {
            service: timed_service(&token),
            front: Some(Arc::new(EveryPath { fast: true })),
        };
        let fast = ShardedServer::bind("127.0.0.1:0", [fast])
            .await
            .expect("bind")
            .with_header_read_timeout(limit);
        let addrs = [sharded.local_addr(), plain.local_addr(), fast.local_addr()];
        let running = [
            tokio::spawn(sharded.run(token.clone())),
            tokio::spawn(plain.run(token.clone())),
            tokio::spawn(fast.run(token.clone())),
        ];
        for addr in addrs {
            cuts_off_slow_clients(addr).await;
        }
        token.cancel();
        for served in running {
            served.await.expect("join").expect("served");
        }
    }

    #[tokio::test]
    async fn sharded_server_serves_from_every_thread_and_drains_on_stop() {
        let token = CancellationToken::new();
        let services: Vec<Service> = (0..3)
            .map(|_| Service {
                name: "sharded",
                router: Router::new().route(
                    "/v1/thread",
                    get(|| async {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        std::thread::current().name().unwrap_or("?").to_string()
                    }),
                ),
                openapi: OpenApi::default(),
                readiness: Readiness::new("sharded", token.clone()),
            })
            .collect();
        let server = ShardedServer::bind("127.0.0.1:0", services)
            .await
            .expect("bind");
        let base = format!("http://{}", server.local_addr());
        // The port is taken: a second server is refused rather than sharing it.
        let taken = ShardedServer::bind(
            &server.local_addr().to_string(),
            vec![Service {
                name: "second",
                router: Router::new(),
                openapi: OpenApi::default(),
                readiness: Readiness::new("second", token.clone()),
            }],
        )
        .await;
        assert_eq!(
            taken.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::AddrInUse)
        );
        let running = tokio::spawn(server.run(token.clone()));
        // 60 connections open at once, each answered after 200 ms: every thread serves a
        // third of them, whichever accepted them.
        let answers = futures::future::join_all((0..60).map(|_| {
            let url = format!("{base}/v1/thread");
            async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .expect("client");
                client
                    .get(&url)
                    .send()
                    .await
                    .expect("send")
                    .text()
                    .await
                    .expect("body")
            }
        }))
        .await;
        let mut served = std::collections::BTreeMap::<String, usize>::new();
        for thread in answers {
            *served.entry(thread).or_default() += 1;
        }
        assert_eq!(
            served.keys().map(String::as_str).collect::<Vec<_>>(),
            ["sharded-0", "sharded-1", "sharded-2"],
        );
        // Two threads accepting at the same moment may both count the same shard as the
        // least loaded once.
        assert!(
            served.values().all(|&n| (18..=22).contains(&n)),
            "connections per thread: {served:?}"
        );
        assert_eq!(
            reqwest::get(format!("{base}/healthz"))
                .await
                .expect("healthz")
                .status(),
            200
        );
        // A request in flight when stop comes is still answered.
        let slow = tokio::spawn(reqwest::get(format!("{base}/v1/thread")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
        let answer = slow
            .await
            .expect("join")
            .expect("in-flight request answered");
        assert_eq!(answer.status(), 200);
        running.await.expect("join").expect("served");
    }

    /// Takes every path but `/v1/router`; answers with the peer's address, the request id it
    /// was handed and which way the request came (`fast` or `hyper`), and panics on
    /// `/v1/front/panic` (making the answer) and `/v1/front/later` (while it runs). On the fast
    /// path, `/v1/front/relayed` is answered by a [`Relay`], and `/v1/front/relayed-later`
    /// puts one and then panics while its answer runs. `/v1/front/slow` is
    /// answered after 300 ms, and counted in [`SLOW_ANSWERED`] once it is.
    struct EveryPath {
        fast: bool,
    }

    static SLOW_ANSWERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// The trace context `/v1/front/own-ids` answers with, which the request layer's replaces.
    const OWN_TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// Writes the head, then `relayed` in two writes.
    struct TwoParts;

    impl Relay for TwoParts {
        fn relay<'a>(
            self: Box<Self>,
            out: &'a mut (dyn tokio::io::AsyncWrite + Unpin + Send),
            head: &'a [u8],
        ) -> BoxFuture<'a, std::io::Result<()>> {
            use tokio::io::AsyncWriteExt as _;
            Box::pin(async move {
                out.write_all(head).await?;
                out.write_all(b"x-relayed: 1\r\n\r\nrel").await?;
                out.write_all(b"ayed").await
            })
        }
    }

    impl Front for EveryPath {
        fn takes(&self, request: &Request<Body>) -> Option<&'static str> {
            (request.uri().path() != "/v1/router").then_some("front")
        }

        fn answer(
            &self,
            peer: SocketAddr,
            ctx: RequestContext,
            request: Request<Body>,
            via: Via,
        ) -> BoxFuture<'static, Response> {
            assert_ne!(request.uri().path(), "/v1/front/panic", "the front panics");
            let later = request.uri().path() == "/v1/front/later";
            let fast = via.is_fast();
            if request.uri().path() == "/v1/front/relayed-later" {
                if let Via::FastPath(slot) = &via {
                    slot.put(TwoParts);
                }
                return Box::pin(async { panic!("the answer panics after putting its relay") });
            }
            if let Via::FastPath(slot) = via
                && request.uri().path() == "/v1/front/relayed"
            {
                let mut response = Response::new(Body::empty());
                response.headers_mut().insert(
                    http::header::CONTENT_LENGTH,
                    http::HeaderValue::from_static("7"),
                );
                slot.put(TwoParts);
                return Box::pin(async move { response });
            }
            if request.uri().path() == "/v1/front/own-ids" {
                let mut response = "own ids".into_response();
                let headers = response.headers_mut();
                headers.insert(
                    "x-request-id",
                    http::HeaderValue::from_static("the-front's"),
                );
                headers.insert("traceparent", http::HeaderValue::from_static(OWN_TRACE));
                return Box::pin(async move { response });
            }
            let via = if fast { "fast" } else { "hyper" };
            let text = format!("{} {} {via}", peer.ip(), ctx.request_id);
            let slow = request.uri().path() == "/v1/front/slow";
            Box::pin(async move {
                assert!(!later, "the answer panics");
                if slow {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    SLOW_ANSWERED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                text.into_response()
            })
        }

        fn fast(&self) -> bool {
            self.fast
        }
    }

    #[tokio::test]
    async fn a_front_answers_what_it_takes_under_the_request_layer_but_never_the_own_paths() {
        a_front_answers("fronted", false).await;
    }

    #[tokio::test]
    async fn a_fast_front_answers_what_it_takes_under_the_request_layer_but_never_the_own_paths() {
        a_front_answers("fronted-fast", true).await;
    }

    /// The same requests, answered the same way, whether the front's simple requests take the
    /// fast path or hyper's.
    async fn a_front_answers(name: &'static str, fast: bool) {
        let via = if fast { "fast" } else { "hyper" };
        let token = CancellationToken::new();
        let service = Service {
            name,
            router: Router::new().route(
                "/v1/router",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                    format!("router {}", peer.ip())
                }),
            ),
            openapi: OpenApi::default(),
            readiness: Readiness::new(name, token.clone()),
        };
        let shard = Shard {
            service,
            front: Some(Arc::new(EveryPath { fast })),
        };
        let server = ShardedServer::bind("127.0.0.1:0", [shard])
            .await
            .expect("bind");
        let base = format!("http://{}", server.local_addr());
        let running = tokio::spawn(server.run(token.clone()));
        let http = reqwest::Client::new();

        let r = http
            .get(format!("{base}/v1/front"))
            .header("x-request-id", "front-1")
            .send()
            .await
            .expect("front");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-request-id"], "front-1");
        assert!(r.headers().contains_key("traceparent"));
        assert_eq!(
            r.text().await.expect("body"),
            format!("127.0.0.1 front-1 {via}")
        );

        // The request layer's request id and trace context replace those the answer set, on
        // either path.
        let r = http
            .get(format!("{base}/v1/front/own-ids"))
            .header("x-request-id", "layer-1")
            .send()
            .await
            .expect("own ids");
        assert_eq!(r.status(), 200);
        let all = |name: &str| {
            r.headers()
                .get_all(name)
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(all("x-request-id"), ["layer-1"], "{via}");
        let traces = all("traceparent");
        assert_eq!(traces.len(), 1, "{via}: {traces:?}");
        assert_ne!(traces[0], OWN_TRACE, "{via}");

        for panics in ["panic", "later", "relayed-later"] {
            let r = http
                .get(format!("{base}/v1/front/{panics}"))
                .send()
                .await
                .expect("panic");
            assert_eq!(r.status(), 500, "{panics}");
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            assert!(r.headers().contains_key("x-request-id"));
            assert!(!r.headers().contains_key("x-relayed"), "{panics}");
            let problem: serde_json::Value = r.json().await.expect("a problem document");
            assert_eq!(problem["status"], 500, "{panics}");
        }

        let r = http
            .get(format!("{base}/v1/router"))
            .send()
            .await
            .expect("router");
        assert_eq!(r.text().await.expect("body"), "router 127.0.0.1");
        for own in OWN_PATHS {
            let r = http
                .get(format!("{base}{own}"))
                .send()
                .await
                .expect("own path");
            assert_eq!(r.status(), 200, "{own}");
            let body = r.text().await.expect("body");
            assert!(!body.starts_with("127.0.0.1"), "{own} went to the front");
        }

        let text = crate::metrics::handle().render();
        // `/v1/front` and `/v1/front/own-ids`; the three that panic.
        for (status, count) in [("200", 2), ("500", 3)] {
            let series = format!(
                "http_requests_total{{service=\"{name}\",method=\"GET\",route=\"front\",status=\"{status}\"}} {count}"
            );
            assert!(text.contains(&series), "{series} not in {text}");
        }
        token.cancel();
        running.await.expect("join").expect("served");
    }

    /// Writes `sent` on a new connection to `addr` and reads what comes back until the server
    /// closes the connection or sends nothing more for 500 ms.
    async fn raw_exchange(addr: SocketAddr, sent: &[u8]) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(sent).await.expect("write");
        let mut read = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n @ 1..)) =
            tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await
        {
            read.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&read).into_owned()
    }

    /// The bodies of the responses in `text`, in order (each body ends where the next response
    /// starts, or at the end).
    fn bodies(text: &str) -> Vec<&str> {
        text.split("HTTP/1.")
            .skip(1)
            .map(|response| response.split_once("\r\n\r\n").map_or("", |(_, body)| body))
            .collect()
    }

    #[tokio::test]
    async fn the_fast_path_hands_hyper_every_request_it_does_not_take_and_the_rest_of_its_connection()
     {
        let token = CancellationToken::new();
        let service = Service {
            name: "fast-handover",
            router: Router::new().route("/v1/router", get(|| async { "router" })),
            openapi: OpenApi::default(),
            readiness: Readiness::new("fast-handover", token.clone()),
        };
        let shard = Shard {
            service,
            front: Some(Arc::new(EveryPath { fast: true })),
        };
        let server = ShardedServer::bind("127.0.0.1:0", [shard])
            .await
            .expect("bind");
        let addr = server.local_addr();
        let running = tokio::spawn(server.run(token.clone()));
        let host = "Host: t\r\n";

        // Pipelined: two simple requests, one with a (zero) Content-Length, which hyper reads,
        // and one more after it, which hyper serves too, since the connection is its own now.
        let sent = format!(
            "GET /v1/front/1 HTTP/1.1\r\n{host}x-request-id: r1\r\n\r\n\
             GET /v1/front/2 HTTP/1.1\r\n{host}x-request-id: r2\r\n\r\n\
             GET /v1/front/3 HTTP/1.1\r\n{host}x-request-id: r3\r\nContent-Length: 0\r\n\r\n\
             GET /v1/front/4 HTTP/1.1\r\n{host}x-request-id: r4\r\n\r\n"
        );
        let text = raw_exchange(addr, sent.as_bytes()).await;
        assert_eq!(
            bodies(&text),
            [
                "127.0.0.1 r1 fast",
                "127.0.0.1 r2 fast",
                "127.0.0.1 r3 hyper",
                "127.0.0.1 r4 hyper"
            ],
            "{text}"
        );
        assert_eq!(text.matches("date: ").count(), 4, "{text}");

        // A request smuggled in a body is read as the body it is, whichever way it is framed.
        let inner = format!("GET /v1/front/smuggled HTTP/1.1\r\n{host}\r\n");
        let by_length = format!(
            "GET /v1/front/outer HTTP/1.1\r\n{host}x-request-id: outer\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        let chunked = format!(
            "GET /v1/front/outer HTTP/1.1\r\n{host}x-request-id: outer\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
            inner.len()
        );
        for sent in [by_length, chunked] {
            let text = raw_exchange(addr, sent.as_bytes()).await;
            assert_eq!(bodies(&text), ["127.0.0.1 outer hyper"], "{text}");
        }

        // Not for the fast path: HTTP/1.0, an upgrade, `Expect`, `Connection: close`, a path
        // the front leaves to the router, an own path, a method with a body, bad bytes.
        for (sent, answer) in [
            (
                "GET /v1/front/a HTTP/1.0\r\nx-request-id: a\r\n\r\n",
                "127.0.0.1 a hyper",
            ),
            (
                "GET /v1/front/a HTTP/1.1\r\nHost: t\r\nx-request-id: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
                "127.0.0.1 a hyper",
            ),
            (
                "GET /v1/front/a HTTP/1.1\r\nHost: t\r\nx-request-id: a\r\nExpect: 100-continue\r\n\r\n",
                "127.0.0.1 a hyper",
            ),
            (
                "GET /v1/front/a HTTP/1.1\r\nHost: t\r\nx-request-id: a\r\nConnection: close\r\n\r\n",
                "127.0.0.1 a hyper",
            ),
            ("GET /v1/router HTTP/1.1\r\nHost: t\r\n\r\n", "router"),
            (
                "DELETE /v1/front/a HTTP/1.1\r\nHost: t\r\nx-request-id: a\r\n\r\n",
                "127.0.0.1 a hyper",
            ),
        ] {
            let text = raw_exchange(addr, sent.as_bytes()).await;
            assert_eq!(bodies(&text), [answer], "{sent}: {text}");
        }
        for own in ["/healthz", "/healthz#x"] {
            let sent = format!("GET {own} HTTP/1.1\r\nHost: t\r\n\r\n");
            let text = raw_exchange(addr, sent.as_bytes()).await;
            assert!(text.starts_with("HTTP/1.1 200"), "{own}: {text}");
            assert!(!text.contains("127.0.0.1"), "{own}: {text}");
        }
        let text = raw_exchange(addr, b"GET /v1/front/a HTTP/1.1\r\nHo\x01st: t\r\n\r\n").await;
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");

        // A `HEAD` gets the length of the `GET`'s body, and no body; the connection goes on.
        let sent = format!(
            "HEAD /v1/front/h HTTP/1.1\r\n{host}x-request-id: h\r\n\r\n\
             GET /v1/front/h HTTP/1.1\r\n{host}x-request-id: h\r\n\r\n"
        );
        let text = raw_exchange(addr, sent.as_bytes()).await;
        assert_eq!(bodies(&text), ["", "127.0.0.1 h fast"], "{text}");
        assert_eq!(text.matches("content-length: 16\r\n").count(), 2, "{text}");

        // A head that comes in pieces, the second with the start of the next request: each is
        // read whole (what was read is kept while a head is not complete), and both are
        // answered on the fast path.
        {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            for piece in [
                "GET /v1/front/p HTTP/1.1\r\nHo",
                "st: t\r\nx-request-id: p1\r\n\r\nGET /v1/front/p HTTP/1.1\r\n",
                "Host: t\r\nx-request-id: p2\r\n\r\n",
            ] {
                tcp.write_all(piece.as_bytes()).await.expect("write");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            let mut read = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n @ 1..)) =
                tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await
            {
                read.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&read);
            assert_eq!(
                bodies(&text),
                ["127.0.0.1 p1 fast", "127.0.0.1 p2 fast"],
                "{text}"
            );
        }

        // A relayed body follows the head the fast path wrote, with the request layer's headers.
        let text = raw_exchange(
            addr,
            b"GET /v1/front/relayed HTTP/1.1\r\nHost: t\r\nx-request-id: rel\r\n\r\n",
        )
        .await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("x-request-id: rel\r\n"), "{text}");
        assert!(text.contains("traceparent: 00-"), "{text}");
        assert!(text.contains("x-relayed: 1\r\n"), "{text}");
        assert!(!text.contains("date: "), "the relay's to write: {text}");
        assert_eq!(bodies(&text), ["relayed"], "{text}");

        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // A client that leaves while its request is answered: the answer is dropped.
        let mut gone = tokio::net::TcpStream::connect(addr).await.expect("connect");
        gone.write_all(format!("GET /v1/front/slow HTTP/1.1\r\n{host}\r\n").as_bytes())
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(gone);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(SLOW_ANSWERED.load(std::sync::atomic::Ordering::SeqCst), 0);

        // Stopping: a request in flight is answered, with `connection: close`, and its
        // connection closed; an idle fast-path connection closes at once.
        let mut busy = tokio::net::TcpStream::connect(addr).await.expect("connect");
        busy.write_all(
            format!("GET /v1/front/slow HTTP/1.1\r\n{host}x-request-id: last\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
        idle.write_all(format!("GET /v1/front/i HTTP/1.1\r\n{host}\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = [0u8; 4096];
        let n = idle.read(&mut buf).await.expect("answered");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
        let closed = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
        let mut last = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), busy.read_to_end(&mut last))
            .await
            .expect("closed after its answer")
            .expect("read");
        let last = String::from_utf8_lossy(&last);
        assert!(last.starts_with("HTTP/1.1 200"), "{last}");
        assert!(last.contains("connection: close\r\n"), "{last}");
        assert!(last.ends_with("127.0.0.1 last fast"), "{last}");
        running.await.expect("join").expect("served");
    }

    #[tokio::test]
    async fn serves_ops_endpoints_and_problem_fallbacks() {
        let token = CancellationToken::new();
        let readiness =
            Readiness::new("test", token.clone()).with(HealthCheck::new("db", || async { Ok(()) }));
        let base = start(readiness, token.clone()).await;
        let http = reqwest::Client::new();

        let r = http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("x-request-id"));
        assert!(r.headers().contains_key("traceparent"));

        let r = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["checks"]["db"]["status"], "up");

        let _ = http
            .get(format!("{base}/v1/ping"))
            .send()
            .await
            .expect("ping");
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics");
        let text = metrics.text().await.expect("text");
        assert!(text.contains("http_requests_total"), "{text}");
        assert!(text.contains("route=\"/v1/ping\""), "{text}");

        let doc: serde_json::Value = http
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .expect("openapi")
            .json()
            .await
            .expect("json");
        assert!(doc["paths"]["/readyz"].is_object(), "{doc}");

        let r = http
            .get(format!("{base}/v1/nope"))
            .send()
            .await
            .expect("404");
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], problem::PROBLEM_JSON);
        let r = http
            .post(format!("{base}/v1/ping"))
            .send()
            .await
            .expect("405");
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["content-type"], problem::PROBLEM_JSON);
        // A panic is a 500 problem that still carries the request's id and is counted, as
        // is each later one (the second is counted through the route's kept handles).
        for _ in 0..2 {
            let r = http
                .get(format!("{base}/v1/panic"))
                .header("x-request-id", "panic-1")
                .send()
                .await
                .expect("500");
            assert_eq!(r.status(), 500);
            assert_eq!(r.headers()["content-type"], problem::PROBLEM_JSON);
            assert_eq!(r.headers()["x-request-id"], "panic-1");
        }
        let text = crate::metrics::handle().render();
        for series in [
            r#"http_requests_total{service="test",method="GET",route="/v1/panic",status="500"} 2"#,
            r#"http_request_errors_total{service="test",method="GET",route="/v1/panic",status="500"} 2"#,
            r#"http_request_duration_seconds_count{service="test",method="GET",route="/v1/panic"} 2"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        token.cancel();
    }

    #[tokio::test]
    async fn echoes_incoming_request_id_and_trace() {
        let token = CancellationToken::new();
        let base = start(Readiness::new("test", token.clone()), token.clone()).await;
        let r = reqwest::Client::new()
            .get(format!("{base}/v1/ping"))
            .header("x-request-id", "abc-123")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .send()
            .await
            .expect("ping");
        assert_eq!(r.headers()["x-request-id"], "abc-123");
        let tp = r.headers()["traceparent"].to_str().expect("ascii");
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        token.cancel();
    }

    #[tokio::test]
    async fn shutdown_drains_in_flight_requests() {
        let token = CancellationToken::new();
        let base = start(Readiness::new("test", token.clone()), token.clone()).await;
        let slow = tokio::spawn(async move {
            reqwest::get(format!("{base}/v1/slow"))
                .await
                .expect("slow")
                .text()
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
        assert_eq!(slow.await.expect("join").expect("body"), "done");
    }
}
