//! Orders straight from Shopify and WooCommerce (contract section 14): each platform's own
//! signature, topics and payloads, applied exactly once and in any arrival order, with the
//! guarantees of the service's own endpoint.

use reqwest::Method;
use serde_json::{json, Value};
use shipping_service::signature::{sign_platform, Secret};

use crate::helpers::{assert_problem, run_command, spawn_app, spawn_app_with, Backend, TestApp};
use crate::{before_the_database, on_both_backends};

on_both_backends!(
    every_shopify_topic_applies_once,
    woocommerce_topics_pings_and_redeliveries,
    changes_that_arrive_out_of_order_end_as_in_order,
    an_authentic_call_that_cannot_be_mapped_is_quarantined_and_replayed_through_its_platform,
    send_signs_as_each_platform,
);

before_the_database!(
    forged_or_unsigned_calls_keep_nothing,
    the_endpoints_are_off_until_their_secrets_are_set,
);

const SHOPIFY_SECRET: &str = "shpss_0123456789abcdef";
const WOO_SECRET: &str = "woo-secret-9";
const SHOP: &str = "shop.example.myshopify.com";
/// The examples' Shopify order id, above 2^53.
const SHOPIFY_ORDER: &str = "shopify:shop.example.myshopify.com:820982911946154508";
const WOO_ORDER: &str = "woocommerce:shop.example:727";

fn example(path: &str) -> Value {
    let text =
        std::fs::read_to_string(format!("{}/examples/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn with_platforms(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[
            // Rotation: the older secret still verifies.
            (
                "SHOPIFY_WEBHOOK_SECRETS",
                &format!("newer,{SHOPIFY_SECRET}"),
            ),
            ("WOOCOMMERCE_WEBHOOK_SECRETS", WOO_SECRET),
        ],
    )
    .await
}

/// POSTs `body` to Shopify's endpoint as Shopify does: a new webhook id on every attempt, the
/// same event id for the same event.
async fn shopify(app: &TestApp, topic: &str, event_id: &str, body: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let signature = sign_platform(&Secret::parse(SHOPIFY_SECRET).unwrap(), &body);
    let response = app
        .client
        .post(app.url("/webhooks/shopify"))
        .header("Content-Type", "application/json")
        .header("X-Shopify-Topic", topic)
        .header("X-Shopify-Hmac-Sha256", signature)
        .header("X-Shopify-Shop-Domain", SHOP)
        .header("X-Shopify-API-Version", "2025-10")
        .header("X-Shopify-Event-Id", event_id)
        .header("X-Shopify-Webhook-Id", uuid::Uuid::new_v4().to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// POSTs `body` to WooCommerce's endpoint as WooCommerce does: a new delivery id each time.
async fn woocommerce(app: &TestApp, topic: &str, body: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let signature = sign_platform(&Secret::parse(WOO_SECRET).unwrap(), &body);
    let response = app
        .client
        .post(app.url("/webhooks/woocommerce"))
        .header("Content-Type", "application/json")
        .header("X-WC-Webhook-Source", "https://shop.example/")
        .header("X-WC-Webhook-Topic", topic)
        .header("X-WC-Webhook-Signature", signature)
        .header("X-WC-Webhook-ID", "14")
        .header(
            "X-WC-Webhook-Delivery-ID",
            rand::random::<u32>().to_string(),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn every_shopify_topic_applies_once(backend: Backend) {
    let app = with_platforms(backend).await;
    let created = example("shopify/orders-create.json");
    let (status, receipt) = shopify(&app, "orders/create", "evt-create", &created).await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (201, Some("processed")),
        "{receipt}"
    );
    assert_eq!(receipt["event_id"], "evt-create");
    let shipment = app.shipment_of(SHOPIFY_ORDER).await;
    // Ids above 2^53, digit for digit.
    assert_eq!(shipment["customer_id"], "115310627314723954");
    assert_eq!(
        shipment["items"],
        json!([{"sku": "IPOD2008PINK", "quantity": 1}, {"sku": "variant:457924702", "quantity": 2}])
    );
    assert_eq!(
        shipment["shipping_address"],
        json!({"street": "123 Shipping Street, Suite 4", "city": "Shippington", "zip": "40003", "country": "US"})
    );
    assert_eq!(shipment["ordered_at"], "2026-12-01T15:15:00Z");

    // Redelivered: the same event id under a new webhook id.
    let (status, receipt) = shopify(&app, "orders/create", "evt-create", &created).await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (200, Some("duplicate"))
    );

    let (status, receipt) = shopify(
        &app,
        "orders/updated",
        "evt-update",
        &example("shopify/orders-updated.json"),
    )
    .await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (200, Some("updated")),
        "{receipt}"
    );
    let shipment = app.shipment_of(SHOPIFY_ORDER).await;
    assert_eq!(shipment["shipping_address"]["street"], "77 Corrected Road");
    assert_eq!(shipment["items"][1]["quantity"], 1);

    let (status, receipt) = shopify(
        &app,
        "orders/cancelled",
        "evt-cancel",
        &example("shopify/orders-cancelled.json"),
    )
    .await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (200, Some("updated")),
        "{receipt}"
    );
    let shipment = app.shipment_of(SHOPIFY_ORDER).await;
    assert_eq!(shipment["status"], "cancelled");
    assert_eq!(shipment["cancel_reason"], "customer");

    // Nothing for a shipment: another topic, an order with nothing to ship. Stored nowhere.
    let events = app.db.count_events().await;
    let (status, receipt) =
        shopify(&app, "products/update", "evt-product", &json!({"id": 1})).await;
    assert_eq!((status, receipt["status"].as_str()), (200, Some("ignored")));
    assert!(receipt["reason"]
        .as_str()
        .unwrap()
        .contains("products/update"));
    let mut digital = created.clone();
    digital["id"] = json!(5);
    for line in digital["line_items"].as_array_mut().unwrap() {
        line["requires_shipping"] = json!(false);
    }
    let (status, receipt) = shopify(&app, "orders/create", "evt-digital", &digital).await;
    assert_eq!((status, receipt["status"].as_str()), (200, Some("ignored")));
    assert!(
        receipt["reason"]
            .as_str()
            .unwrap()
            .contains("nothing to ship"),
        "{receipt}"
    );
    assert_eq!(app.db.count_events().await, events);
    assert_eq!(app.db.count_shipments().await, 1);
}

async fn woocommerce_topics_pings_and_redeliveries(backend: Backend) {
    let app = with_platforms(backend).await;
    // The ping of a saved webhook: unsigned, a form; answered 200, stored nowhere.
    let response = app
        .client
        .post(app.url("/webhooks/woocommerce"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("webhook_id=14")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.db.count_events().await, 0);
    let response = app
        .client
        .post(app.url("/webhooks/woocommerce"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("webhook_id=14&status=active")
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;

    let created = example("woocommerce/order.created.json");
    let (status, receipt) = woocommerce(&app, "order.created", &created).await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (201, Some("processed")),
        "{receipt}"
    );
    // The same payload again, under a new delivery id.
    let (status, receipt) = woocommerce(&app, "order.created", &created).await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (200, Some("duplicate"))
    );
    let shipment = app.shipment_of(WOO_ORDER).await;
    assert_eq!(shipment["customer_id"], "john.doe@example.com");
    assert_eq!(
        shipment["items"],
        json!([{"sku": "WOO-SINGLE-1", "quantity": 2}, {"sku": "variant:23", "quantity": 1}])
    );

    let (status, receipt) = woocommerce(
        &app,
        "order.updated",
        &example("woocommerce/order.updated.json"),
    )
    .await;
    assert_eq!((status, receipt["status"].as_str()), (200, Some("updated")));
    assert_eq!(app.shipment_of(WOO_ORDER).await["items"][0]["quantity"], 3);

    let (status, receipt) = woocommerce(
        &app,
        "order.deleted",
        &example("woocommerce/order.deleted.json"),
    )
    .await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (200, Some("updated")),
        "{receipt}"
    );
    let shipment = app.shipment_of(WOO_ORDER).await;
    assert_eq!(
        (
            shipment["status"].as_str(),
            shipment["cancel_reason"].as_str()
        ),
        (Some("cancelled"), Some("deleted"))
    );
    let (status, _) = woocommerce(
        &app,
        "order.deleted",
        &example("woocommerce/order.deleted.json"),
    )
    .await;
    assert_eq!(status, 200);

    // A second order, cancelled by its status.
    let mut second = created.clone();
    second["id"] = json!(728);
    woocommerce(&app, "order.created", &second).await;
    let mut cancelled = example("woocommerce/order.updated-cancelled.json");
    cancelled["id"] = json!(728);
    let (status, receipt) = woocommerce(&app, "order.updated", &cancelled).await;
    assert_eq!((status, receipt["status"].as_str()), (200, Some("updated")));
    let shipment = app.shipment_of("woocommerce:shop.example:728").await;
    assert_eq!(shipment["status"], "cancelled");
}

async fn changes_that_arrive_out_of_order_end_as_in_order(backend: Backend) {
    let app = with_platforms(backend).await;
    let (status, receipt) = shopify(
        &app,
        "orders/updated",
        "evt-u",
        &example("shopify/orders-updated.json"),
    )
    .await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (201, Some("processed"))
    );
    let (_, receipt) = shopify(
        &app,
        "orders/create",
        "evt-c",
        &example("shopify/orders-create.json"),
    )
    .await;
    assert_eq!(receipt["status"], "stale");
    let shipment = app.shipment_of(SHOPIFY_ORDER).await;
    assert_eq!(shipment["shipping_address"]["street"], "77 Corrected Road");

    let (_, receipt) = woocommerce(
        &app,
        "order.updated",
        &example("woocommerce/order.updated-cancelled.json"),
    )
    .await;
    assert_eq!(receipt["status"], "parked");
    let (_, receipt) = woocommerce(
        &app,
        "order.updated",
        &example("woocommerce/order.updated.json"),
    )
    .await;
    assert_eq!(receipt["status"], "processed");
    let (_, receipt) = woocommerce(
        &app,
        "order.created",
        &example("woocommerce/order.created.json"),
    )
    .await;
    assert_eq!(receipt["status"], "stale");
    let shipment = app.shipment_of(WOO_ORDER).await;
    assert_eq!(shipment["status"], "cancelled");
    assert_eq!(
        shipment["items"][0]["quantity"], 3,
        "the state before the cancellation"
    );
}

async fn an_authentic_call_that_cannot_be_mapped_is_quarantined_and_replayed_through_its_platform(
    backend: Backend,
) {
    let app = with_platforms(backend).await;
    let mut broken = example("shopify/orders-create.json");
    broken["shipping_address"]["zip"] = Value::Null;
    let (status, receipt) = shopify(&app, "orders/create", "evt-broken", &broken).await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (202, Some("quarantined")),
        "{receipt}"
    );
    assert_eq!(
        receipt["problem"]["errors"][0]["field"],
        "shipping_address.zip"
    );
    // Redelivered under a new webhook id: the same entry.
    let (_, again) = shopify(&app, "orders/create", "evt-broken", &broken).await;
    assert_eq!(again["quarantine_id"], receipt["quarantine_id"]);
    let id = receipt["quarantine_id"].as_str().unwrap();
    let entry = app.get_json(&format!("/quarantine/{id}")).await;
    assert_eq!(
        (entry["scheme"].as_str(), entry["deliveries"].as_i64()),
        (Some("shopify"), Some(2))
    );
    assert_eq!(entry["platform_headers"]["topic"], "orders/create");
    assert_eq!(entry["platform_headers"]["origin"], SHOP);
    assert_eq!(app.db.count_events().await, 0);

    // The correction is a Shopify order, mapped with the headers it came with.
    let mut fixed = broken.clone();
    fixed["shipping_address"]["zip"] = json!("40003");
    let response = app
        .call(
            Method::POST,
            &format!("/quarantine/{id}/replay"),
            Some(&json!({"body": fixed})),
        )
        .await;
    assert_eq!(response.status(), 201);
    let replayed: Value = response.json().await.unwrap();
    assert_eq!(replayed["status"], "processed", "{replayed}");
    assert_eq!(replayed["event_id"], "evt-broken");
    assert_eq!(replayed["quarantine"]["status"], "replayed");
    assert_eq!(
        app.shipment_of(SHOPIFY_ORDER).await["shipping_address"]["zip"],
        "40003"
    );
    let (status, receipt) = shopify(&app, "orders/create", "evt-broken", &fixed).await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (200, Some("duplicate"))
    );

    // A WooCommerce body that is no JSON at all.
    let body = b"{not json".to_vec();
    let signature = sign_platform(&Secret::parse(WOO_SECRET).unwrap(), &body);
    let response = app
        .client
        .post(app.url("/webhooks/woocommerce"))
        .header("Content-Type", "application/json")
        .header("X-WC-Webhook-Source", "https://shop.example/")
        .header("X-WC-Webhook-Topic", "order.created")
        .header("X-WC-Webhook-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let listing = app.get_json("/quarantine?status=held").await;
    assert_eq!(listing["items"][0]["scheme"], "woocommerce");
}

async fn forged_or_unsigned_calls_keep_nothing(backend: Backend) {
    let app = with_platforms(backend).await;
    let body = serde_json::to_vec(&example("shopify/orders-create.json")).unwrap();
    let good = sign_platform(&Secret::parse(SHOPIFY_SECRET).unwrap(), &body);
    let wrong = sign_platform(&Secret::parse(WOO_SECRET).unwrap(), &body);
    for (path, header, signature) in [
        ("/webhooks/shopify", "X-Shopify-Hmac-Sha256", wrong.as_str()),
        ("/webhooks/shopify", "X-Shopify-Hmac-Sha256", "not base64!"),
        ("/webhooks/shopify", "X-Other", good.as_str()),
        // WooCommerce's header, or the other platform's secret, proves nothing here.
        ("/webhooks/shopify", "X-WC-Webhook-Signature", good.as_str()),
        (
            "/webhooks/woocommerce",
            "X-WC-Webhook-Signature",
            good.as_str(),
        ),
        (
            "/webhooks/woocommerce",
            "X-Shopify-Hmac-Sha256",
            wrong.as_str(),
        ),
    ] {
        let response = app
            .client
            .post(app.url(path))
            .header("Content-Type", "application/json")
            .header("X-Shopify-Topic", "orders/create")
            .header("X-Shopify-Shop-Domain", SHOP)
            .header("X-WC-Webhook-Topic", "order.created")
            .header("X-WC-Webhook-Source", "https://shop.example/")
            .header(header, signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_problem(response, 401).await;
    }
    let response = app
        .client
        .post(app.url("/webhooks/shopify"))
        .header("Content-Type", "text/plain")
        .header("X-Shopify-Hmac-Sha256", good)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(response, 415).await;
    assert_eq!(app.db.count_events().await, 0);
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM quarantine").await, 0);
}

async fn the_endpoints_are_off_until_their_secrets_are_set(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/webhooks/shopify", "/webhooks/woocommerce"] {
        let response = app
            .client
            .post(app.url(path))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_problem(response, 404).await;
    }
    // Only the platform whose secrets are set is on.
    let app = spawn_app_with(backend, &[("WOOCOMMERCE_WEBHOOK_SECRETS", WOO_SECRET)]).await;
    let (status, _) = shopify(
        &app,
        "orders/create",
        "e",
        &example("shopify/orders-create.json"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = woocommerce(
        &app,
        "order.created",
        &example("woocommerce/order.created.json"),
    )
    .await;
    assert_eq!(status, 201);
}

async fn send_signs_as_each_platform(backend: Backend) {
    let app = with_platforms(backend).await;
    let examples = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    for (scheme, topic, file, url, order) in [
        (
            "shopify",
            "orders/create",
            "shopify/orders-create.json",
            "/webhooks/shopify",
            SHOPIFY_ORDER,
        ),
        (
            "woocommerce",
            "order.created",
            "woocommerce/order.created.json",
            "/webhooks/woocommerce",
            WOO_ORDER,
        ),
    ] {
        let secret = if scheme == "shopify" {
            SHOPIFY_SECRET
        } else {
            WOO_SECRET
        };
        let path = format!("{examples}/{file}");
        let url = app.url(url);
        let args = [
            "send",
            &path,
            "--scheme",
            scheme,
            "--topic",
            topic,
            "--shop",
            if scheme == "shopify" {
                SHOP
            } else {
                "https://shop.example/"
            },
            "--url",
            &url,
            "--secret",
            secret,
        ];
        let first = run_command(&args, &[]).await;
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        let answer: Value = serde_json::from_slice(&first.stdout).unwrap();
        assert_eq!(answer["status"], "processed", "{scheme}: {answer}");
        // Sent again: the platform's same event, so a duplicate.
        let again = run_command(&args, &[]).await;
        let answer: Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(answer["status"], "duplicate", "{scheme}");
        app.shipment_of(order).await;
    }
}
