//! `cluster_rate`: the admitted rate of a cluster-wide rate limit (issue #7: "the admitted
//! rate of a cluster-wide limit with two replicas against its quota, goal within ±5%").
//!
//! Two gateway replicas run in this process, each a full `storefront_gateway::Application`
//! built from the same configuration file, with one `key: global` limit (`--rate` per second,
//! `--burst`) in `store: redis` (`clusterWide: true`, `failureMode: closed`) on the local
//! stack's Redis, under a key prefix of their own (`Stack::redis_namespace`). In front of one
//! tiny axum upstream. Client tasks (each one keep-alive connection) offer `--load` times the
//! quota, split between the replicas, paced by a timer, for `--duration` seconds per round.
//! Every answer is counted: 2xx admitted, 429 limited, 503 store failure, anything else.
//!
//! Over a window of `D` seconds (first request sent to last request sent) with demand above
//! the quota all along, GCRA admits the bucket (`burst`) plus one request per emission
//! interval: expected = `rate * D + burst`. The table gives admitted/s against
//! `rate + burst / D` and the error in percent. Rounds: `--rounds` with two replicas, one with
//! a single replica, and (unless `--no-memory-contrast`) one with two replicas on
//! `store: memory`, where each replica has its own budget (about twice the quota).
//!
//! `tests/stack/stack up && eval "$(tests/stack/stack env)"`, then
//! `cargo run --release -p storefront-bench-gateway --bin cluster_rate`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use clap::Parser;
use storefront_gateway::domain::config::{Limit, LimitKey, Per};
use storefront_gateway::domain::gcra::Gcra;
use storefront_gateway::{Application, Settings};
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::backend::CacheUrl;
use storefront_kit::server::Platform;
use storefront_tests::{Stack, load_average};
use tokio::time::MissedTickBehavior;

/// The allocator of the `storefront` binary, so the figures are the shipped gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Admitted rate of a cluster-wide (Redis) rate limit with two gateway replicas")]
struct Args {
    /// Quota: requests per second (one global bucket).
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Bucket size.
    #[arg(long, default_value_t = 20)]
    burst: u32,
    /// Seconds per round.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Rounds with two replicas.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Offered load as a multiple of the quota.
    #[arg(long, default_value_t = 2.5)]
    load: f64,
    /// Concurrent client tasks (one keep-alive connection each), split between the replicas.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// `storeTimeoutMs` of the limit.
    #[arg(long, default_value_t = 500)]
    store_timeout_ms: u64,
    /// Skip the round with per-replica (memory) limits.
    #[arg(long)]
    no_memory_contrast: bool,
}

async fn serve_upstream() -> anyhow::Result<SocketAddr> {
    let app = Router::new().route(
        "/v1/bench/{*rest}",
        get(|| async { ([("content-type", "application/json")], r#"{"ok":true}"#) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn config(args: &Args, upstream: SocketAddr, cluster_wide: bool) -> String {
    let store = if cluster_wide {
        "clusterWide: true\n  store: redis"
    } else {
        "clusterWide: false\n  store: memory"
    };
    format!(
        "version: 1
routes:
- {{pathPrefix: /api/bench, service: bench, upstream: \"http://{upstream}\", rewrite: /v1/bench, methods: [GET], auth: public}}
rateLimit:
  enabled: true
  {store}
  failureMode: closed
  storeTimeoutMs: {timeout}
  defaults: {{key: global, rate: {rate}, per: second, burst: {burst}}}
",
        timeout = args.store_timeout_ms,
        rate = args.rate,
        burst = args.burst,
    )
}

/// One replica on `config_path`: the gateway's own build, as `storefront` runs it.
async fn start_replica(
    config_path: &Path,
    redis_url: &str,
    prefix: &str,
    platform: &Platform,
) -> anyhow::Result<String> {
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        cache_url: Some(CacheUrl::parse(redis_url).context("redis url")?),
        cache_prefix: prefix.to_string(),
        config_path: Some(config_path.to_path_buf()),
        ..Settings::default()
    };
    // Public routes only: the verifier is never asked.
    let app = Application::build_with(&settings, platform, TestIssuer::new().verifier())
        .await
        .context("build a gateway replica")?;
    let url = format!("http://127.0.0.1:{}/api/bench/item", app.port());
    tokio::spawn(app.run_until_stopped(platform.clone()));
    Ok(url)
}

/// What one client task saw.
#[derive(Clone, Debug, Default)]
struct Tally {
    sent: u64,
    admitted: u64,
    limited: u64,
    unavailable: u64,
    other: u64,
    errors: u64,
    /// Since the round's start: first and last request sent.
    first: Option<Duration>,
    last: Duration,
    /// Since the round's start: every request sent.
    sends: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, t: &Tally) {
        self.sent += t.sent;
        self.admitted += t.admitted;
        self.limited += t.limited;
        self.unavailable += t.unavailable;
        self.other += t.other;
        self.errors += t.errors;
        self.first = match (self.first, t.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = self.last.max(t.last);
        self.sends.extend_from_slice(&t.sends);
    }

    /// What an exact GCRA (the gateway's own arithmetic, one clock) admits of these send
    /// times, and the longest gap between two requests: when the clients fall behind (a
    /// starved runtime), demand pauses, a full bucket banks nothing more, and fewer than
    /// `rate * D + burst` are admitted without any fault in the limiter.
    fn ideal(&self, gcra: Gcra) -> (u64, Duration) {
        let mut sends = self.sends.clone();
        sends.sort();
        let mut tat = None;
        let mut admitted = 0;
        for at in &sends {
            let now = u64::try_from(at.as_micros()).unwrap_or(u64::MAX);
            let (decision, next) = gcra.decide(tat, now);
            if decision.allowed {
                admitted += 1;
                tat = next;
            }
        }
        let gap = sends
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        (admitted, gap)
    }
}

/// One round: `clients` paced tasks, client `c` on `targets[c % len]`.
async fn round(args: &Args, targets: &[String]) -> anyhow::Result<(Tally, Vec<Tally>)> {
    let clients: Vec<reqwest::Client> = (0..args.clients.max(1))
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(5))
                .build()
        })
        .collect::<Result<_, _>>()?;
    // Open each keep-alive connection (these few requests count against the bucket), then give
    // the bucket time to fill up again: each round starts from a full bucket.
    for (c, client) in clients.iter().enumerate() {
        client.get(&targets[c % targets.len()]).send().await?;
    }
    let refill = Duration::from_secs_f64(f64::from(args.burst) / f64::from(args.rate.max(1)));
    tokio::time::sleep((refill * 2).max(Duration::from_secs(1))).await;

    let offered = args.load * f64::from(args.rate);
    let every = Duration::from_secs_f64(clients.len() as f64 / offered);
    let duration = Duration::from_secs(args.duration);
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let url = targets[c % targets.len()].clone();
        // Spread the clients' ticks evenly over one interval.
        let offset = every.mul_f64(c as f64 / args.clients.max(1) as f64);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut ticks = tokio::time::interval_at((start + offset).into(), every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
            loop {
                ticks.tick().await;
                let sent = start.elapsed();
                if sent >= duration {
                    break;
                }
                tally.sent += 1;
                tally.first.get_or_insert(sent);
                tally.last = sent;
                tally.sends.push(sent);
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => tally.admitted += 1,
                    Ok(r) if r.status().as_u16() == 429 => tally.limited += 1,
                    Ok(r) if r.status().as_u16() == 503 => tally.unavailable += 1,
                    Ok(_) => tally.other += 1,
                    Err(_) => tally.errors += 1,
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    let mut per_target = vec![Tally::default(); targets.len()];
    for (c, task) in tasks.into_iter().enumerate() {
        let t = task.await?;
        total.add(&t);
        per_target[c % targets.len()].add(&t);
    }
    Ok((total, per_target))
}

struct Row {
    name: String,
    /// `store: memory`: one budget per replica.
    per_replica: bool,
    tally: Tally,
    per_target: Vec<Tally>,
    load: String,
}

impl Row {
    fn window(&self) -> f64 {
        (self.tally.last - self.tally.first.unwrap_or_default()).as_secs_f64()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::from_env().context("the local stack (tests/stack/stack up)")?;
    let ns = stack.redis_namespace().await?;
    let prefix = ns.prefix().trim_end_matches(':').to_string();
    let dir = tempfile::tempdir()?;
    let platform = Platform::new(dir.path(), Duration::from_secs(2));
    let upstream = serve_upstream().await?;
    let redis_config = dir.path().join("gateway-redis.yaml");
    std::fs::write(&redis_config, config(&args, upstream, true))?;
    let one = start_replica(&redis_config, &stack.redis_url, &prefix, &platform).await?;
    let two = start_replica(&redis_config, &stack.redis_url, &prefix, &platform).await?;

    let mut plan: Vec<(String, bool, Vec<String>)> = (1..=args.rounds.max(1))
        .map(|r| {
            (
                format!("{r}: 2 replicas, redis"),
                false,
                vec![one.clone(), two.clone()],
            )
        })
        .collect();
    plan.push((
        format!("{}: 1 replica, redis", plan.len() + 1),
        false,
        vec![one.clone()],
    ));
    if !args.no_memory_contrast {
        let memory_config = dir.path().join("gateway-memory.yaml");
        std::fs::write(&memory_config, config(&args, upstream, false))?;
        let a = start_replica(&memory_config, &stack.redis_url, &prefix, &platform).await?;
        let b = start_replica(&memory_config, &stack.redis_url, &prefix, &platform).await?;
        plan.push((
            format!("{}: 2 replicas, memory (per replica)", plan.len() + 1),
            true,
            vec![a, b],
        ));
    }

    eprintln!(
        "quota {}/s burst {}, offered {:.0}/s by {} clients, {} s per round; load average {}",
        args.rate,
        args.burst,
        args.load * f64::from(args.rate),
        args.clients,
        args.duration,
        load_average()
    );
    let mut rows = Vec::new();
    for (name, per_replica, targets) in plan {
        let (tally, per_target) = round(&args, &targets).await?;
        let row = Row {
            name,
            per_replica,
            tally,
            per_target,
            load: load_average(),
        };
        eprintln!(
            "round {}: {} sent, {} admitted, {} limited, load {}",
            row.name, row.tally.sent, row.tally.admitted, row.tally.limited, row.load
        );
        rows.push(row);
    }
    platform.shutdown.trigger();
    if let Err(e) = ns.cleanup().await {
        eprintln!("redis cleanup: {e:#}");
    }

    let rate = f64::from(args.rate);
    let burst = f64::from(args.burst);
    println!(
        "\n## Cluster-wide limit: quota {} /s, burst {}, key global; offered {:.1}x the quota by {} keep-alive clients; {} s rounds\n",
        args.rate, args.burst, args.load, args.clients, args.duration
    );
    println!(
        "| round | offered/s | window s | 2xx | 429 | 503 | other | admitted/s | expected/s (rate + burst/D) | error | within ±5% | exact GCRA on the send times | error vs it | longest send gap ms | 2xx per replica | load avg |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|");
    let gcra = Gcra::from_limit(&Limit {
        key: LimitKey::Global,
        rate: args.rate,
        per: Per::Second,
        burst: args.burst,
    });
    for row in &rows {
        let d = row.window().max(f64::EPSILON);
        let t = &row.tally;
        let expected = rate * d + burst;
        let admitted = t.admitted as f64;
        let error = (admitted - expected) / expected * 100.0;
        let within = if row.per_replica {
            "n/a (budget per replica)".to_string()
        } else if error.abs() <= 5.0 {
            "yes".to_string()
        } else {
            "**no**".to_string()
        };
        let (mut ideal, gap) = t.ideal(gcra);
        if row.per_replica {
            // One budget per replica: the exact figure is the sum of the replicas' own.
            ideal = row.per_target.iter().map(|p| p.ideal(gcra).0).sum();
        }
        let ideal_error = (admitted - ideal as f64) / (ideal.max(1) as f64) * 100.0;
        let split: Vec<String> = row
            .per_target
            .iter()
            .map(|p| p.admitted.to_string())
            .collect();
        println!(
            "| {} | {:.0} | {:.2} | {} | {} | {} | {} | {:.1} | {:.1} | {:+.2}% | {} | {} | {:+.2}% | {:.1} | {} | {} |",
            row.name,
            t.sent as f64 / d,
            d,
            t.admitted,
            t.limited,
            t.unavailable,
            t.other + t.errors,
            admitted / d,
            rate + burst / d,
            error,
            within,
            ideal,
            ideal_error,
            gap.as_secs_f64() * 1000.0,
            split.join(" / "),
            row.load,
        );
    }
    Ok(())
}
