//! `bench-operator`: how long the operator takes to bring N Storefronts (100 by default) to
//! their desired state, next to `kubectl apply --server-side` of exactly the objects the
//! operator renders for the same N Storefronts, in one run against the local stack's
//! kube-apiserver; and the operator's resident memory once it holds all N.
//!
//! Both sides write into a namespace of their own on the same API server:
//! - **operator**: the real `storefront-operator` binary (a child process, so its memory is its
//!   own) watches namespace A; the clock starts before the first Storefront is created and
//!   stops when every Storefront reports `status.observedGeneration == metadata.generation`
//!   with `Degraded=False`, which the operator writes only after applying all children.
//! - **kubectl**: N Storefronts are created in namespace B first (untimed, so owner references
//!   point at real objects), their children are rendered with
//!   `storefront_operator::children::rendered_children` into one file, and the clock covers one
//!   `kubectl apply --server-side` of that file.
//!
//! Run with the stack up: `eval "$(tests/stack/stack env)"` then
//! `cargo build --release -p storefront-operator -p storefront-bench-operator &&
//!  target/release/bench-operator`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use storefront_operator::Storefront;
use storefront_operator::children::rendered_children;
use storefront_tests::{KubeNamespace, Stack, wait_until};

#[derive(Debug, Parser)]
#[command(about = "Operator convergence of N Storefronts vs kubectl apply --server-side")]
struct Args {
    /// Storefronts on each side.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// The operator binary (default: `storefront-operator` next to this executable).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Give up waiting for convergence after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

/// A small but complete Storefront: every component, two autoscaled, ingress on, no Kafka
/// (topic management is measured by the operator's cluster tests, not here).
fn storefront(name: &str) -> Value {
    json!({
        "apiVersion": "storefront.dev/v1alpha1",
        "kind": "Storefront",
        "metadata": {"name": name},
        "spec": {
            "image": {"repository": "storefront", "tag": "dev"},
            "services": {
                "gateway": {"replicas": 2},
                "search": {"autoscaling": {"minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 75}},
                "cart": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70}}
            },
            "gateway": {"ingress": {"enabled": true, "host": format!("{name}.example.test")}}
        }
    })
}

async fn install_crd(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Storefront::crd();
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply("bench-operator").force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("apply the Storefront CRD")?;
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .context("CRD not established")??;
    wait_until(Duration::from_secs(30), || async {
        Ok(client
            .list_api_group_resources("storefront.dev/v1alpha1")
            .await
            .ok()
            .filter(|l| l.resources.iter().any(|r| r.name == "storefronts")))
    })
    .await?;
    Ok(())
}

async fn create_storefronts(ns: &KubeNamespace, count: usize) -> anyhow::Result<Vec<Storefront>> {
    let api: Api<Storefront> = ns.api();
    let mut created = Vec::with_capacity(count);
    for i in 0..count {
        let obj: Storefront = serde_json::from_value(storefront(&format!("shop-{i:03}")))?;
        created.push(api.create(&PostParams::default(), &obj).await?);
    }
    Ok(created)
}

/// Storefronts whose status shows the current generation reconciled without problems.
fn converged(list: &[Storefront]) -> usize {
    list.iter()
        .filter(|sf| {
            let Some(status) = &sf.status else {
                return false;
            };
            status.observed_generation.is_some()
                && status.observed_generation == sf.metadata.generation
                && status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Degraded" && c.status == "False")
        })
        .count()
}

/// (VmRSS, VmHWM) of a process in KiB.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("{name} missing from /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct OperatorRun {
    seconds: f64,
    rss_kib: u64,
    peak_kib: u64,
}

async fn run_operator(
    stack: &Stack,
    ns: &KubeNamespace,
    args: &Args,
    binary: &PathBuf,
) -> anyhow::Result<OperatorRun> {
    let metrics = free_port()?;
    let mut child = tokio::process::Command::new(binary)
        .args([
            "run",
            "--namespace",
            ns.name(),
            "--lease-namespace",
            ns.name(),
            "--identity",
            "bench-operator",
            "--metrics-addr",
            &format!("127.0.0.1:{metrics}"),
        ])
        .env("KUBECONFIG", &stack.kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let pid = child.id().context("operator pid")?;
    // Wait until it leads: its `storefront_operator_leader` gauge turns 1.
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{metrics}/metrics");
    wait_until(Duration::from_secs(60), || async {
        let Ok(resp) = http.get(&url).send().await else {
            return Ok(None);
        };
        let text = resp.text().await.unwrap_or_default();
        Ok(text
            .lines()
            .any(|l| l.starts_with("storefront_operator_leader ") && l.ends_with(" 1"))
            .then_some(()))
    })
    .await?;
    let idle = memory_kib(pid)?;
    println!("operator leading; RSS idle {} KiB", idle.0);

    let api: Api<Storefront> = ns.api();
    let started = Instant::now();
    create_storefronts(ns, args.count).await?;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut last_print = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await?.items;
        let done = converged(&list);
        if done == args.count {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done}/{} Storefronts converged in time", args.count);
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            println!(
                "  {done}/{} converged after {:.1} s",
                args.count,
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Let it settle, then read its memory while it holds all N in its caches.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_kib, peak_kib) = memory_kib(pid)?;
    if let Some(code) = child.try_wait()? {
        bail!("the operator exited early: {code}");
    }
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(OperatorRun {
        seconds,
        rss_kib,
        peak_kib,
    })
}

async fn run_kubectl(stack: &Stack, ns: &KubeNamespace, count: usize) -> anyhow::Result<f64> {
    let created = create_storefronts(ns, count).await?;
    let issuer = storefront_kit::auth::Issuer::generate("bench", "storefront", "storefront");
    let pem = issuer.to_pkcs8_pem()?;
    // The operator also applies a ServiceMonitor where the Prometheus operator's CRD is served
    // (the stack's apiserver has it once the operator's cluster tests ran): so does this side.
    let monitors = ns
        .client()
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
        .is_ok_and(|l| l.resources.iter().any(|r| r.name == "servicemonitors"));
    let mut text = String::new();
    for sf in &created {
        let mut children = rendered_children(sf, &pem, "k-bench");
        if monitors {
            children.push(storefront_operator::children::service_monitor(sf));
        }
        for mut obj in children {
            obj["metadata"]["namespace"] = json!(ns.name());
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(&obj)?);
        }
    }
    let dir = std::env::temp_dir().join(format!("bench-operator-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("children.yaml");
    std::fs::write(&file, text)?;
    let started = Instant::now();
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&stack.kubeconfig)
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            "bench-kubectl",
            "-f",
        ])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .context("run kubectl (Debian kubernetes-client)")?;
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir)?;
    if !out.status.success() {
        bail!(
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(seconds)
}

async fn count_deployments(ns: &KubeNamespace) -> anyhow::Result<usize> {
    let api: Api<Deployment> = ns.api();
    Ok(api.list(&ListParams::default()).await?.items.len())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = match &args.operator {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("executable directory")?
            .join("storefront-operator"),
    };
    if !binary.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p storefront-operator)",
            binary.display()
        );
    }
    let stack = Stack::get();
    let client = stack.kube_client().await?;
    install_crd(&client).await?;
    println!("bench-operator: {} Storefronts per side", args.count);

    let kubectl_ns = stack.kube_namespace().await?;
    let kubectl = run_kubectl(stack, &kubectl_ns, args.count).await?;
    let kubectl_deployments = count_deployments(&kubectl_ns).await?;
    println!("kubectl apply --server-side: {kubectl:.2} s ({kubectl_deployments} Deployments)");

    let operator_ns = stack.kube_namespace().await?;
    let op = run_operator(stack, &operator_ns, &args, &binary).await?;
    let operator_deployments = count_deployments(&operator_ns).await?;
    println!(
        "operator: {:.2} s ({operator_deployments} Deployments)",
        op.seconds
    );
    if operator_deployments != kubectl_deployments {
        bail!("the two sides differ: {operator_deployments} vs {kubectl_deployments} Deployments");
    }

    let ratio = op.seconds / kubectl;
    println!();
    println!("| {} Storefronts | seconds | vs kubectl |", args.count);
    println!("|---|---:|---:|");
    println!("| kubectl apply --server-side (same objects) | {kubectl:.2} | 1.00x |");
    println!(
        "| storefront-operator (create → all converged) | {:.2} | {ratio:.2}x |",
        op.seconds
    );
    println!();
    println!(
        "operator memory at {} Storefronts: RSS {:.1} MiB, peak {:.1} MiB (goal: ≤ 50 MiB)",
        args.count,
        op.rss_kib as f64 / 1024.0,
        op.peak_kib as f64 / 1024.0
    );
    println!(
        "goal: operator ≤ 1.5x kubectl: {}; RSS ≤ 50 MiB: {}",
        if ratio <= 1.5 { "met" } else { "NOT met" },
        if op.rss_kib <= 50 * 1024 {
            "met"
        } else {
            "NOT met"
        }
    );
    operator_ns.cleanup().await?;
    kubectl_ns.cleanup().await?;
    Ok(())
}
