//! Criterion figures of the gateway's per-request operations (issue #7, bench section):
//!
//! - `limiter/governor_check_1000_keys`: one in-memory limiter check, the gateway's
//!   [`GovernorStore`] (governor's keyed GCRA), 1,000 client-IP buckets round-robin, the
//!   bucket's key cloned for the store as `limits::check` gives it one;
//! - `limiter/rule_decision_1000_keys`: the whole decision of the request path,
//!   [`limits::check`]: bucket name, store call under `storeTimeoutMs`, `RateLimit` headers;
//! - `tokens/verify_cached`: one token verification through the gateway's [`Tokens`], the same
//!   token every time (a hit in the thread's recent tokens);
//! - `tokens/verify_cache_miss`: the same call, cycling through 8,192 distinct signed tokens
//!   with a cache of 16 entries, so at most 16 / 8,192 (0.2%) can hit: a miss, the EdDSA
//!   check and the insert;
//! - `tokens/verify_refused_repeat`: the same call with one expired token every time: refused
//!   by its signature check once, then remembered as refused (a miss by its text, then a hit by its SHA-256);
//! - `tokens/verify_signature_only`: [`Tokens::verify_uncached`] (kit's `Verifier`, no cache);
//! - `redis/gcra_decision`: one cluster-wide decision, [`RedisStore`] (`EVALSHA` of the GCRA
//!   script, loopback round trip), when the local stack is up (`tests/stack/stack up`);
//!   skipped with a note otherwise.
//!
//! `cargo bench -p storefront-bench-gateway --bench ops`

use std::cell::Cell;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use storefront_gateway::adapters::memory::GovernorStore;
use storefront_gateway::adapters::redis::RedisStore;
use storefront_gateway::domain::config::LimitKey;
use storefront_gateway::domain::gcra::Gcra;
use storefront_gateway::limits::{self, Limits, Outcome, Rule};
use storefront_gateway::ports::{Checked, LimitStore};
use storefront_gateway::tokens::Tokens;
use storefront_kit::auth::Role;
use storefront_kit::auth::testing::TestIssuer;
use storefront_tests::Stack;
use tokio::runtime::Runtime;

/// The allocator of the `storefront` binary, so the figures are the shipped gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A quota far above what a benchmark can send: every check is admitted, so each iteration
/// measures the same path.
const OPEN: Gcra = Gcra {
    interval_us: 1,
    burst: 1_000_000,
};

const KEYS: usize = 1_000;
const TOKEN_POOL: usize = 8_192;
const MISS_CACHE_CAPACITY: u64 = 16;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Round-robin over `n` items.
fn next(i: &Cell<usize>, n: usize) -> usize {
    let v = i.get();
    i.set((v + 1) % n);
    v
}

fn client_ips() -> Vec<IpAddr> {
    (0..KEYS)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, (i / 256) as u8, (i % 256) as u8)))
        .collect()
}

fn limiter(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter");
    let store = GovernorStore::new(OPEN);
    let buckets: Vec<String> = client_ips()
        .iter()
        .map(|ip| format!("default:ip:{ip}"))
        .collect();
    let i = Cell::new(0);
    group.bench_function("governor_check_1000_keys", |b| {
        b.iter(|| {
            let bucket = &buckets[next(&i, KEYS)];
            // The memory store decides at once; the bucket's key is made for each request
            // (`limits::check` gives the store the one it made).
            black_box(matches!(
                store.check(black_box(bucket).clone(), OPEN),
                Checked::Now(Ok(_))
            ))
        });
    });

    let rule = Rule::new(
        "default",
        None,
        None,
        LimitKey::Ip,
        OPEN,
        Arc::new(GovernorStore::new(OPEN)),
        true,
    );
    let limits = Limits {
        enabled: true,
        ..Limits::disabled()
    };
    let ips = client_ips();
    let rt = runtime();
    let i = Cell::new(0);
    group.bench_function("rule_decision_1000_keys", |b| {
        b.to_async(&rt).iter(|| {
            let ip = ips[next(&i, KEYS)];
            let (limits, rule) = (&limits, &rule);
            async move {
                match limits::check(limits, rule, black_box(ip), None).await {
                    Outcome::Admit(fields) => black_box(fields.is_some()),
                    Outcome::Refuse(_) => panic!("the benchmark quota never refuses"),
                }
            }
        });
    });
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let mut group = c.benchmark_group("tokens");
    let rt = runtime();
    let issuer = TestIssuer::new();

    let cached = Tokens::new(issuer.verifier(), 10_000);
    let token = issuer.token("bench-user", &[Role::Customer]);
    rt.block_on(cached.verify(token.as_bytes()))
        .expect("valid token");
    group.bench_function("verify_cached", |b| {
        let (cached, token) = (&cached, &token);
        b.to_async(&rt).iter(|| async move {
            black_box(
                cached
                    .verify(black_box(token.as_bytes()))
                    .await
                    .expect("valid"),
            )
        });
    });

    // Distinct tokens (subjects differ, so signatures and hashes do), signed up front.
    let pool: Vec<String> = (0..TOKEN_POOL)
        .map(|n| issuer.token(&format!("bench-user-{n}"), &[Role::Customer]))
        .collect();
    let missing = Tokens::new(issuer.verifier(), MISS_CACHE_CAPACITY);
    let i = Cell::new(0);
    group.bench_function("verify_cache_miss", |b| {
        b.to_async(&rt).iter(|| {
            let token = &pool[next(&i, TOKEN_POOL)];
            let missing = &missing;
            async move {
                black_box(
                    missing
                        .verify(black_box(token.as_bytes()))
                        .await
                        .expect("valid"),
                )
            }
        });
    });
    assert!(
        missing.cached() <= MISS_CACHE_CAPACITY,
        "the miss cache stays bounded"
    );

    // A client stuck on an expired token: refused once by its signature check, then
    // remembered as refused.
    let expired = storefront_kit::auth::testing::negative_corpus(issuer.issuer())
        .into_iter()
        .find_map(|(name, token)| (name == "expired").then_some(token))
        .expect("the corpus has an expired token");
    group.bench_function("verify_refused_repeat", |b| {
        let (cached, expired) = (&cached, &expired);
        b.to_async(&rt).iter(|| async move {
            black_box(
                cached
                    .verify(black_box(expired.as_bytes()))
                    .await
                    .expect_err("refused"),
            )
        });
    });

    group.bench_function("verify_signature_only", |b| {
        let (cached, token) = (&cached, &token);
        b.to_async(&rt).iter(|| async move {
            black_box(
                cached
                    .verify_uncached(black_box(token))
                    .await
                    .expect("valid"),
            )
        });
    });
    group.finish();
}

fn redis(c: &mut Criterion) {
    let stack = match Stack::from_env() {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!(
                "redis/gcra_decision skipped: no local stack ({e:#}); run `tests/stack/stack up` \
                 and `eval \"$(tests/stack/stack env)\"` for this figure"
            );
            return;
        }
    };
    let rt = runtime();
    let ns = match rt.block_on(stack.redis_namespace()) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("redis/gcra_decision skipped: {e:#}");
            return;
        }
    };
    let store = RedisStore::new(
        &stack.redis_url,
        ns.prefix().trim_end_matches(':'),
        Duration::from_secs(1),
    )
    .expect("redis url");
    rt.block_on(store.check("warm".to_owned(), OPEN).decided())
        .expect("a first decision in Redis");
    let buckets: Vec<String> = (0..100).map(|n| format!("default:ip:k{n}")).collect();
    let i = Cell::new(0);
    let mut group = c.benchmark_group("redis");
    group.bench_function("gcra_decision", |b| {
        b.to_async(&rt).iter(|| {
            let bucket = &buckets[next(&i, buckets.len())];
            let store = &store;
            async move {
                black_box(
                    store
                        .check(bucket.clone(), OPEN)
                        .decided()
                        .await
                        .expect("redis answers"),
                )
            }
        });
    });
    group.finish();
    if let Err(e) = rt.block_on(ns.cleanup()) {
        eprintln!("redis cleanup: {e:#}");
    }
}

criterion_group! {
    name = ops;
    // A shared 2-core machine: enough samples for a stable median, short enough to rerun.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = limiter, tokens, redis
}
criterion_main!(ops);
