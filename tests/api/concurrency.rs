use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{order_event, spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(fifty_concurrent_deliveries_of_one_event_create_one_shipment);

async fn fifty_concurrent_deliveries_of_one_event_create_one_shipment(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::to_vec(&order_event("ORD-RACE")).unwrap();

    let responses = join_all((0..50).map(|_| app.post_signed(&body))).await;

    let mut statuses = Vec::new();
    let mut shipment_ids = Vec::new();
    for response in responses {
        statuses.push(response.status().as_u16());
        let receipt: Value = response.json().await.unwrap();
        shipment_ids.push(receipt["shipment_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        49,
        "{statuses:?}"
    );
    shipment_ids.dedup();
    assert_eq!(shipment_ids.len(), 1);
    assert_eq!(app.db.count_shipments().await, 1);
}
