//! Keeps `openapi.yaml` true. What is served is read off the server itself: every documented
//! path answers an undocumented method with 405 and an `Allow` header, which must list exactly
//! the documented methods; an undocumented path is 404. Then every documented operation is
//! called, and each answer's status and media type must be documented for it.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{lifecycle_event, order_event, spawn_app, Backend, TestApp, TOKEN};
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

/// The documented operations, `(method, path template)`.
fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            // Parameters shared by a path's operations are not an operation.
            if method != "parameters" {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// Calls `method path` (the template, with `{id}` filled in by `concrete`) and checks the
/// answer against the document; returns the status.
async fn check(
    app: &TestApp,
    spec: &Value,
    (method, template): (&str, &str),
    concrete: &str,
    body: Option<Value>,
) -> u16 {
    let mut request = app
        .client
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            app.url(concrete),
        )
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let operation = &spec["paths"][template][method.to_lowercase()];
    let documented = resolve(spec, &operation["responses"][status.to_string()]);
    assert!(
        !documented.is_null(),
        "{method} {concrete} answered {status}, which is not documented"
    );
    // HEAD and 204 answers carry no body to describe.
    if method != "HEAD" && !documented["content"].is_null() {
        let content_type = response.headers()["content-type"].to_str().unwrap();
        let essence = content_type.split(';').next().unwrap();
        assert!(
            documented["content"].get(essence).is_some(),
            "{method} {concrete} {status} served {content_type}"
        );
    }
    status
}

async fn every_documented_operation_answers_as_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let spec = spec();
    let operations = documented(&spec);

    // What the server serves, path by path, as its 405s say.
    let paths: BTreeSet<&String> = operations.iter().map(|(_, path)| path).collect();
    for path in paths {
        let concrete = path.replace("{id}", &uuid::Uuid::nil().to_string());
        let response = app
            .client
            .put(app.url(&concrete))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "PUT {concrete}");
        let allowed: BTreeSet<String> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|method| method.trim().to_owned())
            .collect();
        let expected: BTreeSet<String> = operations
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(method, _)| method.clone())
            .collect();
        assert_eq!(allowed, expected, "the methods {path} serves");
    }
    let unknown = app.get_api("/no-such-resource").await;
    assert_eq!(unknown.status(), 404);

    // Every documented operation, each at least once.
    let receipt: Value = app
        .post_event(&order_event("ORD-SPEC"))
        .await
        .json()
        .await
        .unwrap();
    let shipment = format!("/shipments/{}", receipt["shipment_id"].as_str().unwrap());
    let created: Value = app
        .call(
            Method::POST,
            "/subscriptions",
            Some(&json!({"url": "http://127.0.0.1:9/x"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let subscription = format!("/subscriptions/{}", created["id"].as_str().unwrap());
    let quarantined: Value = app
        .post_signed(b"{\"event_type\": ")
        .await
        .json()
        .await
        .unwrap();
    let held = format!(
        "/quarantine/{}",
        quarantined["quarantine_id"].as_str().unwrap()
    );
    let discarded: Value = app.post_signed(b"not json").await.json().await.unwrap();
    let discarded = format!(
        "/quarantine/{}",
        discarded["quarantine_id"].as_str().unwrap()
    );
    let nil = uuid::Uuid::nil();
    let cases: Vec<(&str, &str, String, Option<Value>)> = vec![
        ("GET", "/shipments", "/shipments".into(), None),
        ("GET", "/shipments", "/shipments?limit=0".into(), None),
        ("HEAD", "/shipments", "/shipments".into(), None),
        ("GET", "/shipments/{id}", shipment.clone(), None),
        ("GET", "/shipments/{id}", "/shipments/x".into(), None),
        ("HEAD", "/shipments/{id}", shipment.clone(), None),
        (
            "PATCH",
            "/shipments/{id}",
            shipment.clone(),
            Some(json!({"status": "packed"})),
        ),
        (
            "PATCH",
            "/shipments/{id}",
            shipment.clone(),
            Some(json!({"status": "pending"})),
        ),
        (
            "PATCH",
            "/shipments/{id}",
            shipment.clone(),
            Some(json!({"colour": "red"})),
        ),
        ("GET", "/events", "/events".into(), None),
        ("GET", "/events", "/events?cursor=x".into(), None),
        ("HEAD", "/events", "/events".into(), None),
        ("GET", "/subscriptions", "/subscriptions".into(), None),
        ("HEAD", "/subscriptions", "/subscriptions".into(), None),
        (
            "POST",
            "/subscriptions",
            "/subscriptions".into(),
            Some(json!({"url": "ftp://x"})),
        ),
        ("GET", "/subscriptions/{id}", subscription.clone(), None),
        ("HEAD", "/subscriptions/{id}", subscription.clone(), None),
        (
            "PATCH",
            "/subscriptions/{id}",
            subscription.clone(),
            Some(json!({"active": false})),
        ),
        (
            "PATCH",
            "/subscriptions/{id}",
            subscription.clone(),
            Some(json!({"active": "no"})),
        ),
        (
            "GET",
            "/subscriptions/{id}/secret",
            format!("{subscription}/secret"),
            None,
        ),
        (
            "HEAD",
            "/subscriptions/{id}/secret",
            format!("{subscription}/secret"),
            None,
        ),
        (
            "POST",
            "/subscriptions/{id}/recover",
            format!("{subscription}/recover"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        ),
        (
            "POST",
            "/subscriptions/{id}/recover",
            format!("{subscription}/recover"),
            Some(json!({"since": "yesterday"})),
        ),
        ("GET", "/deliveries", "/deliveries".into(), None),
        ("HEAD", "/deliveries", "/deliveries".into(), None),
        (
            "GET",
            "/deliveries/{id}",
            format!("/deliveries/{nil}"),
            None,
        ),
        (
            "HEAD",
            "/deliveries/{id}",
            format!("/deliveries/{nil}"),
            None,
        ),
        (
            "POST",
            "/deliveries/{id}/retry",
            format!("/deliveries/{nil}/retry"),
            None,
        ),
        ("DELETE", "/subscriptions/{id}", subscription.clone(), None),
        ("DELETE", "/subscriptions/{id}", subscription.clone(), None),
        ("GET", "/quarantine", "/quarantine?status=held".into(), None),
        ("GET", "/quarantine", "/quarantine?status=lost".into(), None),
        ("HEAD", "/quarantine", "/quarantine".into(), None),
        ("GET", "/quarantine/{id}", held.clone(), None),
        ("GET", "/quarantine/{id}", "/quarantine/x".into(), None),
        ("HEAD", "/quarantine/{id}", held.clone(), None),
        (
            "POST",
            "/quarantine/{id}/replay",
            format!("{held}/replay"),
            None,
        ),
        (
            "POST",
            "/quarantine/{id}/replay",
            format!("{held}/replay"),
            Some(json!({"body": order_event("ORD-SPEC-Q")})),
        ),
        (
            "POST",
            "/quarantine/{id}/discard",
            format!("{held}/discard"),
            None,
        ),
        (
            "POST",
            "/quarantine/{id}/discard",
            format!("{discarded}/discard"),
            None,
        ),
        ("GET", "/healthz", "/healthz".into(), None),
        ("HEAD", "/healthz", "/healthz".into(), None),
        ("GET", "/readyz", "/readyz".into(), None),
        ("HEAD", "/readyz", "/readyz".into(), None),
        ("GET", "/metrics", "/metrics".into(), None),
        ("HEAD", "/metrics", "/metrics".into(), None),
    ];
    let mut called = BTreeSet::new();
    for (method, template, concrete, body) in cases {
        check(&app, &spec, (method, template), &concrete, body).await;
        called.insert((method.to_owned(), template.to_owned()));
    }
    // The webhook's answers: unsigned, not JSON-typed, and every kind of receipt.
    let webhook = ("POST", "/webhooks/order_events");
    for (content_type, body) in [("application/json", "{}"), ("text/plain", "{}")] {
        let response = app
            .client
            .post(app.url(webhook.1))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16().to_string();
        assert!(!spec["paths"][webhook.1]["post"]["responses"][&status].is_null());
    }
    let update = lifecycle_event("order.updated", "ORD-SPEC", None);
    let cancel = lifecycle_event("order.cancelled", "ORD-SPEC-PARKED", None);
    for event in [order_event("ORD-SPEC"), cancel, update] {
        let status = app.post_event(&event).await.status().as_u16().to_string();
        assert!(
            !spec["paths"][webhook.1]["post"]["responses"][&status].is_null(),
            "{status}"
        );
    }
    called.insert((webhook.0.to_owned(), webhook.1.to_owned()));
    // The shop platforms' endpoints, off here.
    for path in ["/webhooks/shopify", "/webhooks/woocommerce"] {
        check(&app, &spec, ("POST", path), path, Some(json!({}))).await;
        called.insert(("POST".to_owned(), path.to_owned()));
    }
    assert_eq!(called, operations, "every documented operation is called");
}
