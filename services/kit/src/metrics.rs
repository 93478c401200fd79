//! Prometheus metrics: one recorder per process (so `storefront up` serves every service's
//! series, told apart by the `service` label), HTTP request count, errors and duration by
//! matched route, and the `/metrics` handler.

use std::sync::OnceLock;
use std::time::Duration;

use axum::response::IntoResponse;
use http::{HeaderValue, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus handle, installing the recorder on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".to_string()),
                LATENCY_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is already global (a test harness, an embedding program):
            // keep a private one so `/metrics` still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        keep_up(handle.clone());
        handle
    })
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Folds histogram samples into their buckets every [`UPKEEP_EVERY`], on a thread of its own.
/// The recorder keeps every sample until then, and a scrape is the only other time it does
/// this: a process nothing scraped (`storefront up` on a laptop) grew by each request's
/// durations, about 2 MB a second for the gateway under bench/gateway's load (its resident
/// size now stays at about 17 MB there).
fn keep_up(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name(UPKEEP_THREAD.into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "no metrics upkeep thread: histograms grow until scraped");
    }
}

const UPKEEP_THREAD: &str = "metrics-upkeep";

/// `GET /metrics` in the Prometheus text format.
pub async fn render() -> impl IntoResponse {
    let handle = handle();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        handle.render(),
    )
}

/// Metric handles kept after their first use, so a later use costs a read lock and a short
/// scan instead of label strings and a registry lookup. At most `max` keys are kept; past
/// them, handles are made for each use (correct, only slower).
pub(crate) struct KeptHandles<K, H> {
    seen: std::sync::RwLock<Vec<(K, H)>>,
    max: usize,
}

impl<K, H> KeptHandles<K, H> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            seen: std::sync::RwLock::default(),
            max,
        }
    }

    /// Calls `use_them` with the handles whose key `is_key` accepts, made (with their key) by
    /// `make` when there are none yet.
    pub(crate) fn with(
        &self,
        is_key: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, H),
        use_them: impl FnOnce(&H),
    ) {
        if let Ok(seen) = self.seen.read()
            && let Some((_, handles)) = seen.iter().find(|(k, _)| is_key(k))
        {
            use_them(handles);
            return;
        }
        let (key, handles) = make();
        use_them(&handles);
        if let Ok(mut seen) = self.seen.write()
            && seen.len() < self.max
            && !seen.iter().any(|(k, _)| is_key(k))
        {
            seen.push((key, handles));
        }
    }
}

/// A counter whose only varying label is `status`, keeping its handle for each status seen:
/// a count then costs no label strings and no registry lookup (the gateway counts every
/// proxied request by route and status).
pub struct StatusCounter {
    name: &'static str,
    labels: Vec<metrics::Label>,
    /// Every status may be kept: they are a small set (a gateway answers with a few dozen).
    seen: KeptHandles<u16, metrics::Counter>,
}

impl StatusCounter {
    /// `name` with the fixed `labels`; `status` is added to them.
    pub fn new(name: &'static str, labels: &[(&'static str, &str)]) -> Self {
        Self {
            name,
            labels: labels
                .iter()
                .map(|(k, v)| metrics::Label::new(*k, (*v).to_owned()))
                .collect(),
            seen: KeptHandles::new(usize::MAX),
        }
    }

    pub fn increment(&self, status: http::StatusCode) {
        let status = status.as_u16();
        self.seen.with(
            |s| *s == status,
            || {
                let mut labels = self.labels.clone();
                labels.push(metrics::Label::new("status", status.to_string()));
                (status, metrics::counter!(self.name, labels))
            },
            |counter| counter.increment(1),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_comes_with_its_upkeep_thread() {
        handle();
        let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
            .expect("/proc")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_string())
            .collect();
        assert_eq!(
            threads.iter().filter(|t| *t == UPKEEP_THREAD).count(),
            1,
            "{threads:?}"
        );
    }

    #[test]
    fn a_status_counter_counts_each_status_under_its_labels() {
        let counter = StatusCounter::new("kit_test_status_total", &[("route", "/api/x")]);
        handle();
        for status in [200, 200, 503, 200] {
            counter.increment(http::StatusCode::from_u16(status).expect("status"));
        }
        let text = handle().render();
        for series in [
            r#"kit_test_status_total{route="/api/x",status="200"} 3"#,
            r#"kit_test_status_total{route="/api/x",status="503"} 1"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
