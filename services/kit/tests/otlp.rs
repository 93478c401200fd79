//! With `telemetry.otlp_endpoint` set, spans are exported over OTLP/HTTP (protobuf) to that
//! endpoint. The receiver is a plain local HTTP server standing where a collector would.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use storefront_kit::telemetry::{LogFormat, TelemetrySettings, init};

#[derive(Clone, Default)]
struct Received {
    posts: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
    protobuf: Arc<AtomicUsize>,
}

async fn traces(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    r.posts.fetch_add(1, Ordering::SeqCst);
    r.bytes.fetch_add(body.len(), Ordering::SeqCst);
    if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-protobuf"))
    {
        r.protobuf.fetch_add(1, Ordering::SeqCst);
    }
    ""
}

#[test]
fn spans_are_exported_to_the_configured_endpoint() {
    let received = Received::default();
    let server = tokio::runtime::Runtime::new().expect("runtime");
    let addr = server.block_on(async {
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });

    let settings = TelemetrySettings {
        log_format: LogFormat::Json,
        log_level: "info".into(),
        otlp_endpoint: Some(format!("http://{addr}/v1/traces")),
    };
    let guard = init(&settings, "otlp-test").expect("telemetry");
    {
        let span = tracing::info_span!("checkout", order_id = "o-1");
        let _entered = span.enter();
        tracing::info!("inside a span");
    }
    // Dropping the guard flushes the batch.
    drop(guard);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while received.posts.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        received.posts.load(Ordering::SeqCst) >= 1,
        "no OTLP export arrived"
    );
    assert!(
        received.protobuf.load(Ordering::SeqCst) >= 1,
        "OTLP/HTTP sends protobuf"
    );
    assert!(received.bytes.load(Ordering::SeqCst) > 0);
}
