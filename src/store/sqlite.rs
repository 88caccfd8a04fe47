//! SQLite: one file, one writer. All writes go through the group-committing writer task
//! (`batch.rs`), which owns the only write connection: one fsync covers a whole batch, and no
//! request ever meets `database is locked` from a sibling connection. Reads use their own
//! pool (WAL lets them run beside the writer).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{Connection, SqliteConnection};

use super::batch::{Batcher, Commit};
use super::plan::{self, Loaded, Plan};
use super::rows::{HistoryRow, KnownRow, StoredShipmentRow, HISTORY_COLUMNS, UPSERT_SHIPMENT};
use super::{Applied, ConnectError, StoreError, ACQUIRE_TIMEOUT};
use crate::domain::Delivery;

const DEFAULT_READERS: u32 = 4;
/// Another process (a second instance, `migrate`) may hold the write lock briefly.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct SqliteStore {
    pub(super) readers: SqlitePool,
    pub(super) writer: SqlitePool,
    pub(super) batcher: Batcher,
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
        let batcher = Batcher::spawn(SqliteWriter(writer.clone()));
        Ok(SqliteStore {
            readers,
            writer,
            batcher,
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

struct SqliteWriter(SqlitePool);

impl Commit for SqliteWriter {
    async fn commit(&self, deliveries: &[&Delivery]) -> Result<Vec<Applied>, StoreError> {
        let mut conn = self.0.acquire().await.map_err(StoreError::unavailable)?;
        // IMMEDIATE takes the write lock up front: it is the lock on every order at once, and
        // the history read below cannot change before the commit.
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let loaded = load(
            &mut tx,
            &plan::event_ids_of(deliveries),
            &plan::orders_of(deliveries),
        )
        .await?;
        let plan = plan::plan(deliveries, loaded);
        save(&mut tx, &plan, Utc::now()).await?;
        tx.commit().await?;
        Ok(plan.answers)
    }
}

/// The same reads as PostgreSQL's, with a JSON array standing in for an array parameter.
async fn load(
    conn: &mut SqliteConnection,
    event_ids: &[String],
    orders: &[String],
) -> Result<Loaded, StoreError> {
    let mut loaded = Loaded::default();
    let known: Vec<KnownRow> = sqlx::query_as(
        "SELECT e.event_id, e.derived_id, e.outcome, e.order_id, s.id AS shipment_id \
         FROM processed_events e LEFT JOIN shipments s ON s.order_id = e.order_id \
         WHERE e.event_id IN (SELECT value FROM json_each($1))",
    )
    .bind(Json(event_ids))
    .fetch_all(&mut *conn)
    .await?;
    for row in known {
        let (key, event) = row.into_known()?;
        loaded.known.insert(key, event);
    }
    if orders.is_empty() {
        return Ok(loaded);
    }
    let history: Vec<HistoryRow> = sqlx::query_as(&format!(
        "SELECT {HISTORY_COLUMNS} FROM processed_events \
         WHERE order_id IN (SELECT value FROM json_each($1))"
    ))
    .bind(Json(orders))
    .fetch_all(&mut *conn)
    .await?;
    for row in history {
        if let Some((order, outcome, fact)) = row.into_fact()? {
            loaded
                .history
                .entry(order)
                .or_default()
                .push((outcome, fact));
        }
    }
    let shipments: Vec<StoredShipmentRow> = sqlx::query_as(
        "SELECT order_id, id, revision, operator_status, source_event_id, created_at \
         FROM shipments WHERE order_id IN (SELECT value FROM json_each($1))",
    )
    .bind(Json(orders))
    .fetch_all(&mut *conn)
    .await?;
    for row in shipments {
        let (order, shipment) = row.into_stored()?;
        loaded.shipments.insert(order, shipment);
    }
    Ok(loaded)
}

/// One prepared statement per row: SQLite runs in this process, so a row costs no round trip.
async fn save(
    conn: &mut SqliteConnection,
    plan: &Plan<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for row in &plan.events {
        sqlx::query(
            "INSERT INTO processed_events (event_id, derived_id, event_type, order_id, outcome, \
                                           shipment_id, version, state, reason, occurred_at, \
                                           received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(row.event_id)
        .bind(row.derived_id)
        .bind(row.event_type)
        .bind(row.order_id)
        .bind(row.outcome.as_str())
        .bind(row.shipment_id)
        .bind(row.version)
        .bind(row.state())
        .bind(row.reason())
        .bind(row.occurred_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    for write in &plan.shipments {
        sqlx::query(&format!(
            "INSERT INTO shipments (id, order_id, customer_id, items, shipping_address, status, \
                                    version, revision, cancel_reason, source_event_id, \
                                    ordered_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) {UPSERT_SHIPMENT}"
        ))
        .bind(write.stored.id)
        .bind(&write.order_id)
        .bind(&write.folded.state.customer_id)
        .bind(Json(&write.folded.state.items))
        .bind(Json(&write.folded.state.shipping_address))
        .bind(write.status.as_str())
        .bind(write.folded.version)
        .bind(write.stored.revision)
        .bind(write.folded.cancel_reason.as_deref())
        .bind(&write.stored.source_event_id)
        .bind(write.folded.ordered_at)
        .bind(write.stored.created_at)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
