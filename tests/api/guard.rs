//! Every write of a shipment is guarded by the revision its writer read: a change made between
//! a writer's read and its write (by another writer, or retention marking the order) makes the
//! write fail and start again from what is now stored, never overwrite it.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;

use crate::helpers::{check_deadline, lifecycle_event, spawn_app, Backend};

/// The batch writer is held between its load and its save (the test locks a table the save
/// writes), a concurrent change of the shipment commits meanwhile, and then the save goes on:
/// the guard finds the revision changed, the batch is loaded and folded again, and both changes
/// stand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_change_between_a_batchs_read_and_write_is_not_overwritten() {
    let app = spawn_app(Backend::Postgres).await;
    let shipment = app.create_shipment("ORD-GUARD").await;
    let mut racer = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut racer).await.unwrap();
    sqlx::query("LOCK TABLE outbox_events IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut racer)
        .await
        .unwrap();

    let mut update = lifecycle_event("order.updated", "ORD-GUARD", None);
    update["data"]["customer_id"] = json!("CUST-UPDATED");
    let body = serde_json::to_vec(&update).unwrap();
    let applied = tokio::spawn({
        let (client, address) = (app.client.clone(), app.address.clone());
        async move { crate::helpers::post_signed_to(&client, &address, &body).await }
    });
    // The writer has loaded revision 1 and waits for the table its save writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE NOT l.granted AND c.relname = 'outbox_events'",
        )
        .fetch_one(&mut racer)
        .await
        .unwrap();
        if waiting == 1 {
            break;
        }
        check_deadline(deadline, "the batch's save to wait");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query(
        "UPDATE shipments SET carrier = 'RACER', revision = revision + 1 \
         WHERE order_id = 'ORD-GUARD'",
    )
    .execute(&mut racer)
    .await
    .unwrap();
    sqlx::query("COMMIT").execute(&mut racer).await.unwrap();
    let response = applied.await.unwrap().unwrap();

    assert_eq!(response.status(), 200);
    let stored = app.get_json(&format!("/shipments/{shipment}")).await;
    assert_eq!(stored["customer_id"], "CUST-UPDATED", "the event applied");
    assert_eq!(stored["carrier"], "RACER", "the concurrent change kept");
    assert_eq!(stored["revision"], 3);
}

/// SQLite's one write lock leaves no room between a read and a write; a trigger makes one,
/// changing the shipment inside the batch's own transaction after it was read. The guarded
/// write refuses, every retry meets the same, and the event is answered 503 with nothing
/// recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_shipment_changed_after_it_was_read_is_not_overwritten() {
    let app = spawn_app(Backend::Sqlite).await;
    let shipment = app.create_shipment("ORD-GUARD").await;
    app.db
        .execute(
            "CREATE TRIGGER racer AFTER INSERT ON processed_events \
             WHEN NEW.order_id = 'ORD-GUARD' BEGIN \
               UPDATE shipments SET carrier = 'RACER', revision = revision + 1 \
               WHERE order_id = NEW.order_id; \
             END",
        )
        .await;

    let mut update = lifecycle_event("order.updated", "ORD-GUARD", None);
    update["data"]["customer_id"] = json!("CUST-UPDATED");
    let response = app.post_event(&update).await;

    assert_eq!(response.status(), 503);
    let stored = app.get_json(&format!("/shipments/{shipment}")).await;
    assert_eq!(stored["customer_id"], "CUST987");
    assert_eq!(stored["revision"], 1);
    assert_eq!(app.db.count_events().await, 1, "only the creation");
}
