//! `storefront`: run any Storefront service, or all of them in one process.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use storefront::{ServiceName, Settings, run, shutdown_for};

/// mimalloc instead of glibc's allocator: a proxied request allocates often, from several
/// threads; glibc malloc was about a fifth of the gateway's CPU under load (bench/gateway).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "storefront",
    version,
    about = "Storefront: an e-commerce platform in one binary"
)]
struct Cli {
    /// Settings file (TOML, YAML or JSON); `STOREFRONT_*` environment variables override it.
    #[arg(long, short, global = true, env = "STOREFRONT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole shop in one process (embedded backends unless configured otherwise).
    Up {
        /// Where embedded backends keep their data.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Port of the gateway, where the shop is served.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run the named services in this process.
    Run {
        #[arg(required = true, value_enum)]
        services: Vec<ServiceName>,
    },
    /// Drive shopper sessions against a running shop and print a summary of rates and latencies.
    Load(storefront::load::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Load(args) => return storefront::load::main(&args),
        other => other,
    };
    let mut settings: Settings = match storefront_kit::settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("storefront: {e}");
            return ExitCode::from(2);
        }
    };
    let services: Vec<ServiceName> = match command {
        Command::Up { data_dir, port } => {
            if let Some(dir) = data_dir {
                settings.data_dir = dir;
            }
            if let Some(port) = port {
                settings.gateway.listen = format!("127.0.0.1:{port}");
            }
            settings.demo = true;
            ServiceName::ALL.to_vec()
        }
        Command::Run { mut services } => {
            services.sort();
            services.dedup();
            services
        }
        Command::Load(_) => unreachable!("handled above"),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storefront: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Outside the async runtime: the OTLP exporter runs its own thread with a blocking client.
    let _telemetry = match storefront_kit::telemetry::init(&settings.telemetry, "storefront") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("storefront: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        let shutdown = shutdown_for(&settings);
        shutdown.listen_for_signals();
        match run(&services, &settings, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("storefront: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
