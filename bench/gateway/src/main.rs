//! `bench-gateway`: requests per second and p50/p99 latency, measured by `wrk`, of one small
//! JSON endpoint reached (a) directly, (b) through nginx `proxy_pass` with keep-alive and
//! `limit_req`, forwarding the client's address, scheme and host and a request id as a
//! reverse proxy in front of services does, (c) through the gateway with no auth and no
//! limits, and (d) through the gateway with JWT verification (cached) and a per-user rate
//! limit on, (e)-(i) through five bare proxies, the floor under the gateway (`floor.rs`), (j)
//! through a second nginx identical to (b), an A/A check of the measurement itself, and (k)
//! through nginx as (b) but forwarding none of those fields, with each target's CPU time a
//! request split between the proxy, the upstream and wrk (`cpu.rs`); then per-operation
//! figures of the limiter and of token verification (cached and uncached), and of one Redis
//! GCRA decision when `STOREFRONT_TEST_REDIS_URL` is set.
//!
//! Everything runs on this machine: the upstream in this process; nginx, wrk and each gateway
//! as child processes (`apt-get install -y nginx wrk`; a gateway is this binary re-run with
//! the hidden `--serve-gateway`, so it has its own runtime and process like nginx does). See
//! `bench/gateway/README.md`.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::routing::get;
use clap::Parser;
use jsonwebtoken::jwk::JwkSet;
use storefront_gateway::adapters::memory::GovernorStore;
use storefront_gateway::adapters::redis::RedisStore;
use storefront_gateway::domain::gcra::Gcra;
use storefront_gateway::ports::LimitStore;
use storefront_gateway::tokens::Tokens;
use storefront_gateway::{Application, Settings};
use storefront_kit::auth::{Issuer, Role, Verifier};
use storefront_kit::server::Platform;
use storefront_tests::load_average;
use tokio::io::AsyncBufReadExt as _;

mod callgrind;
mod cpu;
mod floor;

use callgrind::Callgrind;

#[derive(Debug, Parser)]
#[command(about = "Upstream direct vs nginx vs the Storefront gateway, measured with wrk")]
struct Args {
    /// Seconds per measured wrk run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Open connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// nginx worker processes.
    #[arg(long, default_value_t = 2)]
    nginx_workers: u32,
    /// Measure only these targets (1-based, e.g. `--only 3,4`); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<usize>,
    /// Rounds over all targets; figures are medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip the per-operation figures.
    #[arg(long)]
    no_micro: bool,
    /// Run each proxy under valgrind's callgrind and report the instructions it executes per
    /// request (about 50 times slower: the req/s and latencies are then not the proxies').
    #[arg(long)]
    callgrind: bool,
    /// With `--callgrind`: keep each measured run's profile in this directory
    /// (`callgrind.out.<pid>.<n>`, for `callgrind_annotate`), not in a temporary one.
    #[arg(long)]
    callgrind_dir: Option<std::path::PathBuf>,
    /// With `--callgrind`: simulate the first-level caches too and report each proxy's
    /// instruction and data cache misses per request.
    #[arg(long, requires = "callgrind")]
    cache_sim: bool,
    /// Internal: serve a gateway with this configuration file (a child of the benchmark).
    #[arg(long, hide = true)]
    serve_gateway: Option<std::path::PathBuf>,
    /// Internal: serve the bare hyper proxy (`floor.rs`) in front of this upstream address.
    #[arg(long, hide = true)]
    serve_gateway_floor: Option<SocketAddr>,
    /// Internal: which floor variant to serve.
    #[arg(long, hide = true, value_enum, default_value_t = floor::Variant::Bare)]
    floor_variant: floor::Variant,
    /// Internal: the PKCS#8 PEM of the issuer whose tokens the served gateway accepts.
    #[arg(long, hide = true)]
    issuer_key: Option<std::path::PathBuf>,
}

const BODY: &str = r#"{"id":"0190a8f2-7c3e-7000-8000-000000000001","title":"Wireless headphones","price":{"minor":12900,"currency":"EUR"},"stock":7}"#;

async fn serve_upstream() -> anyhow::Result<SocketAddr> {
    let app = Router::new().route(
        "/v1/bench/{*rest}",
        get(|| async { ([("content-type", "application/json")], BODY) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Nginx {
    child: tokio::process::Child,
    port: u16,
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers too (SIGKILL would orphan them).
    fn drop(&mut self) {
        terminate(&self.child);
    }
}

/// Sends SIGTERM to `child` unless it was reaped already; its pid when sent.
fn terminate(child: &tokio::process::Child) -> Option<u32> {
    let pid = child.id()?;
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    Some(pid)
}

/// `program`, under callgrind when it is given.
fn proxy_command(
    callgrind: Option<&Callgrind>,
    program: impl AsRef<OsStr>,
) -> tokio::process::Command {
    match callgrind {
        Some(c) => c.command(program),
        None => tokio::process::Command::new(program),
    }
}

/// The nginx targets' names: (b), the reference; (j), the same again (A/A); (k), nginx
/// forwarding nothing of its own.
const NGINX: &str = "nginx proxy_pass + limit_req";
const NGINX_AGAIN: &str = "nginx again: a second, identical nginx (A/A)";
const NGINX_BARE: &str = "nginx, bare: proxy_pass + limit_req, no forwarded fields";

/// What an nginx target sends the upstream besides the client's request.
#[derive(Clone, Copy)]
enum Fields {
    /// What a reverse proxy in front of services forwards, the same fields the gateway
    /// forwards that nginx has without modules: the client's address, scheme and host, and a
    /// request id (the client's, else a new one), which the response also carries.
    Forwarded,
    /// Nothing: `proxy_pass` as it comes (the reference of the stops before 2026-11-29).
    Bare,
}

async fn start_nginx(
    dir: &Path,
    upstream: SocketAddr,
    workers: u32,
    fields: Fields,
    callgrind: Option<&Callgrind>,
) -> anyhow::Result<Nginx> {
    let port = free_port()?;
    let d = dir.display();
    let (request_id, forwarded) = match fields {
        Fields::Forwarded => (
            "map $http_x_request_id $storefront_request_id {\n    default $http_x_request_id;\n    \"\" $request_id;\n  }",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
             proxy_set_header X-Forwarded-Proto $scheme;\n      \
             proxy_set_header X-Forwarded-Host $host;\n      \
             proxy_set_header X-Request-ID $storefront_request_id;\n      \
             add_header X-Request-ID $storefront_request_id always;",
        ),
        Fields::Bare => ("", ""),
    };
    // Under callgrind nginx serves in its one process: callgrind_control cannot reach the
    // workers a master forks, and one worker executes the same instructions per request.
    let processes = if callgrind.is_some() {
        "master_process off;".to_string()
    } else {
        format!("worker_processes {workers};")
    };
    let conf = format!(
        r#"user root;
{processes}
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  limit_req_zone $binary_remote_addr zone=perip:10m rate=1000000r/s;
  {request_id}
  upstream app {{
    server {upstream};
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location /api/bench/ {{
      limit_req zone=perip burst=1000000 nodelay;
      proxy_pass http://app/v1/bench/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {forwarded}
    }}
  }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let child = proxy_command(callgrind, "nginx")
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start nginx (apt-get install -y nginx)")?;
    wait_for(&format!("http://127.0.0.1:{port}/api/bench/x")).await?;
    Ok(Nginx { child, port })
}

async fn wait_for(url: &str) -> anyhow::Result<()> {
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    // Up to 30 s: a proxy under callgrind starts slowly.
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} never came up")
}

/// A gateway in a process of its own (this binary with `--serve-gateway`); stopped on drop.
struct GatewayProcess {
    child: tokio::process::Child,
    port: u16,
}

impl Drop for GatewayProcess {
    /// SIGTERM, then up to 5 s for the process to end: a gateway drains and returns from
    /// `main`, which is when a build instrumented for profile-guided optimisation writes its
    /// profile. One still running after that is killed (`kill_on_drop`).
    fn drop(&mut self) {
        let Some(pid) = terminate(&self.child) else {
            return;
        };
        for _ in 0..100 {
            if !cpu::running(pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts a gateway process in front of `upstream`: a public route with no limits, or
/// (`secured`) an authenticated route with a per-user in-memory limit far above the load.
async fn start_gateway(
    dir: &Path,
    upstream: SocketAddr,
    secured: bool,
    issuer_key: &Path,
    callgrind: Option<&Callgrind>,
) -> anyhow::Result<GatewayProcess> {
    let (auth, limits) = if secured {
        (
            "authenticated",
            "rateLimit:\n  enabled: true\n  store: memory\n  defaults: {key: user, rate: 1000000, per: second, burst: 1000000}\n",
        )
    } else {
        ("public", "rateLimit: {enabled: false}\n")
    };
    let config = format!(
        "version: 1\nroutes:\n- {{pathPrefix: /api/bench, service: bench, upstream: \"http://{upstream}\", rewrite: /v1/bench, methods: [GET], auth: {auth}}}\n{limits}"
    );
    let path = dir.join(format!("gateway-{secured}.yaml"));
    std::fs::write(&path, config)?;
    // `BENCH_GATEWAY_SERVE_BIN`: the gateways from another build of this benchmark (one
    // optimised with a profile, say), everything else from this one.
    let program = match std::env::var_os("BENCH_GATEWAY_SERVE_BIN") {
        Some(bin) => std::path::PathBuf::from(bin),
        None => std::env::current_exe()?,
    };
    let mut command = proxy_command(callgrind, program);
    command
        .arg("--serve-gateway")
        .arg(&path)
        .arg("--issuer-key")
        .arg(issuer_key);
    spawn_server(command).await
}

/// Starts a bare hyper proxy (`floor.rs`) in front of `upstream`, in a process of its own.
async fn start_floor(
    upstream: SocketAddr,
    variant: floor::Variant,
    callgrind: Option<&Callgrind>,
) -> anyhow::Result<GatewayProcess> {
    let name =
        clap::ValueEnum::to_possible_value(&variant).context("a floor variant without a name")?;
    let mut command = proxy_command(callgrind, std::env::current_exe()?);
    command
        .arg("--serve-gateway-floor")
        .arg(upstream.to_string())
        .arg("--floor-variant")
        .arg(name.get_name());
    spawn_server(command).await
}

/// Runs `command`, a child that prints `port=<port>` once it serves.
async fn spawn_server(mut command: tokio::process::Command) -> anyhow::Result<GatewayProcess> {
    let mut child = command
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start a proxy process")?;
    let stdout = child.stdout.take().context("proxy stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the proxy process did not report its port")??
        .context("the proxy process exited")?;
    let port = line
        .strip_prefix("port=")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("unexpected first line from the proxy process: {line}"))?;
    Ok(GatewayProcess { child, port })
}

/// The child side: serves one gateway (config file, tokens of the issuer in `issuer_key`)
/// until killed, after printing `port=<port>`.
async fn serve_gateway(config: std::path::PathBuf, issuer_key: &Path) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(issuer_key)?;
    let issuer = Issuer::from_pkcs8_pem("bench", "storefront", "storefront", &pem)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let verifier = Verifier::new(
        "storefront",
        "storefront",
        None,
        JwkSet {
            keys: vec![issuer.jwk()],
        },
    );
    let dir = tempfile::tempdir()?;
    let platform = Platform::new(dir.path(), Duration::from_secs(2));
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        config_path: Some(config),
        ..Settings::default()
    };
    let app = Application::build_with(&settings, &platform, verifier).await?;
    // Stopped by SIGTERM (see `GatewayProcess`'s drop), drained as `storefront run` drains.
    platform.shutdown.listen_for_signals();
    println!("port={}", app.port());
    app.run_until_stopped(platform).await?;
    Ok(())
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of each figure over runs of one target.
fn median(runs: &[Run]) -> Run {
    Run {
        name: runs[0].name,
        rps: median_of(runs.iter().map(|r| r.rps).collect()),
        p50_ms: median_of(runs.iter().map(|r| r.p50_ms).collect()),
        p99_ms: median_of(runs.iter().map(|r| r.p99_ms).collect()),
        non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
        requests: runs.iter().map(|r| r.requests).sum(),
        instructions: runs
            .iter()
            .map(|r| r.instructions)
            .collect::<Option<Vec<f64>>>()
            .map(median_of),
        cache_misses: runs
            .iter()
            .map(|r| r.cache_misses)
            .collect::<Option<Vec<(f64, f64)>>>()
            .map(|m| {
                (
                    median_of(m.iter().map(|m| m.0).collect()),
                    median_of(m.iter().map(|m| m.1).collect()),
                )
            }),
        cpu: runs
            .iter()
            .map(|r| r.cpu)
            .collect::<Option<Vec<cpu::PerRequest>>>()
            .map(|cpu| {
                let of = |f: fn(&cpu::PerRequest) -> f64| median_of(cpu.iter().map(f).collect());
                cpu::PerRequest {
                    proxy_user: of(|c| c.proxy_user),
                    proxy_system: of(|c| c.proxy_system),
                    upstream: of(|c| c.upstream),
                    wrk: of(|c| c.wrk),
                }
            }),
    }
}

/// One wrk result.
struct Run {
    name: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    /// Requests wrk completed.
    requests: u64,
    /// Instructions the proxy executed per request (`--callgrind`).
    instructions: Option<f64>,
    /// First-level instruction and data cache misses per request (`--cache-sim`).
    cache_misses: Option<(f64, f64)>,
    /// CPU time a request by who spent it (not under `--callgrind`).
    cpu: Option<cpu::PerRequest>,
}

fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, factor) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * factor)
}

fn parse_wrk(name: &'static str, out: &str) -> anyhow::Result<Run> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut requests = None;
    for line in out.lines() {
        let t = line.trim();
        if let Some((n, _)) = t.split_once(" requests in ") {
            requests = n.trim().parse::<u64>().ok();
        } else if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = parse_duration_ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = parse_duration_ms(v);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    match (rps, p50, p99, requests) {
        (Some(rps), Some(p50_ms), Some(p99_ms), Some(requests)) => Ok(Run {
            name,
            rps,
            p50_ms,
            p99_ms,
            non_2xx,
            requests,
            instructions: None,
            cache_misses: None,
            cpu: None,
        }),
        _ => bail!("cannot read wrk output:\n{out}"),
    }
}

async fn wrk(
    args: &Args,
    name: &'static str,
    url: &str,
    token: &str,
    seconds: u64,
) -> anyhow::Result<Run> {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency");
    if args.callgrind {
        // A proxy under callgrind answers in tens of milliseconds; wrk's 2 s default would
        // drop requests still being answered.
        cmd.arg("--timeout").arg("30s");
    }
    cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
    let out = cmd
        .arg(url)
        .output()
        .await
        .context("run wrk (apt-get install -y wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(name, &String::from_utf8_lossy(&out.stdout))
}

/// Mean time of `op` over `n` runs.
async fn per_op<F, Fut>(n: u32, mut op: F) -> Duration
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    let started = Instant::now();
    for i in 0..n {
        op(i).await;
    }
    started.elapsed() / n
}

/// The allocator the `storefront` binary uses, so the in-process gateway runs as it ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(upstream) = args.serve_gateway_floor {
        return floor::serve(upstream, args.floor_variant);
    }
    if let Some(config) = args.serve_gateway.clone() {
        let key = args.issuer_key.clone().context("--issuer-key")?;
        // What `storefront run gateway` installs: the log subscriber at `info` (so every
        // request opens its `http` span, as in production), then its multi-threaded runtime,
        // in which the gateway starts its serving threads.
        let _telemetry = storefront_kit::telemetry::init(
            &storefront_kit::telemetry::TelemetrySettings::default(),
            "storefront",
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve_gateway(config, &key));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let upstream = serve_upstream().await?;
    let platform = Platform::new(dir.path(), Duration::from_secs(2));
    let issuer = Issuer::generate("bench", "storefront", "storefront");
    let verifier = || {
        Verifier::new(
            "storefront",
            "storefront",
            None,
            JwkSet {
                keys: vec![issuer.jwk()],
            },
        )
    };
    let token = issuer
        .token("bench-user", &[Role::Customer], Duration::from_secs(3600))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let issuer_key = dir.path().join("issuer.pem");
    std::fs::write(
        &issuer_key,
        issuer.to_pkcs8_pem().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    let callgrind = args.callgrind.then(|| Callgrind {
        dir: args
            .callgrind_dir
            .clone()
            .unwrap_or_else(|| dir.path().to_path_buf()),
        cache_sim: args.cache_sim,
    });
    let cg = callgrind.as_ref();
    let nginx = start_nginx(
        dir.path(),
        upstream,
        args.nginx_workers,
        Fields::Forwarded,
        cg,
    )
    .await?;
    // The same nginx again, in a directory of its own: the last target, an A/A check of how
    // far two identical proxies measured in one run differ on this machine.
    let again = dir.path().join("nginx-again");
    std::fs::create_dir_all(&again)?;
    let nginx_again =
        start_nginx(&again, upstream, args.nginx_workers, Fields::Forwarded, cg).await?;
    let bare = dir.path().join("nginx-bare");
    std::fs::create_dir_all(&bare)?;
    let nginx_bare = start_nginx(&bare, upstream, args.nginx_workers, Fields::Bare, cg).await?;
    let plain_gw = start_gateway(dir.path(), upstream, false, &issuer_key, cg).await?;
    let secured_gw = start_gateway(dir.path(), upstream, true, &issuer_key, cg).await?;
    let mut floors = Vec::new();
    for &variant in <floor::Variant as clap::ValueEnum>::value_variants() {
        floors.push((variant, start_floor(upstream, variant, cg).await?));
    }
    let (plain, secured) = (plain_gw.port, secured_gw.port);
    let pid = |p: &GatewayProcess| p.child.id().into_iter().collect::<Vec<u32>>();
    // An nginx's master: under callgrind the one process that serves (and is counted), else
    // the parent of the workers that serve (whose CPU time is counted).
    let nginx_pid = |n: &Nginx| n.child.id().into_iter().collect::<Vec<u32>>();
    let ticks_per_second = cpu::ticks_per_second()?;

    // Each target: its name, URL and the processes that serve it (none for the upstream, which
    // is this process). Every target gets the same requests, the bearer token included: a
    // proxy that does not check it (nginx, the gateway without auth, the floors) reads and
    // forwards its header as any other, as it would in front of the same clients.
    let targets: [(&'static str, String, Vec<u32>); 4] = [
        (
            "upstream direct",
            format!("http://{upstream}/v1/bench/item"),
            Vec::new(),
        ),
        (
            NGINX,
            format!("http://127.0.0.1:{}/api/bench/item", nginx.port),
            nginx_pid(&nginx),
        ),
        (
            "gateway, no auth, no limits",
            format!("http://127.0.0.1:{plain}/api/bench/item"),
            pid(&plain_gw),
        ),
        (
            "gateway, JWT + rate limit",
            format!("http://127.0.0.1:{secured}/api/bench/item"),
            pid(&secured_gw),
        ),
    ];
    let targets: Vec<(&'static str, String, Vec<u32>)> = targets
        .into_iter()
        .chain(floors.iter().map(|(variant, floor)| {
            (
                variant.label(),
                format!("http://127.0.0.1:{}/api/bench/item", floor.port),
                pid(floor),
            )
        }))
        .chain(std::iter::once((
            NGINX_AGAIN,
            format!("http://127.0.0.1:{}/api/bench/item", nginx_again.port),
            nginx_pid(&nginx_again),
        )))
        .chain(std::iter::once((
            NGINX_BARE,
            format!("http://127.0.0.1:{}/api/bench/item", nginx_bare.port),
            nginx_pid(&nginx_bare),
        )))
        .collect();
    // Rounds alternate the targets, so a burst of load elsewhere on the machine hits them
    // alike, and each round starts one target later than the one before, so no target always
    // runs in the same place (right after another, say); each figure is the median over the
    // rounds.
    let mut samples: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
    let measured: Vec<usize> = (0..targets.len())
        .filter(|i| args.only.is_empty() || args.only.contains(&(i + 1)))
        .collect();
    for round in 0..args.rounds.max(1) {
        for k in 0..measured.len() {
            let i = measured[(k + round) % measured.len()];
            let (name, url, pids) = &targets[i];
            // Warm up connections and caches, then measure.
            wrk(&args, name, url, &token, 1).await?;
            let counted = callgrind.as_ref().filter(|_| !pids.is_empty());
            if let Some(c) = counted {
                c.zero(pids).await?;
            }
            let mark = cpu::Mark::now(pids);
            let mut run = wrk(&args, name, url, &token, args.duration).await?;
            if callgrind.is_none() {
                run.cpu = Some(mark.per_request(run.requests, ticks_per_second));
            }
            if let Some(c) = counted {
                let counters = c.counters(pids).await?;
                let per_request = |n: u64| n as f64 / run.requests.max(1) as f64;
                run.instructions = Some(per_request(counters.instructions));
                run.cache_misses = counters
                    .l1i_misses
                    .zip(counters.l1d_misses)
                    .map(|(i, d)| (per_request(i), per_request(d)));
                c.dump(pids).await?;
                eprintln!(
                    "round {}: {name}: profile of process {pids:?} in {}",
                    round + 1,
                    c.dir.display()
                );
            }
            eprintln!("round {}: {name}: {:.0} req/s", round + 1, run.rps);
            samples[i].push(run);
        }
    }
    let runs: Vec<Run> = samples
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| median(&s))
        .collect();
    drop((nginx, nginx_again, nginx_bare));
    drop((plain_gw, secured_gw, floors));

    println!(
        "\n## wrk: {} thread(s), {} connections, median of {} rounds of {} s per target (nginx: {} workers)\n",
        args.threads, args.connections, args.rounds, args.duration, args.nginx_workers
    );
    if args.callgrind {
        println!(
            "Under callgrind: req/s and latencies are callgrind's, not the proxies'; instructions are user space only.\n"
        );
        if args.cache_sim {
            println!(
                "Cache misses are callgrind's simulation of this CPU's first-level caches (no prefetching).\n"
            );
            println!(
                "| target | instructions / request | L1i misses / request | L1d misses / request | requests | req/s |"
            );
            println!("|---|---:|---:|---:|---:|---:|");
        } else {
            println!("| target | instructions / request | requests | req/s |");
            println!("|---|---:|---:|---:|");
        }
        for r in &runs {
            let per = r.instructions.map_or("".into(), |n| format!("{n:.0}"));
            let misses = r
                .cache_misses
                .map_or("".into(), |(i, d)| format!(" {i:.0} | {d:.0} |"));
            println!(
                "| {} | {per} |{misses} {} | {:.0} |",
                r.name, r.requests, r.rps
            );
        }
    } else {
        println!("| target | req/s | p50 ms | p99 ms | req/s vs direct | non-2xx |");
        println!("|---|---:|---:|---:|---:|---:|");
        let direct = runs.first().map(|r| r.rps).unwrap_or(1.0);
        for r in &runs {
            println!(
                "| {} | {:.0} | {:.3} | {:.3} | {:.2} | {} |",
                r.name,
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.rps / direct,
                r.non_2xx
            );
        }
        println!(
            "\n## CPU µs a request, by who spent it (medians; the upstream is this process, wrk its child)\n"
        );
        println!("| target | proxy | proxy user | proxy system | upstream | wrk | all |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for r in &runs {
            if let Some(c) = r.cpu {
                println!(
                    "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    r.name,
                    c.proxy(),
                    c.proxy_user,
                    c.proxy_system,
                    c.upstream,
                    c.wrk,
                    c.all()
                );
            }
        }
    }
    let run = |name: &str| runs.iter().find(|r| r.name == name);
    if let (Some(first), Some(again)) = (run(NGINX), run(NGINX_AGAIN)) {
        if let (Some(n), Some(a)) = (first.instructions, again.instructions) {
            println!(
                "\nA/A, the second nginx / the first: {:.2}x instructions per request",
                a / n
            );
        } else {
            println!(
                "\nA/A, the second nginx / the first: {:.2}x req/s, p99 {:.2}x",
                again.rps / first.rps,
                again.p99_ms / first.p99_ms
            );
        }
    }
    for (nginx, which) in [(run(NGINX), "nginx"), (run(NGINX_BARE), "bare nginx")] {
        let (Some(nginx), Some(gw)) = (nginx, runs.iter().find(|r| r.name.contains("JWT"))) else {
            continue;
        };
        if let (Some(n), Some(g)) = (nginx.instructions, gw.instructions) {
            println!(
                "\ngateway (JWT + limits) / {which}: {:.2}x instructions per request",
                g / n
            );
            if let (Some((ni, nd)), Some((gi, gd))) = (nginx.cache_misses, gw.cache_misses) {
                println!(
                    "gateway (JWT + limits) / {which}: {:.2}x L1i misses, {:.2}x L1d misses per request",
                    gi / ni,
                    gd / nd
                );
            }
        } else {
            println!(
                "\ngateway (JWT + limits) / {which}: {:.2}x req/s, p99 {:.2}x",
                gw.rps / nginx.rps,
                gw.p99_ms / nginx.p99_ms
            );
        }
    }

    if args.no_micro {
        platform.shutdown.trigger();
        return Ok(());
    }
    // Per-operation figures.
    let gcra = Gcra {
        interval_us: 1,
        burst: 1_000_000,
    };
    let store = GovernorStore::new(gcra);
    let keys: Vec<String> = (0..1_000)
        .map(|i| format!("default:ip:10.0.{}.{}", i / 256, i % 256))
        .collect();
    let limiter = per_op(200_000, |i| {
        let store = &store;
        let key = &keys[i as usize % keys.len()];
        async move {
            let _ = store.check(key.clone(), gcra).decided().await;
        }
    })
    .await;
    let tokens = Tokens::new(verifier(), 10_000);
    tokens
        .verify(token.as_bytes())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cached = per_op(100_000, |_| {
        let (tokens, token) = (&tokens, &token);
        async move {
            let _ = tokens.verify(token.as_bytes()).await;
        }
    })
    .await;
    let uncached = per_op(5_000, |_| {
        let (tokens, token) = (&tokens, &token);
        async move {
            let _ = tokens.verify_uncached(token).await;
        }
    })
    .await;
    println!("\n## Per operation (mean, one task)\n");
    println!("| operation | time |");
    println!("|---|---:|");
    println!(
        "| in-memory limiter check (governor, 1000 keys) | {:.0} ns |",
        limiter.as_nanos()
    );
    println!(
        "| token verification, cached (moka) | {:.0} ns |",
        cached.as_nanos()
    );
    println!(
        "| token verification, uncached (EdDSA) | {:.1} µs |",
        uncached.as_nanos() as f64 / 1000.0
    );
    if let Ok(url) = std::env::var("STOREFRONT_TEST_REDIS_URL") {
        let redis = RedisStore::new(&url, "bench-gateway", Duration::from_secs(1))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let g = Gcra {
            interval_us: 1,
            burst: 1_000_000,
        };
        redis
            .check("warm".to_owned(), g)
            .decided()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let one = per_op(5_000, |i| {
            let redis = &redis;
            let key = format!("k{}", i % 100);
            async move {
                let _ = redis.check(key, g).decided().await;
            }
        })
        .await;
        println!(
            "| Redis GCRA decision (EVALSHA round trip) | {:.1} µs |",
            one.as_nanos() as f64 / 1000.0
        );
    }
    println!("\nload average after the run: {}", load_average());
    platform.shutdown.trigger();
    Ok(())
}
