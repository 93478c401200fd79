//! The floor for any proxy built on hyper: a bare HTTP/1 proxy with none of the gateway's
//! work (no route table, auth, limits, retries, health, metrics or logs), serving as the
//! gateway does (a current-thread runtime per core), except that each thread has its own
//! `SO_REUSEPORT` socket where the gateway's share one and balance their connections.
//! It shows how much of the gap to nginx is hyper itself. Not a product: a measuring stick.
//!
//! Three variants, each adding one piece of how the gateway is built:
//! - [`Variant::Bare`]: hyper's HTTP/1 server hands each request to hyper's HTTP/1 client on
//!   one keep-alive upstream connection per client connection, on the same thread;
//! - [`Variant::Pooled`]: the same server, with the gateway's upstream client instead
//!   (`hyper_util`'s pooled `Client`, one pool per thread);
//! - [`Variant::Axum`]: `axum::serve` with a one-route `Router` in front of that pooled
//!   client, as the gateway served until it ran hyper's server itself (without its middleware and
//!   its own work);
//! - [`Variant::Mini`]: hyper's server with a minimal per-thread pool of hyper client
//!   connections;
//! - [`Variant::Raw`]: no hyper at all: as [`Variant::Bare`] (one upstream connection per
//!   client connection), but `httparse` reads each request and response head and the bytes
//!   go through as they came, but for the path: what a proxy's HTTP/1 path costs on Tokio
//!   without an HTTP library's types (GET requests and `Content-Length` responses only).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::response::IntoResponse as _;
use axum::routing::any;
use http::Uri;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpSocket, TcpStream};

/// Which pieces of the gateway's build the proxy has (see the module docs).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Variant {
    Bare,
    Pooled,
    Axum,
    Mini,
    Raw,
}

impl Variant {
    /// The bench's target name for this variant (its table row).
    pub fn label(self) -> &'static str {
        match self {
            Self::Bare => "floor: bare hyper, a connection per client",
            Self::Pooled => "floor: bare hyper, pooled client",
            Self::Axum => "floor: axum::serve + Router, pooled client",
            Self::Mini => "floor: bare hyper, minimal pool",
            Self::Raw => "floor: Tokio + httparse, no hyper",
        }
    }
}

/// A minimal pool: ready connections are taken, used and put back once the response head
/// arrives (a connection still streaming a body is not ready and is skipped).
#[derive(Default)]
struct MiniPool {
    conns: tokio::sync::Mutex<Vec<hyper::client::conn::http1::SendRequest<Incoming>>>,
}

impl MiniPool {
    async fn send(
        &self,
        upstream: SocketAddr,
        request: Request<Incoming>,
    ) -> anyhow::Result<Response<Incoming>> {
        let found = {
            let mut conns = self.conns.lock().await;
            conns.retain(|c| !c.is_closed());
            conns
                .iter()
                .position(hyper::client::conn::http1::SendRequest::is_ready)
                .map(|i| conns.swap_remove(i))
        };
        let mut sender = match found {
            Some(s) => s,
            None => {
                let up = TcpStream::connect(upstream).await?;
                up.set_nodelay(true)?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(up)).await?;
                tokio::spawn(conn);
                sender.ready().await?;
                sender
            }
        };
        let response = sender.send_request(request);
        let response = response.await;
        self.conns.lock().await.push(sender);
        Ok(response?)
    }
}

/// `/api/bench/<rest>` → `/v1/bench/<rest>` on `upstream` (the pooled variants' absolute URI).
fn rewrite(uri: &Uri, upstream: Option<SocketAddr>) -> anyhow::Result<Uri> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let rest = path.strip_prefix("/api/bench").unwrap_or(path);
    let uri = match upstream {
        Some(at) => format!("http://{at}/v1/bench{rest}"),
        None => format!("/v1/bench{rest}"),
    };
    uri.parse().context("rewritten path")
}

/// Serves `/api/bench/...` → `upstream` `/v1/bench/...` on one thread per core until killed,
/// after printing `port=<port>`.
pub fn serve(upstream: SocketAddr, variant: Variant) -> anyhow::Result<()> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let mut handles = Vec::new();
    for i in 0..threads {
        let bound = bound_tx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("floor-{i}"))
                .spawn(move || shard(addr, upstream, variant, &bound))?,
        );
    }
    for _ in 0..threads {
        bound_rx.recv()??;
    }
    println!("port={}", addr.port());
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a serving thread panicked"))??;
    }
    Ok(())
}

fn shard(
    addr: SocketAddr,
    upstream: SocketAddr,
    variant: Variant,
    bound: &std::sync::mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = (|| {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        })();
        let listener = match listener {
            Ok(l) => {
                let _ = bound.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = bound.send(Err(anyhow::anyhow!("bind {addr}: {e}")));
                return Err(e.into());
            }
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let pooled: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector.clone());
        if let Variant::Axum = variant {
            let client: Client<HttpConnector, axum::body::Body> =
                Client::builder(TokioExecutor::new()).build(connector);
            let app = axum::Router::new()
                .route("/{*rest}", any(axum_proxy))
                .with_state((client, upstream));
            axum::serve(listener, app).await?;
            return Ok(());
        }
        let mini = Arc::new(MiniPool::default());
        loop {
            let (client, _) = listener.accept().await?;
            let pooled = pooled.clone();
            let mini = mini.clone();
            tokio::spawn(async move {
                let served = match variant {
                    Variant::Pooled => pooled_connection(client, pooled, upstream).await,
                    Variant::Mini => mini_connection(client, mini, upstream).await,
                    Variant::Raw => raw_connection(client, upstream).await,
                    _ => connection(client, upstream).await,
                };
                if let Err(e) = served {
                    eprintln!("floor proxy connection: {e:#}");
                }
            });
        }
    })
}

async fn axum_proxy(
    State((client, upstream)): State<(Client<HttpConnector, axum::body::Body>, SocketAddr)>,
    mut request: axum::extract::Request,
) -> axum::response::Response {
    match rewrite(request.uri(), Some(upstream)) {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return http::StatusCode::BAD_REQUEST.into_response(),
    }
    match client.request(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(_) => http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// One client connection relayed by hand (see [`Variant::Raw`]), on its own upstream
/// connection.
async fn raw_connection(mut client: TcpStream, upstream: SocketAddr) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    client.set_nodelay(true)?;
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut from_client: Vec<u8> = Vec::with_capacity(4096);
    let mut from_up: Vec<u8> = Vec::with_capacity(4096);
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let request_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(n) = request.parse(&from_client)? {
                head.clear();
                let path = request.path.unwrap_or("/");
                head.extend_from_slice(request.method.unwrap_or("GET").as_bytes());
                head.extend_from_slice(b" /v1/bench");
                head.extend_from_slice(path.strip_prefix("/api/bench").unwrap_or(path).as_bytes());
                head.extend_from_slice(b" HTTP/1.1\r\n");
                for h in request.headers.iter() {
                    let body = (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
                        || h.name.eq_ignore_ascii_case("transfer-encoding");
                    anyhow::ensure!(!body, "request bodies are not relayed");
                    head.extend_from_slice(h.name.as_bytes());
                    head.extend_from_slice(b": ");
                    head.extend_from_slice(h.value);
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(b"\r\n");
                break n;
            }
            match read_more(&mut client, &mut from_client).await {
                // The client is done (wrk resets its connections at the end of a run).
                Ok(0) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        };
        from_client.drain(..request_len);
        up.write_all(&head).await?;
        let response_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = response.parse(&from_up)? {
                let body = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .context("responses without Content-Length are not relayed")?;
                break n + body;
            }
            anyhow::ensure!(
                read_more(&mut up, &mut from_up).await? > 0,
                "upstream closed"
            );
        };
        while from_up.len() < response_len {
            anyhow::ensure!(
                read_more(&mut up, &mut from_up).await? > 0,
                "upstream closed"
            );
        }
        client.write_all(&from_up[..response_len]).await?;
        from_up.drain(..response_len);
    }
}

/// Reads what `stream` has into the end of `buf`: how many bytes (0 at its end).
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt as _;
    buf.reserve(4096);
    stream.read_buf(buf).await
}

/// One client connection through the minimal pool.
async fn mini_connection(
    client: TcpStream,
    mini: Arc<MiniPool>,
    upstream: SocketAddr,
) -> anyhow::Result<()> {
    let service = service_fn(move |mut request: Request<Incoming>| {
        let mini = mini.clone();
        async move {
            *request.uri_mut() = rewrite(request.uri(), None)?;
            mini.send(upstream, request).await
        }
    });
    serve_client(client, service).await
}

/// One client connection through the shared pooled client.
async fn pooled_connection(
    client: TcpStream,
    pooled: Client<HttpConnector, Incoming>,
    upstream: SocketAddr,
) -> anyhow::Result<()> {
    let service = service_fn(move |mut request: Request<Incoming>| {
        let pooled = pooled.clone();
        async move {
            *request.uri_mut() = rewrite(request.uri(), Some(upstream))?;
            let response: Response<Incoming> = pooled.request(request).await?;
            Ok::<_, anyhow::Error>(response)
        }
    });
    serve_client(client, service).await
}

/// One client connection, with its own upstream connection.
async fn connection(client: TcpStream, upstream: SocketAddr) -> anyhow::Result<()> {
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let (sender, up_conn) = hyper::client::conn::http1::handshake(TokioIo::new(up))
        .await
        .context("upstream handshake")?;
    tokio::spawn(up_conn);
    // HTTP/1 serves one request of a connection at a time, so the lock is never contended.
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let service = service_fn(move |mut request: Request<Incoming>| {
        let sender = sender.clone();
        async move {
            *request.uri_mut() = rewrite(request.uri(), None)?;
            let mut sender = sender.lock().await;
            sender.ready().await?;
            let response: Response<Incoming> = sender.send_request(request).await?;
            Ok::<_, anyhow::Error>(response)
        }
    });
    serve_client(client, service).await
}

/// Serves HTTP/1 on one client connection with `service`.
async fn serve_client<S>(client: TcpStream, service: S) -> anyhow::Result<()>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    client.set_nodelay(true)?;
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await
        .context("client connection")
}
