//! Traces (contract section 15) against a real OTLP receiver: a small HTTP server that decodes
//! what the service exports with the OpenTelemetry protobuf definitions. The service runs as
//! its own process here: tracing is set up once per process, from the `OTEL_*` variables.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{json, Value};

use crate::helpers::{
    check_deadline, hex_signature, order_event, test_env, Backend, ServiceProcess, TestDb, TOKEN,
};
use crate::subscriber::Subscriber;
use crate::{before_the_database, on_both_backends};

on_both_backends!(
    one_trace_runs_from_the_sender_through_the_outbox_to_the_subscriber,
    a_collector_that_is_away_costs_requests_nothing_and_its_spans_are_counted,
);

before_the_database!(spans_go_over_grpc_when_the_protocol_says_so);

/// One exported span, as the receiver decoded it.
#[derive(Debug, Clone)]
struct Exported {
    name: String,
    /// 2: server, 3: client (the protobuf's `SpanKind`).
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    /// The span ids it links to.
    links: Vec<String>,
    service: String,
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with an `ExportTraceServiceRequest`.
#[derive(Clone)]
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<Exported>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = web::Data::new(spans.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(kept.clone())
                .route("/v1/traces", web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Collector { endpoint, spans }
    }

    /// An OTLP/gRPC receiver: the `TraceService` of the protobuf definitions.
    async fn start_grpc() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Grpc(spans.clone())))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        Collector { endpoint, spans }
    }

    /// Waits (bounded) until a span `matches`, and returns it.
    async fn span(&self, what: &str, matches: impl Fn(&Exported) -> bool) -> Exported {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(span) = self.spans.lock().unwrap().iter().find(|s| matches(s)) {
                return span.clone();
            }
            check_deadline(deadline, what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(body: web::Bytes, spans: web::Data<Arc<Mutex<Vec<Exported>>>>) -> HttpResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    spans.lock().unwrap().extend(decode(request));
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(Vec::new())
}

struct Grpc(Arc<Mutex<Vec<Exported>>>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().extend(decode(request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn decode(request: ExportTraceServiceRequest) -> Vec<Exported> {
    let mut decoded = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .map(|attribute| text(attribute.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for span in resource
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            decoded.push(Exported {
                name: span.name,
                kind: span.kind,
                trace_id: hex::encode(&span.trace_id),
                span_id: hex::encode(&span.span_id),
                parent_span_id: hex::encode(&span.parent_span_id),
                attributes: span
                    .attributes
                    .iter()
                    .map(|a| {
                        (
                            a.key.clone(),
                            text(a.value.as_ref().and_then(|v| v.value.as_ref())),
                        )
                    })
                    .collect(),
                links: span
                    .links
                    .iter()
                    .map(|link| hex::encode(&link.span_id))
                    .collect(),
                service: service.clone(),
            });
        }
    }
    decoded
}

fn text(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(text)) => text.clone(),
        Some(AnyValue::IntValue(number)) => number.to_string(),
        Some(AnyValue::DoubleValue(number)) => number.to_string(),
        Some(AnyValue::BoolValue(flag)) => flag.to_string(),
        _ => String::new(),
    }
}

fn service(db: &TestDb, endpoint: &str, extra: &[(&str, &str)]) -> ServiceProcess {
    let mut env = test_env(db);
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into());
    env.insert("OTEL_SERVICE_NAME".into(), "shipping-under-test".into());
    // Export at once: the test waits for what arrives.
    env.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "50".into());
    for (name, value) in extra {
        env.insert(name.to_string(), value.to_string());
    }
    ServiceProcess::start(&env)
}

async fn one_trace_runs_from_the_sender_through_the_outbox_to_the_subscriber(backend: Backend) {
    let db = TestDb::create(backend).await;
    let collector = Collector::start();
    let subscriber = Subscriber::start();
    // A pass every second or so.
    let service = service(&db, &collector.endpoint, &[("RETENTION", "2s")]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let created: Value = client
        .post(format!("{}/subscriptions", service.address))
        .bearer_auth(TOKEN)
        .json(&json!({"url": subscriber.url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    subscriber.trust(created["secret"].as_str().unwrap());

    // The shop's span: the sender traces, and says so in `traceparent`.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sender_span = "00f067aa0ba902b7";
    let body = serde_json::to_vec(&order_event("ORD-TRACED")).unwrap();
    let response = client
        .post(format!("{}/webhooks/order_events", service.address))
        .header("Content-Type", "application/json")
        .header("X-Ecomm-Signature", hex_signature(&body))
        .header("traceparent", format!("00-{trace_id}-{sender_span}-01"))
        .header("tracestate", "shop=checkout")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let receipt: Value = response.json().await.unwrap();

    // The request: the sender's span is its parent.
    let request = collector
        .span("the webhook's span", |s| {
            s.name == "POST /webhooks/order_events"
        })
        .await;
    assert_eq!(
        (request.trace_id.as_str(), request.parent_span_id.as_str()),
        (trace_id, sender_span)
    );
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(request.service, "shipping-under-test");
    assert_eq!(request.attributes["webhook.scheme"], "hex");
    assert_eq!(request.attributes["webhook.outcome"], "processed");
    assert_eq!(
        request.attributes["event_id"],
        receipt["event_id"].as_str().unwrap()
    );
    assert_eq!(request.attributes["order_id"], "ORD-TRACED");
    assert_eq!(request.attributes["http.response.status_code"], "201");

    // Its batch's commit: a child of the request, linked to every request it carried.
    let commit = collector
        .span("the batch's commit", |s| {
            s.name == "batch commit" && s.trace_id == trace_id
        })
        .await;
    assert_eq!(commit.parent_span_id, request.span_id);
    assert!(commit.links.contains(&request.span_id), "{commit:?}");

    // The delivery: the attempt continues the trace, and the subscriber is told so.
    let received = subscriber.wait_for("the delivery", |r| !r.is_empty()).await;
    let attempt = collector
        .span("the delivery attempt", |s| s.name == "POST delivery")
        .await;
    assert_eq!(attempt.trace_id, trace_id);
    assert_eq!(
        attempt.parent_span_id, request.span_id,
        "the change's context, stored with it"
    );
    assert_eq!(attempt.kind, 3, "a client span");
    assert_eq!(
        attempt.attributes["subscription_id"],
        created["id"].as_str().unwrap()
    );
    assert_eq!(attempt.attributes["attempt"], "1");
    assert_eq!(attempt.attributes["http.response.status_code"], "200");
    assert!(attempt.attributes.contains_key("duration_ms"));
    assert_eq!(
        received[0].traceparent,
        format!("00-{trace_id}-{}-01", attempt.span_id)
    );
    assert_eq!(received[0].tracestate, "shop=checkout");

    // An API request is a span of its own trace.
    client
        .get(format!("{}/shipments", service.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let listing = collector
        .span("the API's span", |s| s.name == "GET /shipments")
        .await;
    assert_ne!(listing.trace_id, trace_id);

    collector
        .span("a retention pass", |s| s.name == "retention pass")
        .await;

    // Log lines carry the ids of the span they were written in.
    let forged = client
        .post(format!("{}/webhooks/order_events", service.address))
        .header("Content-Type", "application/json")
        .header("X-Ecomm-Signature", "sha256=00")
        .header("traceparent", format!("00-{trace_id}-{sender_span}-01"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logged = service.log().iter().any(|line| {
            serde_json::from_str::<Value>(line).is_ok_and(|entry| {
                entry["fields"]["message"] == "webhook rejected"
                    && entry["span"]["trace_id"] == trace_id
                    && entry["span"]["span_id"]
                        .as_str()
                        .is_some_and(|id| id.len() == 16)
            })
        });
        if logged {
            break;
        }
        check_deadline(deadline, "a log line with the trace's ids");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_collector_that_is_away_costs_requests_nothing_and_its_spans_are_counted(
    backend: Backend,
) {
    let db = TestDb::create(backend).await;
    // A port nothing listens on.
    let away = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let service = service(&db, &away, &[("OTEL_BSP_EXPORT_TIMEOUT", "500")]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    for n in 0..50 {
        let body = serde_json::to_vec(&order_event(&format!("ORD-AWAY-{n}"))).unwrap();
        let response = client
            .post(format!("{}/webhooks/order_events", service.address))
            .header("Content-Type", "application/json")
            .header("X-Ecomm-Signature", hex_signature(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = client
            .get(format!("{}/metrics", service.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let dropped = metrics
            .lines()
            .find(|line| line.starts_with("otel_spans_total{result=\"dropped\"}"))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(0);
        if dropped >= 100 {
            assert!(
                metrics.contains("otel_spans_total{result=\"exported\"} 0"),
                "{metrics}"
            );
            break;
        }
        check_deadline(deadline, "the dropped spans counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db.count_shipments().await, 50);
}

async fn spans_go_over_grpc_when_the_protocol_says_so(backend: Backend) {
    let db = TestDb::create(backend).await;
    let collector = Collector::start_grpc().await;
    let service = service(
        &db,
        &collector.endpoint,
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", service.address))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let span = collector
        .span("the probe's span over gRPC", |s| s.name == "GET /healthz")
        .await;
    assert_eq!(span.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(span.parent_span_id, "b7ad6b7169203331");
}
