use serde_json::Value;

use crate::helpers::{order_event, post_signed_to, test_env, Backend, ServiceProcess, TestDb};
use crate::on_both_backends;

on_both_backends!(a_shipment_survives_a_kill_and_its_redelivery_is_a_duplicate);

async fn post(client: &reqwest::Client, address: &str, body: &[u8]) -> (u16, Value) {
    let response = post_signed_to(client, address, body).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn a_shipment_survives_a_kill_and_its_redelivery_is_a_duplicate(backend: Backend) {
    let db = TestDb::create(backend).await;
    let env = test_env(&db);
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&order_event("ORD-CRASH")).unwrap();
    let service = ServiceProcess::start(&env);
    let (status, created) = post(&client, &service.address, &body).await;
    assert_eq!(status, 201);

    service.kill();
    let restarted = ServiceProcess::start(&env);
    let (status, again) = post(&client, &restarted.address, &body).await;

    assert_eq!(status, 200);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["shipment_id"], created["shipment_id"]);
    assert_eq!(db.count_shipments().await, 1);
}
