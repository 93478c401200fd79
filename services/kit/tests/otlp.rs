//! With `telemetry.otlp_endpoint` set, spans are exported over OTLP/HTTP (protobuf) to that
//! endpoint, and one request across two services arrives as one trace, each hop under the one
//! that called it. The receiver is a plain local HTTP server standing where a collector would;
//! it decodes what arrives with the OpenTelemetry protocol's own message types.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use storefront_kit::client::{ClientSettings, RestClient};
use storefront_kit::context::RequestContext;
use storefront_kit::health::Readiness;
use storefront_kit::server::{HttpServer, Service};
use storefront_kit::telemetry::{LogFormat, TelemetrySettings, init};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::OpenApi;

/// What the receiver keeps of a span: name, the `service` attribute, and the three ids.
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    service: Option<String>,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

type Spans = Arc<Mutex<Vec<Seen>>>;

#[derive(Clone, Default)]
struct Received {
    spans: Spans,
    protobuf_posts: Arc<AtomicUsize>,
}

async fn traces(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-protobuf"))
    {
        r.protobuf_posts.fetch_add(1, Ordering::SeqCst);
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return "";
    };
    let mut spans = r.spans.lock().await;
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let service = span.attributes.iter().find_map(|kv| {
                    (kv.key == "service").then(|| match kv.value.as_ref()?.value.as_ref()? {
                        AnyValue::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })?
                });
                spans.push(Seen {
                    name: span.name,
                    service,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                });
            }
        }
    }
    ""
}

fn service(name: &'static str, router: Router) -> Service {
    Service {
        name,
        router,
        openapi: OpenApi::default(),
        readiness: Readiness::new(name, CancellationToken::new()),
    }
}

#[test]
fn a_request_through_two_services_is_one_trace_with_each_hop_under_its_caller() {
    let received = Received::default();
    let spans = received.spans.clone();
    let receiver = tokio::runtime::Runtime::new().expect("runtime");
    let collector = receiver.block_on(async {
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
    let guard = init(
        &TelemetrySettings {
            log_format: LogFormat::Json,
            log_level: "info".into(),
            otlp_endpoint: Some(format!("http://{collector}/v1/traces")),
        },
        "otlp-traces-test",
    )
    .expect("telemetry");

    let services = tokio::runtime::Runtime::new().expect("runtime");
    services.block_on(async {
        let stop = CancellationToken::new();
        // `back` answers; `front` calls it through the typed client.
        let back = HttpServer::bind(
            "127.0.0.1:0",
            service(
                "back",
                Router::new().route(
                    "/v1/back",
                    get(|| async { Json(serde_json::json!({"ok": true})) }),
                ),
            ),
        )
        .await
        .expect("bind back");
        let client = RestClient::new(
            "back",
            &format!("http://{}", back.local_addr()),
            ClientSettings::default(),
        )
        .expect("client");
        tokio::spawn(back.run(stop.clone()));
        let front = HttpServer::bind(
            "127.0.0.1:0",
            service(
                "front",
                Router::new()
                    .route(
                        "/v1/front",
                        get(
                            |State(client): State<RestClient>, ctx: RequestContext| async move {
                                let answer: serde_json::Value =
                                    client.get_json(&ctx, "/v1/back").await.expect("back");
                                Json(answer)
                            },
                        ),
                    )
                    .with_state(client),
            ),
        )
        .await
        .expect("bind front");
        let url = format!("http://{}/v1/front", front.local_addr());
        tokio::spawn(front.run(stop.clone()));
        let response = reqwest::get(url).await.expect("front");
        assert_eq!(response.status(), 200);
        stop.cancel();
    });
    // Dropping the guard flushes the batch.
    drop(guard);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let find = |spans: &[Seen], name: &str, service: Option<&str>| {
        spans
            .iter()
            .find(|s| s.name == name && (service.is_none() || s.service.as_deref() == service))
            .cloned()
    };
    let (front, call, back) = loop {
        let seen = receiver.block_on(async { spans.lock().await.clone() });
        if let (Some(f), Some(c), Some(b)) = (
            find(&seen, "http", Some("front")),
            find(&seen, "call", Some("back")),
            find(&seen, "http", Some("back")),
        ) {
            break (f, c, b);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spans received: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        received.protobuf_posts.load(Ordering::SeqCst) >= 1,
        "OTLP/HTTP sends protobuf"
    );
    assert_eq!(call.trace_id, front.trace_id, "one trace");
    assert_eq!(back.trace_id, front.trace_id, "one trace");
    assert_eq!(
        call.parent_span_id, front.span_id,
        "the call is the front's"
    );
    assert_eq!(
        back.parent_span_id, call.span_id,
        "the back's span is the call's"
    );
}
