//! With `telemetry.otlp_endpoint` set, spans are exported over OTLP/HTTP to a collector, here
//! the local stack's Jaeger (an OpenTelemetry Collector distribution that keeps traces in
//! memory). One request across two services arrives there as one trace, each hop under the
//! one that called it, as Jaeger's query API shows it.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use storefront_kit::client::{ClientSettings, RestClient};
use storefront_kit::context::RequestContext;
use storefront_kit::health::Readiness;
use storefront_kit::server::{HttpServer, Service};
use storefront_kit::telemetry::{LogFormat, TelemetrySettings, init};
use storefront_tests::{Stack, unique_name};
use tokio_util::sync::CancellationToken;
use utoipa::openapi::OpenApi;

fn service(name: &'static str, router: Router) -> Service {
    Service {
        name,
        router,
        openapi: OpenApi::default(),
        readiness: Readiness::new(name, CancellationToken::new()),
    }
}

/// A span as Jaeger's query API gives it back: operation, the `service` tag, its id and the
/// span it is a child of.
#[derive(Clone, Debug)]
struct Stored {
    name: String,
    service: Option<String>,
    span_id: String,
    parent: Option<String>,
    process: String,
}

fn stored(span: &Value) -> Stored {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Stored {
        name: text(&span["operationName"]),
        service: span["tags"].as_array().and_then(|tags| {
            tags.iter()
                .find(|t| t["key"] == "service")
                .map(|t| text(&t["value"]))
        }),
        span_id: text(&span["spanID"]),
        parent: span["references"].as_array().and_then(|refs| {
            refs.iter()
                .find(|r| r["refType"] == "CHILD_OF")
                .map(|r| text(&r["spanID"]))
        }),
        process: text(&span["processID"]),
    }
}

#[test]
fn a_request_through_two_services_is_one_trace_in_jaeger_with_each_hop_under_its_caller() {
    let stack = Stack::get();
    // The exporter's `service.name`, unique to this run.
    let exporter_name = unique_name("kit-otlp", '-');
    let guard = init(
        &TelemetrySettings {
            log_format: LogFormat::Json,
            log_level: "info".into(),
            otlp_endpoint: Some(format!("{}/v1/traces", stack.otlp_url)),
        },
        &exporter_name,
    )
    .expect("telemetry");

    // The trace is started by the caller of `front`, whose ids the test picks.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
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
                                let answer: Value =
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
        let response = reqwest::Client::new()
            .get(url)
            .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
            .send()
            .await
            .expect("front");
        assert_eq!(response.status(), 200);
        stop.cancel();
    });
    // Dropping the guard flushes the batch to Jaeger.
    drop(guard);

    let url = format!("{}/api/traces/{trace_id}", stack.jaeger_url);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let find = |spans: &[Stored], name: &str, service: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.service.as_deref() == Some(service))
            .cloned()
    };
    let (trace, front, call, back) = loop {
        let answer = services.block_on(async {
            let r = reqwest::get(&url).await.expect("jaeger query");
            if r.status().is_success() {
                r.json::<Value>().await.ok()
            } else {
                None
            }
        });
        if let Some(trace) = answer.as_ref().map(|a| a["data"][0].clone()) {
            let spans: Vec<Stored> = trace["spans"]
                .as_array()
                .map(|s| s.iter().map(stored).collect())
                .unwrap_or_default();
            if let (Some(f), Some(c), Some(b)) = (
                find(&spans, "http", "front"),
                find(&spans, "call", "back"),
                find(&spans, "http", "back"),
            ) {
                break (trace, f, c, b);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "trace {trace_id} not complete in Jaeger after 30 s: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        front.parent.as_deref(),
        Some(caller_span.as_str()),
        "the front's span is under its caller's"
    );
    assert_eq!(
        call.parent,
        Some(front.span_id.clone()),
        "the call is the front's"
    );
    assert_eq!(
        back.parent,
        Some(call.span_id.clone()),
        "the back's span is the call's"
    );
    let processes: HashMap<String, Value> =
        serde_json::from_value(trace["processes"].clone()).expect("processes");
    for span in [&front, &call, &back] {
        assert_eq!(
            processes[&span.process]["serviceName"], exporter_name,
            "exported under the service's name"
        );
    }
}
