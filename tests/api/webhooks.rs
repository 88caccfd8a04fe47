use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, now, order_event, problem_fields, spawn_app, spawn_app_with, standard_headers,
    Backend, WHSEC,
};
use crate::{before_the_database, on_both_backends};

on_both_backends!(
    the_seed_event_creates_one_shipment,
    a_redelivered_event_is_a_duplicate_of_the_same_shipment,
    the_same_order_under_another_event_id_is_a_duplicate,
    a_payload_event_id_is_the_idempotency_key,
    an_unhandled_event_type_is_recorded_and_ignored,
    an_invalid_event_is_rejected_naming_every_field,
    a_body_that_is_not_json_is_rejected,
    long_multibyte_ids_are_refused_before_the_database,
    a_senders_id_never_takes_the_id_derived_for_another_order,
);

before_the_database!(
    a_wrong_or_missing_signature_is_rejected_and_nothing_is_stored,
    a_body_that_is_not_declared_json_is_rejected,
    a_body_over_the_limit_is_rejected,
);

async fn the_seed_event_creates_one_shipment(backend: Backend) {
    let app = spawn_app(backend).await;
    // The seed's exact bytes, as its sender serialises them.
    let body = br#"{"event_type": "order.created", "timestamp": "2023-10-27T10:00:00Z", "data": {"order_id": "ORD12345", "customer_id": "CUST987", "items": [{"sku": "SKU001", "quantity": 2}, {"sku": "SKU005", "quantity": 1}], "shipping_address": {"street": "123 Main St", "city": "Anytown", "zip": "12345"}}}"#;

    let response = app.post_signed(body).await;

    assert_eq!(response.status(), 201);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["status"], "processed");
    assert_eq!(receipt["event_id"], "order.created:ORD12345");
    let id = receipt["shipment_id"].as_str().unwrap();
    let shipment = app.get_json(&format!("/shipments/{id}")).await;
    assert_eq!(shipment["order_id"], "ORD12345");
    assert_eq!(shipment["customer_id"], "CUST987");
    assert_eq!(shipment["status"], "pending");
    assert_eq!(
        shipment["items"],
        json!([{"sku": "SKU001", "quantity": 2}, {"sku": "SKU005", "quantity": 1}])
    );
    assert_eq!(shipment["shipping_address"]["city"], "Anytown");
    assert_eq!(shipment["ordered_at"], "2023-10-27T10:00:00Z");
    assert_eq!(shipment["source_event_id"], "order.created:ORD12345");
    assert_eq!(app.db.count_shipments().await, 1);
    assert_eq!(app.db.count_events().await, 1);
}

async fn a_redelivered_event_is_a_duplicate_of_the_same_shipment(backend: Backend) {
    let app = spawn_app(backend).await;
    let event = order_event("ORD-1");
    let first: Value = app.post_event(&event).await.json().await.unwrap();

    let again = app.post_event(&event).await;

    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(again["shipment_id"], first["shipment_id"]);
    assert_eq!(app.db.count_shipments().await, 1);
    assert_eq!(app.db.count_events().await, 1);
}

async fn the_same_order_under_another_event_id_is_a_duplicate(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut first = order_event("ORD-2");
    first["id"] = json!("evt-a");
    let mut second = first.clone();
    second["id"] = json!("evt-b");
    let created: Value = app.post_event(&first).await.json().await.unwrap();

    let response = app.post_event(&second).await;

    assert_eq!(response.status(), 200);
    let duplicate: Value = response.json().await.unwrap();
    assert_eq!(duplicate["status"], "duplicate");
    assert_eq!(duplicate["event_id"], "evt-b");
    assert_eq!(duplicate["shipment_id"], created["shipment_id"]);
    assert_eq!(app.db.count_shipments().await, 1);
    // Both ids are recorded, so a redelivery of either is recognised by its id.
    assert_eq!(app.db.count_events().await, 2);
    let replay: Value = app.post_event(&second).await.json().await.unwrap();
    assert_eq!(replay["status"], "duplicate");
    assert_eq!(replay["shipment_id"], created["shipment_id"]);
}

async fn a_payload_event_id_is_the_idempotency_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut event = order_event("ORD-3");
    event["event_id"] = json!("evt-42");

    let receipt: Value = app.post_event(&event).await.json().await.unwrap();
    // The same id with another order is still the stored event: its answer, no new shipment.
    event["data"]["order_id"] = json!("ORD-OTHER");
    let reused: Value = app.post_event(&event).await.json().await.unwrap();

    assert_eq!(receipt["event_id"], "evt-42");
    assert_eq!(reused["status"], "duplicate");
    assert_eq!(reused["shipment_id"], receipt["shipment_id"]);
    assert_eq!(app.db.count_shipments().await, 1);
}

async fn an_unhandled_event_type_is_recorded_and_ignored(backend: Backend) {
    let app = spawn_app(backend).await;
    let event = json!({"event_type": "order.shipped", "data": {"order_id": "ORD-4"}});
    let body = serde_json::to_vec(&event).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };

    let response = app.post_signed(&body).await;
    let again: Value = app.post_signed(&body).await.json().await.unwrap();

    assert_eq!(response.status(), 200);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(
        receipt,
        json!({"status": "ignored", "event_id": format!("sha256:{digest}")})
    );
    assert_eq!(again["status"], "ignored");
    assert_eq!(app.db.count_shipments().await, 0);
    assert_eq!(app.db.count_events().await, 1);
}

async fn a_wrong_or_missing_signature_is_rejected_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&order_event("ORD-5")).unwrap();
    let wrong = crate::helpers::hex_signature(b"another body");
    let cases: Vec<Vec<(String, String)>> = vec![
        vec![],
        vec![("X-Ecomm-Signature".into(), wrong)],
        vec![("X-Ecomm-Signature".into(), "sha256=zz".into())],
        vec![("X-Ecomm-Signature".into(), "md5=abc".into())],
    ];
    for headers in cases {
        let response = app.post_webhook(body.clone(), &headers).await;
        assert_problem(response, 401).await;
    }
    assert_eq!(app.db.count_shipments().await, 0);
    assert_eq!(app.db.count_events().await, 0);
}

/// In reject mode (`INVALID_EVENTS=reject`); quarantine mode keeps such events (quarantine.rs).
async fn an_invalid_event_is_rejected_naming_every_field(backend: Backend) {
    let app = spawn_app_with(backend, &[("INVALID_EVENTS", "reject")]).await;
    let mut event = order_event("");
    event["data"]["items"][0]["quantity"] = json!(0);
    event["data"]["shipping_address"] = json!({"street": "1 Road", "city": "Town"});

    let problem = assert_problem(app.post_event(&event).await, 422).await;

    assert_eq!(
        problem_fields(&problem),
        [
            "data.order_id",
            "data.items[0].quantity",
            "data.shipping_address.zip"
        ]
    );
    assert_eq!(app.db.count_events().await, 0);
}

/// In reject mode (`INVALID_EVENTS=reject`); quarantine mode keeps such events (quarantine.rs).
async fn a_body_that_is_not_json_is_rejected(backend: Backend) {
    let app = spawn_app_with(backend, &[("INVALID_EVENTS", "reject")]).await;
    for body in [&b"{\"event_type\": "[..], b"not json", b"\xff\xfe", b""] {
        assert_problem(app.post_signed(body).await, 400).await;
    }
    assert_eq!(app.db.count_events().await, 0);
}

async fn a_body_that_is_not_declared_json_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&order_event("ORD-6")).unwrap();
    let signature = crate::helpers::hex_signature(&body);
    for content_type in [Some("text/plain"), Some("application/xml"), None] {
        let mut request = app
            .client
            .post(app.url("/webhooks/order_events"))
            .header("X-Ecomm-Signature", &signature)
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        assert_problem(request.send().await.unwrap(), 415).await;
    }
    let charset = app
        .client
        .post(app.url("/webhooks/order_events"))
        .header("X-Ecomm-Signature", &signature)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(charset.status(), 201);
}

async fn a_body_over_the_limit_is_rejected(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, &[("MAX_BODY_BYTES", "1000")]).await;
    let mut event = order_event("ORD-7");
    event["padding"] = json!("x".repeat(2000));

    assert_problem(app.post_event(&event).await, 413).await;

    assert_eq!(app.db.count_events().await, 0);
    // A body under the limit still goes through.
    assert_eq!(app.post_event(&order_event("ORD-7")).await.status(), 201);
}

/// 1,000 characters of four bytes each: under a character limit, over PostgreSQL's index row
/// limit. Every indexed text is limited in bytes, before the database, on both backends.
/// In reject mode (`INVALID_EVENTS=reject`); quarantine mode keeps such events (quarantine.rs).
async fn long_multibyte_ids_are_refused_before_the_database(backend: Backend) {
    let app = spawn_app_with(backend, &[("INVALID_EVENTS", "reject")]).await;
    let long = "\u{1D11E}".repeat(1000);
    let mut long_order = order_event(&long);
    long_order["id"] = json!("evt-long-order");
    let mut long_id = order_event("ORD-LONG-ID");
    long_id["id"] = json!(long);

    for (event, field) in [(long_order, "data.order_id"), (long_id, "id")] {
        let problem = assert_problem(app.post_event(&event).await, 422).await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let body = serde_json::to_vec(&order_event("ORD-LONG-HEADER")).unwrap();
    let headers = standard_headers(WHSEC, &long, now(), &body);
    let problem = assert_problem(app.post_webhook(body, &headers).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "webhook-id");
    assert_eq!(app.db.count_events().await, 0);

    // Up to the limit, in bytes, is stored.
    let mut longest = order_event(&"O".repeat(1024));
    longest["id"] = json!("\u{1D11E}".repeat(256));
    assert_eq!(app.post_event(&longest).await.status(), 201);
}

async fn a_senders_id_never_takes_the_id_derived_for_another_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut squatter = order_event("ORD-X");
    squatter["id"] = json!("order.created:ORD-9");

    let first: Value = app.post_event(&squatter).await.json().await.unwrap();
    let response = app.post_event(&order_event("ORD-9")).await;

    assert_eq!(first["event_id"], "order.created:ORD-9");
    assert_eq!(response.status(), 201);
    let own: Value = response.json().await.unwrap();
    assert_eq!(own["event_id"], "order.created:ORD-9");
    assert_ne!(own["shipment_id"], first["shipment_id"]);
    assert_eq!(app.db.count_shipments().await, 2);
    // Each is still recognised when redelivered.
    let again: Value = app.post_event(&squatter).await.json().await.unwrap();
    assert_eq!(again["shipment_id"], first["shipment_id"]);
}
