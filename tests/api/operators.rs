//! Operators move shipments (`PATCH /shipments/{id}`) and manage subscriptions.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, lifecycle_event, spawn_app, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_shipment_moves_along_and_each_move_has_a_new_etag,
    an_illegal_move_is_409_naming_both_statuses,
    a_stale_if_match_is_412_and_changes_nothing,
    bad_patches_are_rejected_with_the_right_status,
    after_shipping_order_events_are_too_late_but_packed_still_folds,
    subscriptions_are_managed_and_their_secret_is_shown_only_on_request,
    bad_subscriptions_are_422,
);

async fn patch(app: &TestApp, id: &str, body: Value, if_match: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .patch(app.url(&format!("/shipments/{id}")))
        .bearer_auth(crate::helpers::TOKEN)
        .json(&body);
    if let Some(etag) = if_match {
        request = request.header("If-Match", etag);
    }
    request.send().await.unwrap()
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

async fn a_shipment_moves_along_and_each_move_has_a_new_etag(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_shipment("ORD-MOVE").await;
    let first = app.get_api(&format!("/shipments/{id}")).await;
    assert_eq!(etag(&first), "\"1\"");

    let mut tag = etag(&first);
    for (status, revision) in [("packed", 2), ("shipped", 3), ("delivered", 4)] {
        let response = patch(&app, &id, json!({"status": status}), Some(&tag)).await;
        assert_eq!(response.status(), 200, "{status}");
        tag = etag(&response);
        assert_eq!(tag, format!("\"{revision}\""));
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (body["status"].as_str(), body["revision"].as_i64()),
            (Some(status), Some(revision))
        );
    }
    // The current status again is a no-op.
    let same = patch(&app, &id, json!({"status": "delivered"}), None).await;
    assert_eq!(same.status(), 200);
    assert_eq!(etag(&same), "\"4\"");
    let tracked = patch(
        &app,
        &id,
        json!({"carrier": "UPS", "tracking_number": "1Z"}),
        None,
    )
    .await;
    let tracked: Value = tracked.json().await.unwrap();
    assert_eq!(
        (tracked["carrier"].as_str(), tracked["revision"].as_i64()),
        (Some("UPS"), Some(5))
    );
}

async fn an_illegal_move_is_409_naming_both_statuses(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_shipment("ORD-ILLEGAL").await;

    let problem = assert_problem(
        patch(&app, &id, json!({"status": "shipped"}), None).await,
        409,
    )
    .await;

    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("pending") && detail.contains("shipped"),
        "{detail}"
    );
    let cancelled = patch(&app, &id, json!({"status": "cancelled"}), None).await;
    assert_eq!(cancelled.status(), 200);
    assert_problem(
        patch(&app, &id, json!({"status": "packed"}), None).await,
        409,
    )
    .await;
}

async fn a_stale_if_match_is_412_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_shipment("ORD-ETAG").await;
    patch(&app, &id, json!({"status": "packed"}), None).await;

    for stale in ["\"1\"", "garbage"] {
        let response = patch(&app, &id, json!({"status": "shipped"}), Some(stale)).await;
        assert_problem(response, 412).await;
    }

    let current = app.get_json(&format!("/shipments/{id}")).await;
    assert_eq!(
        (current["status"].as_str(), current["revision"].as_i64()),
        (Some("packed"), Some(2))
    );
}

async fn bad_patches_are_rejected_with_the_right_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_shipment("ORD-BAD").await;

    let invalid = patch(&app, &id, json!({"status": "lost", "colour": "red"}), None).await;
    let problem = assert_problem(invalid, 422).await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
    assert_eq!(problem["title"], "Invalid shipment change");
    assert_eq!(
        problem["detail"],
        "the shipment change is not valid: colour and status"
    );
    let not_json = app
        .client
        .patch(app.url(&format!("/shipments/{id}")))
        .bearer_auth(crate::helpers::TOKEN)
        .header("Content-Type", "text/plain")
        .body("status=packed")
        .send()
        .await
        .unwrap();
    assert_problem(not_json, 415).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let missing = assert_problem(
        patch(&app, &unknown, json!({"status": "packed"}), None).await,
        404,
    )
    .await;
    assert!(missing["detail"].as_str().unwrap().contains(&unknown));
    let unauthenticated = app
        .client
        .patch(app.url(&format!("/shipments/{id}")))
        .json(&json!({"status": "packed"}))
        .send()
        .await
        .unwrap();
    assert_problem(unauthenticated, 401).await;
    assert_eq!(
        app.get_json(&format!("/shipments/{id}")).await["revision"],
        1
    );
}

async fn after_shipping_order_events_are_too_late_but_packed_still_folds(backend: Backend) {
    let app = spawn_app(backend).await;
    let packed = app.create_shipment("ORD-PACKED").await;
    let shipped = app.create_shipment("ORD-SHIPPED").await;
    patch(&app, &packed, json!({"status": "packed"}), None).await;
    for status in ["packed", "shipped"] {
        patch(&app, &shipped, json!({"status": status}), None).await;
    }

    let cancel_packed: Value = app
        .post_event(&lifecycle_event("order.cancelled", "ORD-PACKED", None))
        .await
        .json()
        .await
        .unwrap();
    let cancel_shipped = app
        .post_event(&lifecycle_event("order.cancelled", "ORD-SHIPPED", None))
        .await;

    assert_eq!(cancel_packed["status"], "updated");
    assert_eq!(
        app.get_json(&format!("/shipments/{packed}")).await["status"],
        "cancelled"
    );
    assert_eq!(cancel_shipped.status(), 200);
    let too_late: Value = cancel_shipped.json().await.unwrap();
    assert_eq!(too_late["status"], "too_late");
    assert_eq!(too_late["shipment_id"], shipped);
    assert_eq!(
        app.get_json(&format!("/shipments/{shipped}")).await["status"],
        "shipped"
    );
}

async fn subscriptions_are_managed_and_their_secret_is_shown_only_on_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app
        .call(
            Method::POST,
            "/subscriptions",
            Some(&json!({"url": "http://127.0.0.1:9/hooks", "event_types": ["shipment.status_changed"],
                          "description": "warehouse"})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["active"], true);

    let listed = app.get_json("/subscriptions").await;
    let one = app.get_json(&format!("/subscriptions/{id}")).await;
    let revealed = app.get_json(&format!("/subscriptions/{id}/secret")).await;
    assert!(!listed.to_string().contains(secret) && !one.to_string().contains(secret));
    assert_eq!(revealed["secret"], secret);
    assert_eq!(one["event_types"], json!(["shipment.status_changed"]));

    let updated: Value = app
        .call(
            Method::PATCH,
            &format!("/subscriptions/{id}"),
            Some(&json!({"active": false, "url": "http://127.0.0.1:9/x"})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (updated["active"].as_bool(), updated["url"].as_str()),
        (Some(false), Some("http://127.0.0.1:9/x"))
    );
    let deleted = app
        .call(Method::DELETE, &format!("/subscriptions/{id}"), None)
        .await;
    assert_eq!(deleted.status(), 204);
    assert_problem(app.get_api(&format!("/subscriptions/{id}")).await, 404).await;
}

async fn bad_subscriptions_are_422(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        json!({"url": "ftp://127.0.0.1/x"}),
        json!({"url": "http://127.0.0.1:9/x", "event_types": ["order.created"]}),
        json!({"url": "http://127.0.0.1:9/x", "event_types": []}),
        json!({}),
    ] {
        let response = app.call(Method::POST, "/subscriptions", Some(&body)).await;
        let problem = assert_problem(response, 422).await;
        assert_eq!(problem["title"], "Invalid subscription");
    }
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM subscriptions").await, 0);
}
