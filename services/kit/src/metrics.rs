//! Prometheus metrics: one recorder per process (so `storefront up` serves every service's
//! series, told apart by the `service` label), HTTP request count, errors and duration by
//! matched route, and the `/metrics` handler.

use std::sync::OnceLock;

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
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is already global (a test harness, an embedding program):
            // keep a private one so `/metrics` still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

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

/// A counter whose only varying label is `status`, keeping its handle for each status seen:
/// a count then costs no label strings and no registry lookup (the gateway counts every
/// proxied request by route and status).
pub struct StatusCounter {
    name: &'static str,
    labels: Vec<metrics::Label>,
    seen: std::sync::RwLock<Vec<(u16, metrics::Counter)>>,
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
            seen: std::sync::RwLock::default(),
        }
    }

    pub fn increment(&self, status: http::StatusCode) {
        let status = status.as_u16();
        if let Ok(seen) = self.seen.read()
            && let Some((_, counter)) = seen.iter().find(|(s, _)| *s == status)
        {
            counter.increment(1);
            return;
        }
        let mut labels = self.labels.clone();
        labels.push(metrics::Label::new("status", status.to_string()));
        let counter = metrics::counter!(self.name, labels);
        counter.increment(1);
        // Statuses are a small set (a gateway answers with a few dozen at most).
        if let Ok(mut seen) = self.seen.write()
            && !seen.iter().any(|(s, _)| *s == status)
        {
            seen.push((status, counter));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
