//! Closed-loop load: a fixed number of workers send a fixed list of requests, each worker
//! sending its next request as soon as the previous answer is read in full.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::queries::BenchQuery;

/// Where a pass sends its requests.
#[derive(Clone)]
pub enum Target {
    /// `POST <opensearch>/<alias>/_search` with the adapter's body.
    Direct { url: String },
    /// `GET <service>/v1/search?...`.
    Service { base: String },
}

/// What one or more passes measured.
#[derive(Default)]
pub struct Sample {
    /// Latency of every successful request.
    pub latencies: Vec<Duration>,
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Wall time of the passes.
    pub elapsed: Duration,
    /// Per query: whether its answer had no hits (direct passes only).
    pub empty: Vec<bool>,
}

impl Sample {
    pub fn requests(&self) -> u64 {
        self.latencies.len() as u64 + self.errors
    }

    pub fn qps(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile of the successful requests' latencies, in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies
            .iter()
            .max()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }

    pub fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
    }
}

struct Outcome {
    index: usize,
    result: Result<(Duration, bool), String>,
}

async fn send(
    http: &reqwest::Client,
    target: &Target,
    q: &BenchQuery,
) -> Result<(Duration, bool), String> {
    let started = Instant::now();
    let request = match target {
        Target::Direct { url } => http
            .post(url)
            .header("content-type", "application/json")
            .body(q.body.clone()),
        Target::Service { base } => http.get(format!("{base}/v1/search")).query(&q.params),
    };
    let response = request.send().await.map_err(|e| format!("{e:#}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("{e:#}"))?;
    let elapsed = started.elapsed();
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    // Only the direct probe pass looks at the answer (outside the timed part).
    let empty = matches!(target, Target::Direct { .. })
        && serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["hits"]["hits"].as_array().map(Vec::is_empty))
            .unwrap_or(false);
    Ok((elapsed, empty))
}

/// Sends every query once, in order, from `concurrency` workers.
pub async fn pass(
    http: &reqwest::Client,
    target: &Target,
    queries: &Arc<Vec<BenchQuery>>,
    concurrency: usize,
) -> Sample {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (http, target, queries, next) =
                (http.clone(), target.clone(), queries.clone(), next.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(q) = queries.get(index) else { break };
                    out.push(Outcome {
                        index,
                        result: send(&http, &target, q).await,
                    });
                }
                out
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(queries.len());
    let mut sample = Sample::default();
    for w in futures::future::join_all(workers).await {
        match w {
            Ok(o) => outcomes.extend(o),
            Err(e) => {
                sample.errors += 1;
                if sample.first_error.is_none() {
                    sample.first_error = Some(format!("worker failed: {e}"));
                }
            }
        }
    }
    sample.elapsed = started.elapsed();
    sample.empty = vec![false; queries.len()];
    for o in outcomes {
        match o.result {
            Ok((latency, empty)) => {
                sample.latencies.push(latency);
                sample.empty[o.index] = empty;
            }
            Err(e) => {
                sample.errors += 1;
                if sample.first_error.is_none() {
                    sample.first_error = Some(e);
                }
            }
        }
    }
    sample
}

/// A keep-alive client with room for every worker's connection.
pub fn client(concurrency: usize) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
}
