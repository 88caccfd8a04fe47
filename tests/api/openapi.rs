//! Keeps `openapi.yaml` true: every documented operation exists and answers only with
//! documented statuses and media types, and nothing else is served.

use serde_json::Value;

use crate::helpers::{lifecycle_event, order_event, spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(every_documented_operation_answers_as_documented);

fn spec() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// Resolves a `$ref` within the document.
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(pointer) => spec.pointer(pointer.trim_start_matches('#')).unwrap(),
        None => node,
    }
}

async fn check(spec: &Value, method: &str, template: &str, request: reqwest::RequestBuilder) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16().to_string();
    let operation = &spec["paths"][template][method];
    let documented = resolve(spec, &operation["responses"][&status]);
    assert!(
        !documented.is_null(),
        "{method} {template} answered {status}, which is not documented"
    );
    let content_type = response.headers()["content-type"].to_str().unwrap();
    let essence = content_type.split(';').next().unwrap();
    assert!(
        documented["content"].get(essence).is_some(),
        "{method} {template} {status} served {content_type}"
    );
}

async fn every_documented_operation_answers_as_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let spec = spec();
    let receipt: Value = app
        .post_event(&order_event("ORD-SPEC"))
        .await
        .json()
        .await
        .unwrap();
    let id = receipt["shipment_id"].as_str().unwrap();

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            // Parameters shared by a path's operations are not an operation.
            if method != "parameters" {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    documented.sort();
    let served = [
        ("delete", "/subscriptions/{id}"),
        ("get", "/deliveries"),
        ("get", "/deliveries/{id}"),
        ("get", "/events"),
        ("get", "/healthz"),
        ("get", "/metrics"),
        ("get", "/readyz"),
        ("get", "/shipments"),
        ("get", "/shipments/{id}"),
        ("get", "/subscriptions"),
        ("get", "/subscriptions/{id}"),
        ("get", "/subscriptions/{id}/secret"),
        ("patch", "/shipments/{id}"),
        ("patch", "/subscriptions/{id}"),
        ("post", "/deliveries/{id}/retry"),
        ("post", "/subscriptions"),
        ("post", "/subscriptions/{id}/recover"),
        ("post", "/webhooks/order_events"),
    ];
    assert_eq!(
        documented,
        served.map(|(m, p)| (m.to_owned(), p.to_owned()))
    );

    let client = &app.client;
    let token = crate::helpers::TOKEN;
    let webhook = app.url("/webhooks/order_events");
    let cases = [
        (
            "post",
            "/webhooks/order_events",
            client
                .post(&webhook)
                .header("content-type", "application/json")
                .body("{}"),
        ),
        (
            "post",
            "/webhooks/order_events",
            client.post(&webhook).body("{}"),
        ),
        (
            "get",
            "/shipments",
            client.get(app.url("/shipments")).bearer_auth(token),
        ),
        (
            "get",
            "/shipments",
            client.get(app.url("/shipments?limit=0")).bearer_auth(token),
        ),
        ("get", "/shipments", client.get(app.url("/shipments"))),
        (
            "get",
            "/shipments/{id}",
            client
                .get(app.url(&format!("/shipments/{id}")))
                .bearer_auth(token),
        ),
        (
            "get",
            "/shipments/{id}",
            client.get(app.url("/shipments/x")).bearer_auth(token),
        ),
        (
            "get",
            "/events",
            client.get(app.url("/events")).bearer_auth(token),
        ),
        (
            "get",
            "/events",
            client.get(app.url("/events?cursor=x")).bearer_auth(token),
        ),
        (
            "patch",
            "/shipments/{id}",
            client
                .patch(app.url(&format!("/shipments/{id}")))
                .bearer_auth(token)
                .json(&serde_json::json!({"status": "packed"})),
        ),
        (
            "patch",
            "/shipments/{id}",
            client
                .patch(app.url(&format!("/shipments/{id}")))
                .bearer_auth(token)
                .json(&serde_json::json!({"status": "delivered"})),
        ),
        (
            "patch",
            "/shipments/{id}",
            client
                .patch(app.url(&format!("/shipments/{id}")))
                .bearer_auth(token)
                .header("If-Match", "\"99\"")
                .json(&serde_json::json!({"carrier": "DHL"})),
        ),
        (
            "patch",
            "/shipments/{id}",
            client
                .patch(app.url(&format!("/shipments/{id}")))
                .bearer_auth(token)
                .json(&serde_json::json!({"colour": "red"})),
        ),
        (
            "post",
            "/subscriptions",
            client
                .post(app.url("/subscriptions"))
                .bearer_auth(token)
                .json(&serde_json::json!({"url": "http://127.0.0.1:9/x"})),
        ),
        (
            "post",
            "/subscriptions",
            client
                .post(app.url("/subscriptions"))
                .bearer_auth(token)
                .body("{}"),
        ),
        (
            "get",
            "/subscriptions",
            client.get(app.url("/subscriptions")).bearer_auth(token),
        ),
        (
            "get",
            "/deliveries",
            client.get(app.url("/deliveries")).bearer_auth(token),
        ),
        (
            "get",
            "/deliveries/{id}",
            client.get(app.url("/deliveries/x")).bearer_auth(token),
        ),
        (
            "post",
            "/deliveries/{id}/retry",
            client
                .post(app.url(&format!("/deliveries/{id}/retry")))
                .bearer_auth(token),
        ),
        (
            "post",
            "/subscriptions/{id}/recover",
            client
                .post(app.url(&format!("/subscriptions/{id}/recover")))
                .bearer_auth(token)
                .json(&serde_json::json!({"since": "2026-01-01T00:00:00Z"})),
        ),
        ("get", "/healthz", client.get(app.url("/healthz"))),
        ("get", "/readyz", client.get(app.url("/readyz"))),
        ("get", "/metrics", client.get(app.url("/metrics"))),
    ];
    for (method, template, request) in cases {
        check(&spec, method, template, request).await;
    }
    // Every kind of receipt: duplicate, parked, updated.
    let update = lifecycle_event("order.updated", "ORD-SPEC", None);
    let cancel = lifecycle_event("order.cancelled", "ORD-SPEC-PARKED", None);
    for event in [order_event("ORD-SPEC"), cancel, update] {
        let status = app.post_event(&event).await.status().as_u16().to_string();
        assert!(
            !spec["paths"]["/webhooks/order_events"]["post"]["responses"][&status].is_null(),
            "{status}"
        );
    }
}
