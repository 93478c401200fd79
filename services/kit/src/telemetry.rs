//! Logging and tracing: a `tracing` subscriber writing JSON when stderr is not a terminal and
//! readable lines when it is, optional OTLP span export, and a test initialiser that prints only
//! with `TEST_LOG=1`.

use std::io::IsTerminal;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt};

mod span_fields;
pub use span_fields::SpanJsonFields;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON unless stderr is a terminal.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `auto`, `json` or `pretty`.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub log_level: String,
    /// OTLP/HTTP endpoint for spans, e.g. `http://otel-collector:4318/v1/traces`; off when unset.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            otlp_endpoint: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log level `{0}`")]
    Filter(String),
    #[error("cannot start the OTLP exporter: {0}")]
    Otlp(String),
    #[error("a global subscriber is already set")]
    AlreadySet,
}

/// Whether spans are exported (an OpenTelemetry layer is installed): without it, the span
/// context calls below are skipped rather than asked of a subscriber that has none, which
/// every request would pay for.
static EXPORTING: AtomicBool = AtomicBool::new(false);

fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether something besides the JSON log layer reads request spans: readable log lines (which
/// print the span), or a log filter with span directives (`[http{route=...}]=debug`).
static SPANS_READ: AtomicBool = AtomicBool::new(false);

/// Whether each request opens an `http` span: only when something reads it (export, readable
/// lines, a span filter). Otherwise the JSON log lines of a request's work take the same
/// fields from the request layer's task-local ([`span_fields::WithRequestFields`]), for a
/// fraction of a span's cost.
pub(crate) fn request_spans() -> bool {
    exporting() || SPANS_READ.load(Ordering::Relaxed)
}

/// Keeps the OTLP pipeline alive; flushes spans when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber for a binary.
pub fn init(settings: &TelemetrySettings, service: &str) -> Result<TelemetryGuard, TelemetryError> {
    // `RUST_LOG` when it is set and valid, else the setting.
    let chosen = std::env::var("RUST_LOG")
        .ok()
        .and_then(|d| log_filter(&d))
        .or_else(|| log_filter(&settings.log_level));
    let Some(chosen) = chosen else {
        return Err(TelemetryError::Filter(settings.log_level.clone()));
    };
    let spans_filtered = matches!(chosen, LogFilter::Env(_));
    let (targets, filter) = match chosen {
        LogFilter::Targets(targets) => (Some(*targets), None),
        LogFilter::Env(filter) => (None, Some(*filter)),
    };
    let json = match settings.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    if !json || spans_filtered {
        SPANS_READ.store(true, Ordering::Relaxed);
    }
    let fmt_layer: Box<dyn Layer<Registry> + Send + Sync> = if json {
        json_layer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let (otel, provider) = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service.to_owned())
                        .build(),
                )
                .build();
            let tracer = provider.tracer("storefront");
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(provider),
            )
        }
        None => (None, None),
    };
    let exports = otel.is_some();
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel)
        .with(targets)
        .with(filter)
        .try_init()
        .map_err(|_| TelemetryError::AlreadySet)?;
    if exports {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Ok(TelemetryGuard { provider })
}

/// How a log directive is applied.
#[derive(Debug)]
enum LogFilter {
    /// Levels by target alone (`info`, `info,sqlx=warn`): tracing-subscriber's `Targets`,
    /// which keeps no state per span.
    Targets(Box<Targets>),
    /// Anything else (span and field directives): `EnvFilter`, which takes a lock on every
    /// entry into and exit from a span, a few of them for each request.
    Env(Box<EnvFilter>),
}

/// `directive` as a filter; `None` when it is not a valid one.
fn log_filter(directive: &str) -> Option<LogFilter> {
    let env = EnvFilter::try_new(directive).ok()?;
    // `Targets` would read a span directive's `[span{field}]` as a target's name.
    let plain = !directive.trim().is_empty() && !directive.contains(['[', ']', '{', '}']);
    Some(match directive.parse::<Targets>() {
        Ok(targets) if plain => LogFilter::Targets(Box::new(targets)),
        _ => LogFilter::Env(Box::new(env)),
    })
}

/// The JSON log layer: one object per line, with the current span's fields under `span` (or,
/// with no span, the fields of the request whose work logs the line).
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .fmt_fields(SpanJsonFields)
        .map_event_format(span_fields::WithRequestFields)
        .with_writer(writer)
}

/// For the kit's test captures, before each installs its subscriber for its thread: tracing
/// caches whether a callsite is enabled process-wide, and while at most one dispatcher exists
/// it asks only the registering thread's. A test on another thread, with no subscriber,
/// reaching the `http` span first would then disable it for a capturing test as well (the
/// span went missing from one run in about 20). A global subscriber that takes everything
/// keeps every callsite enabled.
#[cfg(test)]
fn keep_callsites_enabled() {
    static GLOBAL: Once = Once::new();
    GLOBAL.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
}

/// For the kit's tests: what the JSON log layer writes, through this thread's default
/// subscriber.
#[cfg(test)]
pub(crate) struct CapturedLogs {
    lines: LogLines,
    _default: tracing::subscriber::DefaultGuard,
}

#[cfg(test)]
#[derive(Clone, Default)]
struct LogLines(std::sync::Arc<std::sync::RwLock<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut lines) = self.0.write() {
            lines.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl CapturedLogs {
    /// Installs the capture for this thread (a current-thread test runtime runs every task on
    /// it).
    pub fn start() -> Self {
        keep_callsites_enabled();
        let lines = LogLines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        Self {
            lines,
            _default: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The lines written so far, each parsed (a line that is not JSON fails the test).
    pub fn events(&self) -> Vec<serde_json::Value> {
        let bytes = self.lines.0.read().map(|l| l.clone()).unwrap_or_default();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// `caller` as a remote OpenTelemetry span context.
fn remote(caller: &crate::context::TraceParent) -> opentelemetry::trace::SpanContext {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let (trace_id, span_id, flags) = caller.parts();
    SpanContext::new(
        TraceId::from_bytes(trace_id),
        SpanId::from_bytes(span_id),
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    )
}

/// Makes `span`'s exported OpenTelemetry span a child of `caller` (the `traceparent` a request
/// came with, or the root the kit made up for it), so the spans of one request across services
/// form one trace with the trace id the logs carry. Nothing happens when export is off.
pub fn continue_trace(span: &tracing::Span, caller: &crate::context::TraceParent) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !exporting() {
        return;
    }
    // Only fails when no OpenTelemetry layer is installed or the span is disabled.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote(caller)));
}

/// Links `span`'s exported span to `cause` without making it its parent: work that serves
/// several traces at once (a batch of events) points at each. Nothing happens when export is
/// off.
pub fn link_trace(span: &tracing::Span, cause: &crate::context::TraceParent) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if exporting() {
        span.add_link(remote(cause));
    }
}

/// The current work's trace context as the `traceparent` of what it causes: its exported span
/// when OpenTelemetry export is on, else the kit's own context of the request or event being
/// handled ([`crate::context::within_trace`]); `None` outside both.
pub fn current_traceparent() -> Option<crate::context::TraceParent> {
    exported_span().or_else(crate::context::current_trace)
}

fn exported_span() -> Option<crate::context::TraceParent> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !exporting() {
        return None;
    }
    let current = tracing::Span::current();
    if current.is_none() {
        return None;
    }
    let cx = current.context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    crate::context::TraceParent::from_parts(
        sc.trace_id().to_bytes(),
        sc.span_id().to_bytes(),
        sc.trace_flags().to_u8(),
    )
}

/// For tests: logs go to the test's output with `TEST_LOG=1`, nowhere otherwise.
pub fn init_for_tests() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new("debug"))
                .with_test_writer()
                .try_init();
        }
    });
}

/// For the kit's tests: spans exported to memory, through this thread's default subscriber.
#[cfg(test)]
pub(crate) struct CapturedSpans {
    exporter: opentelemetry_sdk::trace::InMemorySpanExporter,
    provider: SdkTracerProvider,
    _default: tracing::subscriber::DefaultGuard,
}

#[cfg(test)]
impl CapturedSpans {
    /// Installs the capture for this thread (a current-thread test runtime runs every task on it).
    pub fn start() -> Self {
        keep_callsites_enabled();
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporterBuilder::new().build();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        // For this process from now on; threads without the capture just take the slower path.
        EXPORTING.store(true, Ordering::Relaxed);
        Self {
            exporter,
            provider,
            _default: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The spans finished so far.
    pub fn finished(&self) -> Vec<opentelemetry_sdk::trace::SpanData> {
        let _ = self.provider.force_flush();
        self.exporter.get_finished_spans().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn plain_levels_become_targets_and_span_or_field_directives_an_env_filter() {
        for plain in [
            "info",
            "warn,storefront_gateway=debug",
            "info,sqlx=warn,hyper=off",
        ] {
            assert!(
                matches!(log_filter(plain), Some(LogFilter::Targets(_))),
                "{plain}"
            );
        }
        for rich in [
            "[http]=debug",
            "info,[http{route=/v1/cart}]=trace",
            "storefront_cart[http]=debug",
            "",
        ] {
            assert!(
                matches!(log_filter(rich), Some(LogFilter::Env(_))),
                "{rich}"
            );
        }
        assert!(log_filter("info,sqlx=loud").is_none());
        let Some(LogFilter::Targets(targets)) = log_filter("info,sqlx=warn") else {
            panic!("targets");
        };
        assert!(targets.would_enable("storefront_cart", &Level::INFO));
        assert!(!targets.would_enable("storefront_cart", &Level::DEBUG));
        assert!(!targets.would_enable("sqlx::query", &Level::INFO));
        assert!(targets.would_enable("sqlx::query", &Level::WARN));
    }
}
