//! A database written by the previous release (schema version 2, shipments made by its
//! `order.created` write path) upgrades in place when this version starts, and keeps serving
//! its shipments and recognising its events.

use std::path::Path;
use std::str::FromStr;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{lifecycle_event, spawn_app_on, Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(a_database_of_the_previous_release_upgrades_with_its_shipments);

/// The last schema version of the previous release.
const PREVIOUS_SCHEMA: i64 = 2;

async fn previous_release_migrator(backend: Backend) -> sqlx::migrate::Migrator {
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let dir = format!("{}/migrations/{folder}", env!("CARGO_MANIFEST_DIR"));
    let mut migrator = sqlx::migrate::Migrator::new(Path::new(&dir)).await.unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|migration| migration.version <= PREVIOUS_SCHEMA)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    migrator
}

/// Writes one order the way the previous release did, and returns its shipment id.
async fn write_as_the_previous_release(db: &TestDb) -> Uuid {
    let id = Uuid::now_v7();
    let items = json!([{"sku": "SKU001", "quantity": 2}]).to_string();
    let address = json!({"street": "1 Old St", "city": "Oldtown", "zip": "1"}).to_string();
    let ordered_at = chrono::DateTime::parse_from_rfc3339("2023-10-27T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let migrator = previous_release_migrator(db.backend).await;
    match db.backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            migrator.run(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO processed_events (event_id, event_type, order_id, outcome, shipment_id, received_at) \
                 VALUES ('order.created:ORD-OLD', 'order.created', 'ORD-OLD', 'processed', $1, $2)",
            )
            .bind(id)
            .bind(chrono::Utc::now())
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO shipments (id, order_id, customer_id, items, shipping_address, status, \
                                        source_event_id, ordered_at, created_at, updated_at) \
                 VALUES ($1, 'ORD-OLD', 'CUST-OLD', $2, $3, 'pending', 'order.created:ORD-OLD', $4, $5, $5)",
            )
            .bind(id)
            .bind(&items)
            .bind(&address)
            .bind(ordered_at)
            .bind(chrono::Utc::now())
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            migrator.run(&pool).await.unwrap();
            // The previous release's own write path, still in that schema.
            sqlx::query(
                "SELECT * FROM apply_event('order.created:ORD-OLD', 'order.created', 'ORD-OLD', $1, \
                                           'CUST-OLD', $2::jsonb, $3::jsonb, $4, now())",
            )
            .bind(id)
            .bind(&items)
            .bind(&address)
            .bind(ordered_at)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
    id
}

async fn a_database_of_the_previous_release_upgrades_with_its_shipments(backend: Backend) {
    let db = TestDb::create(backend).await;
    let id = write_as_the_previous_release(&db).await;

    let app = spawn_app_on(db, &[]).await;

    let shipment = app.get_json(&format!("/shipments/{id}")).await;
    assert_eq!(shipment["order_id"], "ORD-OLD");
    assert_eq!(shipment["customer_id"], "CUST-OLD");
    assert_eq!(shipment["shipping_address"]["city"], "Oldtown");
    assert_eq!(shipment["status"], "pending");
    assert_eq!(shipment["version"], 1);
    assert_eq!(shipment["revision"], 1);
    let mut created = lifecycle_event("order.created", "ORD-OLD", None);
    created["data"]["customer_id"] = json!("CUST-OLD");
    let again: Value = app.post_event(&created).await.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["shipment_id"], id.to_string());
    // The old creation is the history a new event folds onto.
    let cancel = lifecycle_event("order.cancelled", "ORD-OLD", None);
    let cancelled: Value = app.post_event(&cancel).await.json().await.unwrap();
    assert_eq!(cancelled["status"], "updated");
    let shipment = app.get_json(&format!("/shipments/{id}")).await;
    assert_eq!(shipment["status"], "cancelled");
    assert_eq!(shipment["customer_id"], "CUST-OLD");
    assert_eq!(shipment["version"], 2);
    assert_eq!(shipment["revision"], 2);
}
