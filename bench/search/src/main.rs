//! `bench-search`: queries per second and p50/p99 of `GET /v1/search` through the search
//! service, uncached and cached, side by side with the same searches sent straight to
//! OpenSearch, in one run on the real local stack (`tests/stack/stack up`).
//!
//! The service runs in this process on a loopback port with FerretDB, OpenSearch, Redis and
//! Kafka of the stack, in namespaces of its own that are deleted at the end. See
//! `bench/README.md` for what is measured and how to read it.

mod load;
mod queries;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use storefront_kit::backend::{CacheUrl, DocumentsUrl, EventsUrl, SearchIndexUrl};
use storefront_kit::server::Platform;
use storefront_search::{Settings, demo};
use storefront_tests::{Stack, load_average};

use crate::load::{Sample, Target};

#[derive(Debug, Parser)]
#[command(about = "Search service (cached, uncached) vs OpenSearch direct, on the local stack")]
struct Args {
    /// Demo products in the catalog.
    #[arg(long, default_value_t = 3_000)]
    products: usize,
    /// Distinct searches; every measured pass sends each of them once.
    #[arg(long, default_value_t = 1_500)]
    queries: usize,
    /// Closed-loop workers (requests in flight).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Measured passes per phase (direct and uncached passes alternate).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seed of the search set.
    #[arg(long, default_value_t = 4)]
    seed: u64,
}

/// Cache hits and misses the service counted (`search_cache_total` on `/metrics`).
async fn cache_counts(http: &reqwest::Client, base: &str) -> anyhow::Result<(u64, u64)> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let count = |result: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with("search_cache_total{") && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    };
    Ok((count("hit"), count("miss")))
}

struct Phase {
    name: &'static str,
    sample: Sample,
    hits: u64,
    misses: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    // --- the service on the real stack, in namespaces of its own ---------------------------
    let stack = Stack::get();
    let mongo = stack.mongo_database().await?;
    let index = stack.opensearch_index("bench-search").await?;
    let redis = stack.redis_namespace().await?;
    let topic = stack.kafka_topic("bench-catalog", 3).await?;
    let dir = tempfile::tempdir()?;
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        catalog_url: Some(DocumentsUrl::parse(&format!(
            "{}/{}",
            stack.mongodb_url.trim_end_matches('/'),
            mongo.name()
        ))?),
        index_url: Some(SearchIndexUrl::parse(&stack.opensearch_url)?),
        index_name: index.name().to_string(),
        cache_url: Some(CacheUrl::parse(&stack.redis_url)?),
        cache_prefix: redis.prefix().trim_end_matches(':').to_string(),
        events_url: Some(EventsUrl::parse(&stack.kafka_url())?),
        catalog_topic: topic.name().to_string(),
        consumer_group: format!("{}-indexer", topic.name()),
        seed_demo: true,
        demo_products: args.products,
        ..Settings::default()
    };
    let platform = Platform::new(dir.path(), Duration::from_secs(10));
    let app = storefront_search::app::build(&settings, &platform)
        .await
        .context("build the search service")?;
    let state = app.state().clone();
    let base = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(app.run_until_stopped(platform.clone()));

    let outcome = bench(&args, &base, &stack.opensearch_url, index.name(), &state).await;

    // --- stop and clean up, whatever happened ----------------------------------------------
    platform.shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    let _ = platform.shutdown.drained().await;
    for (what, cleaned) in [
        ("OpenSearch index", index.cleanup().await),
        ("Mongo database", mongo.cleanup().await),
        ("Redis keys", redis.cleanup().await),
        ("Kafka topic", topic.cleanup().await),
    ] {
        if let Err(e) = cleaned {
            eprintln!("bench-search: could not clean up the {what}: {e:#}");
        }
    }
    let errors = outcome?;
    if errors > 0 {
        bail!("{errors} requests failed (see the table)");
    }
    Ok(())
}

/// Runs every phase and prints the report; returns the number of failed requests.
async fn bench(
    args: &Args,
    base: &str,
    opensearch: &str,
    alias: &str,
    state: &storefront_search::service::AppState,
) -> anyhow::Result<u64> {
    let http = load::client(args.concurrency)?;
    let load_before = load_average();

    eprintln!(
        "bench-search: seeding {} demo products and waiting until indexed",
        args.products
    );
    let want = args.products as u64;
    storefront_tests::wait_until(Duration::from_secs(300), || {
        let http = http.clone();
        async move {
            let body: serde_json::Value = http
                .get(format!("{base}/v1/search?page_size=1"))
                .send()
                .await?
                .json()
                .await?;
            Ok((body["total"].as_u64() == Some(want)).then_some(()))
        }
    })
    .await
    .context("demo catalog indexed")?;

    let products = demo::products(demo::DEFAULT_SEED, args.products);
    let mut set = queries::build(&products, args.seed, args.queries);
    let direct = Target::Direct {
        url: format!("{}/{alias}/_search", opensearch.trim_end_matches('/')),
    };
    let service = Target::Service {
        base: base.to_string(),
    };

    // Warm-up (not measured): one direct pass, which also drops searches that ask for a page
    // past the last one (the service answers those 422, OpenSearch 200 with no hits).
    eprintln!("bench-search: warm-up over {} searches", set.len());
    let all = Arc::new(std::mem::take(&mut set));
    let probe = load::pass(&http, &direct, &all, args.concurrency).await;
    let mut warmup_errors = probe.errors;
    let mut all = Arc::try_unwrap(all).map_err(|_| anyhow::anyhow!("query set still shared"))?;
    let mut keep = probe.empty.iter().map(|e| !e);
    all.retain(|q| {
        let kept = keep.next().unwrap_or(true);
        kept || q.query.page == 1
    });
    let queries = Arc::new(all);
    let warm = load::pass(&http, &service, &queries, args.concurrency).await;
    warmup_errors += warm.errors;
    if let Some(e) = probe.first_error.or(warm.first_error) {
        eprintln!("bench-search: warm-up error: {e}");
    }

    // Direct and uncached passes alternate, so drift (other load on the machine) hits both.
    let mut phases = vec![
        Phase {
            name: "OpenSearch direct",
            sample: Sample::default(),
            hits: 0,
            misses: 0,
        },
        Phase {
            name: "service, uncached",
            sample: Sample::default(),
            hits: 0,
            misses: 0,
        },
        Phase {
            name: "service, cached",
            sample: Sample::default(),
            hits: 0,
            misses: 0,
        },
    ];
    for round in 1..=args.rounds {
        eprintln!("bench-search: round {round}/{}: direct", args.rounds);
        let s = load::pass(&http, &direct, &queries, args.concurrency).await;
        phases[0].sample.merge(s);
        eprintln!("bench-search: round {round}/{}: uncached", args.rounds);
        // A new cache generation: every key of this pass is one nobody has stored yet, so
        // each request pays the real miss path (generation, get, search, put).
        state.cache.bump().await;
        let (h0, m0) = cache_counts(&http, base).await?;
        let s = load::pass(&http, &service, &queries, args.concurrency).await;
        let (h1, m1) = cache_counts(&http, base).await?;
        phases[1].sample.merge(s);
        phases[1].hits += h1 - h0;
        phases[1].misses += m1 - m0;
    }
    // The last uncached pass filled the cache; one more unmeasured pass makes sure.
    let warm = load::pass(&http, &service, &queries, args.concurrency).await;
    warmup_errors += warm.errors;
    for round in 1..=args.rounds {
        eprintln!("bench-search: round {round}/{}: cached", args.rounds);
        let (h0, m0) = cache_counts(&http, base).await?;
        let s = load::pass(&http, &service, &queries, args.concurrency).await;
        let (h1, m1) = cache_counts(&http, base).await?;
        phases[2].sample.merge(s);
        phases[2].hits += h1 - h0;
        phases[2].misses += m1 - m0;
    }
    let load_after = load_average();

    // --- report ----------------------------------------------------------------------------
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "## bench/search — {}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!(
        "{} demo products; {} distinct searches (seed {}); {} closed-loop workers; {} measured \
         passes per phase, each sending every search once; {} cores; load average {} before, \
         {} after.\n",
        args.products,
        queries.len(),
        args.seed,
        args.concurrency,
        args.rounds,
        cores,
        load_before,
        load_after
    );
    println!(
        "| phase | requests | errors | QPS | p50 ms | p99 ms | max ms | cache hits / misses |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for p in &phases {
        let s = &p.sample;
        let cache = if p.name.starts_with("service") {
            format!("{} / {}", p.hits, p.misses)
        } else {
            "–".to_string()
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            p.name,
            s.requests(),
            s.errors,
            s.qps(),
            s.percentile_ms(50.0),
            s.percentile_ms(99.0),
            s.max_ms(),
            cache
        );
    }
    let p99_ratio = phases[1].sample.percentile_ms(99.0) / phases[0].sample.percentile_ms(99.0);
    let p50_ratio = phases[1].sample.percentile_ms(50.0) / phases[2].sample.percentile_ms(50.0);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!();
    println!(
        "- uncached p99 / direct p99 = **{p99_ratio:.2}×** (goal ≤ 1.3×: {})",
        met(p99_ratio <= 1.3)
    );
    println!(
        "- uncached p50 / cached p50 = **{p50_ratio:.1}×** (goal ≥ 5×: {})",
        met(p50_ratio >= 5.0)
    );
    println!(
        "- uncached: the cache generation is bumped before each uncached pass and every \
         search in a pass is distinct, so each request takes the real miss path (Redis \
         generation read, get, OpenSearch search, put); the hit/miss column is the service's \
         own `search_cache_total`."
    );
    let errors: u64 = phases.iter().map(|p| p.sample.errors).sum::<u64>() + warmup_errors;
    for p in &phases {
        if let Some(e) = &p.sample.first_error {
            eprintln!("bench-search: {}: first error: {e}", p.name);
        }
    }
    if warmup_errors > 0 {
        eprintln!("bench-search: {warmup_errors} warm-up requests failed");
    }
    Ok(errors)
}
