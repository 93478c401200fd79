//! The `storefront-operator` binary: `run` (the default) reconciles Storefronts
//! as one leader-elected candidate and serves `/healthz`, `/readyz` and
//! `/metrics`; `crd` prints the CRD it serves.

use std::{io::Write, net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;
use axum::{Router, routing::get};
use clap::{Args, Parser, Subcommand};
use storefront_operator::controller::{self, OperatorConfig};
use tokio_util::sync::CancellationToken;

/// Kubernetes operator for the Storefront platform.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile Storefront resources (the default).
    Run(RunArgs),
    /// Print the Storefront CRD as YAML, e.g. `storefront-operator crd | kubectl apply -f -`.
    Crd,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Watch Storefronts in this namespace only (all namespaces when unset).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "storefront-system")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "storefront-operator")]
    lease_name: String,
    /// This candidate's identity in the Lease (the pod name; host name + random suffix when unset).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease holds without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// Seconds between Lease renewals (and candidate retries).
    #[arg(long, default_value_t = 5)]
    renew_secs: u64,
    /// Bound, in seconds, on each Kafka admin request.
    #[arg(long, default_value_t = 10)]
    kafka_timeout_secs: u64,
    /// Seconds after a Storefront's deletion during which topic deletion is retried.
    #[arg(long, default_value_t = 300)]
    topic_deletion_timeout_secs: u64,
    /// Address of the `/healthz`, `/readyz` and `/metrics` server.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8090")]
    metrics_addr: SocketAddr,
}

fn identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "storefront-operator".to_owned());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let _telemetry = storefront_kit::telemetry::init(
        &storefront_kit::telemetry::TelemetrySettings::default(),
        "storefront-operator",
    )
    .context("start telemetry")?;
    let handle = storefront_kit::metrics::handle();
    let mut config =
        OperatorConfig::new(args.identity.unwrap_or_else(identity), args.lease_namespace);
    config.namespace = args.namespace;
    config.lease.name = args.lease_name;
    config.lease.lease_duration = Duration::from_secs(args.lease_duration_secs);
    config.lease.renew_every = Duration::from_secs(args.renew_secs);
    config.kafka_timeout = Duration::from_secs(args.kafka_timeout_secs);
    config.topic_deletion_timeout = Duration::from_secs(args.topic_deletion_timeout_secs);

    let client = kube::Client::try_default()
        .await
        .context("connect to Kubernetes (in-cluster config or KUBECONFIG)")?;

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("bind {}", args.metrics_addr))?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(move || async move { handle.render() }));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let stop = shutdown.clone();
        async move {
            storefront_kit::server::serve_router(
                "operator",
                listener,
                app,
                storefront_kit::server::HEADER_READ_TIMEOUT,
                stop,
            )
            .await;
        }
    });
    eprintln!(
        "storefront-operator: {} serving /healthz /readyz /metrics on http://{}",
        config.lease.identity, args.metrics_addr
    );
    tokio::spawn({
        let stop = shutdown.clone();
        async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
        }
    });
    let outcome = controller::run(client, config, shutdown.clone()).await;
    shutdown.cancel();
    let _ = server.await;
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(lost) => {
            eprintln!("storefront-operator: {lost}; exiting so a fresh candidate takes over");
            Ok(ExitCode::from(3))
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            let yaml = storefront_operator::crd_yaml()?;
            std::io::stdout().lock().write_all(yaml.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Run(args)) => runtime()?.block_on(run(args)),
        None => {
            let args = Cli::parse_from(["storefront-operator", "run"]);
            match args.command {
                Some(Command::Run(args)) => runtime()?.block_on(run(args)),
                _ => Ok(ExitCode::FAILURE),
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the Tokio runtime")
}
