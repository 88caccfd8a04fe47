use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{assert_problem, order_event, spawn_app, Backend, TestApp};
use crate::{before_the_database, on_both_backends};

on_both_backends!(
    paging_returns_every_shipment_once_newest_first,
    shipments_can_be_filtered,
    bad_list_parameters_are_400,
    an_unknown_or_malformed_shipment_id_is_404,
    events_are_listed_newest_first,
    metrics_count_outcomes_and_latency,
    head_answers_like_get_without_a_body,
);

before_the_database!(
    the_api_requires_a_bearer_token,
    probes_need_no_token,
    invented_methods_and_paths_add_no_metric_series,
    a_wrong_method_is_405_naming_the_allowed_one,
);

async fn create_orders(app: &TestApp, count: usize, customer: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let mut event = order_event(&format!("{customer}-ORD-{n}"));
        event["data"]["customer_id"] = json!(customer);
        let receipt: Value = app.post_event(&event).await.json().await.unwrap();
        ids.push(receipt["shipment_id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn the_api_requires_a_bearer_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = create_orders(&app, 1, "C").await.remove(0);
    for path in [
        "/shipments".to_owned(),
        format!("/shipments/{id}"),
        "/events".to_owned(),
    ] {
        let missing = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(missing.headers()["www-authenticate"], "Bearer");
        assert_problem(missing, 401).await;
        let wrong = app
            .client
            .get(app.url(&path))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_problem(wrong, 401).await;
        let basic = app
            .client
            .get(app.url(&path))
            .basic_auth("test-token", None::<&str>)
            .send()
            .await
            .unwrap();
        assert_problem(basic, 401).await;
        assert_eq!(app.get_api(&path).await.status(), 200);
        // The scheme's name is case-insensitive (RFC 9110).
        let lowercase = app
            .client
            .get(app.url(&path))
            .header("Authorization", format!("bearer {}", crate::helpers::TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(lowercase.status(), 200);
    }
}

async fn probes_need_no_token(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

async fn paginate(app: &TestApp, path: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{separator}limit={limit}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.get_json(&url).await;
        let batch = page["items"].as_array().unwrap();
        assert!(batch.len() <= limit);
        items.extend(batch.iter().cloned());
        assert!(items.len() <= 10_000, "paging never ends");
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

async fn paging_returns_every_shipment_once_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut created = create_orders(&app, 130, "PAGER").await;
    created.reverse();

    for limit in [1, 7, 50, 500] {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/shipments?customer_id=PAGER&limit={limit}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = app.get_json(&path).await;
            ids.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["id"].as_str().unwrap().to_owned()),
            );
            // Newer shipments arriving meanwhile must not disturb the pages still to come.
            create_orders(&app, 1, &format!("LATE-{limit}-{}", ids.len())).await;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(ids, created, "limit {limit}");
    }
    let default_page = app.get_json("/shipments").await;
    assert_eq!(default_page["items"].as_array().unwrap().len(), 50);
}

async fn shipments_can_be_filtered(backend: Backend) {
    let app = spawn_app(backend).await;
    create_orders(&app, 3, "ALICE").await;
    create_orders(&app, 2, "BOB").await;

    let bob = paginate(&app, "/shipments?customer_id=BOB", 10).await;
    let order = app.get_json("/shipments?order_id=ALICE-ORD-1").await;
    let pending = app
        .get_json("/shipments?status=pending&customer_id=ALICE")
        .await;
    let nobody = app.get_json("/shipments?customer_id=CAROL").await;

    assert_eq!(bob.len(), 2);
    assert!(bob.iter().all(|s| s["customer_id"] == "BOB"));
    assert_eq!(order["items"].as_array().unwrap().len(), 1);
    assert_eq!(order["items"][0]["order_id"], "ALICE-ORD-1");
    assert_eq!(pending["items"].as_array().unwrap().len(), 3);
    assert_eq!(nobody, json!({"items": [], "next_cursor": null}));
}

async fn bad_list_parameters_are_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for query in [
        "limit=0",
        "limit=501",
        "limit=abc",
        "limit=-1",
        "cursor=garbage",
        "cursor=",
        "status=lost",
        "customer_id=%00",
        "limit=1&limit=2",
    ] {
        let response = app.get_api(&format!("/shipments?{query}")).await;
        assert_problem(response, 400).await;
    }
    for query in ["limit=1000", "outcome=lost", "order_id=%00"] {
        assert_problem(app.get_api(&format!("/events?{query}")).await, 400).await;
    }
}

async fn an_unknown_or_malformed_shipment_id_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    for id in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        assert_problem(app.get_api(&format!("/shipments/{id}")).await, 404).await;
    }
    assert_problem(app.get_api("/no/such/route").await, 404).await;
}

async fn events_are_listed_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    create_orders(&app, 3, "EVE").await;
    app.post_event(&order_event("EVE-ORD-0")).await;

    let events = paginate(&app, "/events", 2).await;

    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(ids.len(), 3);
    assert_eq!(events[0]["event_id"], "order.created:EVE-ORD-2");
    assert_eq!(events[0]["outcome"], "processed");
    assert_eq!(events[0]["event_type"], "order.created");
    assert!(events[0]["received_at"].as_str().is_some());
}

fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().unwrap())
}

async fn metrics_count_outcomes_and_latency(backend: Backend) {
    let app = spawn_app(backend).await;
    let event = order_event("ORD-METRICS");
    app.post_event(&event).await;
    app.post_event(&event).await;
    app.post_webhook(b"{}".to_vec(), &[]).await;

    let metrics = app.metrics().await;

    assert_eq!(
        sample(&metrics, r#"webhook_events_total{outcome="processed"}"#),
        1.0
    );
    assert_eq!(
        sample(&metrics, r#"webhook_events_total{outcome="duplicate"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"webhook_events_total{outcome="invalid-signature"}"#
        ),
        1.0
    );
    let created = r#"http_request_duration_seconds_count{method="POST",route="/webhooks/order_events",status="201"}"#;
    assert_eq!(sample(&metrics, created), 1.0);
    assert!(metrics.contains(r#"db_pool_connections{state="open"}"#));
    assert!(
        !metrics.contains("ORD-METRICS"),
        "no shipment data in metrics"
    );
}

/// HEAD answers what GET would, headers only: the way to read a shipment's `ETag`.
async fn head_answers_like_get_without_a_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = create_orders(&app, 1, "C").await.remove(0);
    let path = format!("/shipments/{id}");

    let get = app.get_api(&path).await;
    let head = app
        .client
        .head(app.url(&path))
        .bearer_auth(crate::helpers::TOKEN)
        .send()
        .await
        .unwrap();
    let unauthenticated = app.client.head(app.url(&path)).send().await.unwrap();

    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"], get.headers()["etag"]);
    assert_eq!(head.headers()["etag"], "\"1\"");
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(unauthenticated.status(), 401);
}

async fn a_wrong_method_is_405_naming_the_allowed_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (reqwest::Method::DELETE, "/shipments", "GET, HEAD"),
        (reqwest::Method::PUT, "/events", "GET, HEAD"),
        (reqwest::Method::GET, "/webhooks/order_events", "POST"),
    ];
    for (method, path, allow) in cases {
        let response = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow);
        assert_problem(response, 405).await;
    }
}

async fn invented_methods_and_paths_add_no_metric_series(backend: Backend) {
    let app = spawn_app(backend).await;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    // One request of each kind first, so that their series exist.
    let method = reqwest::Method::from_bytes(b"FOO0").unwrap();
    app.client
        .request(method, app.url("/x0"))
        .send()
        .await
        .unwrap();
    let before = series(&app.metrics().await);

    for n in 1..=20 {
        let method = reqwest::Method::from_bytes(format!("FOO{n}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url(&format!("/x{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }

    let after = app.metrics().await;
    assert!(!after.contains("FOO"), "methods are not labels");
    assert!(!after.contains("/x1"), "paths are not labels");
    // Only the scrape's own series may have appeared.
    assert!(
        series(&after) <= before + 16,
        "{before} -> {}",
        series(&after)
    );
}
