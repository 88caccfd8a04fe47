//! SQLite: one file, one writer. All writes go through the group-committing writer task
//! (`batch.rs`), which owns the only write connection: one fsync covers a whole batch, and no
//! request ever meets `database is locked` from a sibling connection. Reads use their own
//! pool (WAL lets them run beside the writer).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{Connection, SqliteConnection};

use super::batch::{Batcher, Commit};
use super::plan::{self, Loaded, Plan};
use super::rows::{load_sql, LoadRow, UPSERT_SHIPMENT, WHILE_SUBSCRIBED};
use super::{time_text, Applied, ConnectError, StoreError, ACQUIRE_TIMEOUT};
use crate::domain::Delivery;

const DEFAULT_READERS: u32 = 4;
/// Another process (a second instance, `migrate`) may hold the write lock briefly.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct SqliteStore {
    pub(super) readers: SqlitePool,
    pub(super) writer: SqlitePool,
    pub(super) batcher: Batcher,
    /// Woken after every commit that wrote outbound events.
    pub(super) announced: Arc<Notify>,
    pub(super) description: String,
}

impl SqliteStore {
    pub async fn connect(
        url: &str,
        max_connections: Option<u32>,
    ) -> Result<SqliteStore, ConnectError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a 2xx promises the event survives a power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let path = options.get_filename().to_owned();
        let cannot_open = |reason: String| ConnectError::SqliteFile {
            path: path.display().to_string(),
            reason,
        };
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|error| {
                cannot_open(format!("cannot create {}: {error}", folder.display()))
            })?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|error| cannot_open(crate::telemetry::error_chain(&error)))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(max_connections.unwrap_or(DEFAULT_READERS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let announced = Arc::new(Notify::new());
        let batcher = Batcher::spawn(SqliteWriter {
            pool: writer.clone(),
            announced: announced.clone(),
        });
        Ok(SqliteStore {
            readers,
            writer,
            batcher,
            announced,
            description: format!("SQLite {}", path.display()),
        })
    }

    pub async fn apply(&self, delivery: Delivery) -> Result<Applied, StoreError> {
        self.batcher.apply(delivery).await
    }

    /// Called once the server has stopped taking requests, so the queue is already drained.
    pub async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
    }
}

struct SqliteWriter {
    pool: SqlitePool,
    announced: Arc<Notify>,
}

impl Commit for SqliteWriter {
    async fn commit(&self, deliveries: &[&Delivery]) -> Result<Vec<Applied>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::unavailable)?;
        // IMMEDIATE takes the write lock up front: it is the lock on every order at once, and
        // what is read below cannot change before the commit.
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<LoadRow> = sqlx::query_as(&load_sql(
            "IN (SELECT value FROM json_each($1))",
            "IN (SELECT value FROM json_each($2))",
        ))
        .bind(Json(plan::orders_of(deliveries)))
        .bind(Json(plan::event_ids_of(deliveries)))
        .fetch_all(&mut *tx)
        .await?;
        let now = super::now();
        let plan = plan::plan(deliveries, Loaded::from_rows(rows)?, now);
        let announced = save(&mut tx, &plan, now).await?;
        tx.commit().await?;
        if announced > 0 {
            self.announced.notify_one();
        }
        Ok(plan.answers)
    }
}

/// Three statements whatever the batch's size, one per table: each takes its rows as one JSON
/// array, so a batch costs three hops to SQLite's worker thread instead of three per event.
/// Returns how many outbound events were written.
async fn save(
    conn: &mut SqliteConnection,
    plan: &Plan<'_>,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let received_at = time_text(now);
    let events: Vec<serde_json::Value> = plan
        .events
        .iter()
        .map(|row| {
            serde_json::json!([
                row.event_id,
                row.derived_id,
                row.event_type,
                row.order_id,
                row.outcome.as_str(),
                row.shipment_id.map(|id| id.simple().to_string()),
                row.version,
                row.state().map(|state| state.0),
                row.reason(),
                row.occurred_at.map(time_text),
                received_at,
            ])
        })
        .collect();
    sqlx::query(
        "INSERT INTO processed_events (event_id, derived_id, event_type, order_id, outcome, \
                                       shipment_id, version, state, reason, occurred_at, \
                                       received_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                unhex(value ->> 5), value ->> 6, value ->> 7, value ->> 8, value ->> 9, \
                value ->> 10 \
         FROM json_each($1)",
    )
    .bind(Json(events))
    .execute(&mut *conn)
    .await?;
    if !plan.shipments.is_empty() {
        let shipments: Vec<serde_json::Value> = plan
            .shipments
            .iter()
            .map(|shipment| {
                serde_json::json!([
                    shipment.id.simple().to_string(),
                    shipment.order_id,
                    shipment.customer_id,
                    shipment.items,
                    shipment.shipping_address,
                    shipment.status.as_str(),
                    shipment.version,
                    shipment.revision,
                    shipment.cancel_reason,
                    shipment.source_event_id,
                    time_text(shipment.ordered_at),
                    time_text(shipment.created_at),
                    time_text(shipment.updated_at),
                ])
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO shipments (id, order_id, customer_id, items, shipping_address, status, \
                                    version, revision, cancel_reason, source_event_id, \
                                    ordered_at, created_at, updated_at) \
             SELECT unhex(value ->> 0), value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                    value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, \
                    value ->> 10, value ->> 11, value ->> 12 \
             FROM json_each($1) WHERE true {UPSERT_SHIPMENT}"
        ))
        .bind(Json(shipments))
        .execute(&mut *conn)
        .await?;
    }
    if plan.outbox.is_empty() {
        return Ok(0);
    }
    let outbox: Vec<serde_json::Value> = plan
        .outbox
        .iter()
        .map(|row| {
            serde_json::json!([
                row.id.simple().to_string(),
                row.shipment_id.simple().to_string(),
                row.change.as_str(),
                row.body,
                time_text(row.created_at),
            ])
        })
        .collect();
    let written = sqlx::query(&format!(
        "INSERT INTO outbox_events (id, shipment_id, event_type, body, created_at) \
         SELECT unhex(value ->> 0), unhex(value ->> 1), value ->> 2, value ->> 3, \
                value ->> 4 \
         FROM json_each($1) WHERE {WHILE_SUBSCRIBED}"
    ))
    .bind(Json(outbox))
    .execute(&mut *conn)
    .await?;
    Ok(written.rows_affected())
}
