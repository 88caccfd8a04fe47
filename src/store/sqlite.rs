//! SQLite: one file, one writer. All writes go through the group-committing writer task
//! (`batch.rs`), which owns the only write connection: one fsync covers a whole batch, and no
//! request ever meets `database is locked` from a sibling connection. Reads use their own
//! pool (WAL lets them run beside the writer).

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{Connection, SqliteConnection};
use uuid::Uuid;

use super::batch::{Batcher, Writer};
use super::{Applied, Outcome, StoreError, ACQUIRE_TIMEOUT};
use crate::domain::{Delivery, Event};

const DEFAULT_READERS: u32 = 4;
/// Another process (a second instance, `migrate`) may hold the write lock briefly.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct SqliteStore {
    pub(super) readers: SqlitePool,
    pub(super) writer: SqlitePool,
    batcher: Batcher,
}

impl SqliteStore {
    pub async fn connect(
        url: &str,
        max_connections: Option<u32>,
    ) -> Result<SqliteStore, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a 2xx promises the event survives a power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        if let Some(folder) = options
            .get_filename()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).map_err(sqlx::Error::Io)?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(max_connections.unwrap_or(DEFAULT_READERS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let batcher = Batcher::spawn(Writer::Sqlite(writer.clone()));
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

/// Applies the deliveries in order in one transaction.
pub(super) async fn commit(
    writer: &SqlitePool,
    deliveries: &[&Delivery],
) -> Result<Vec<Applied>, StoreError> {
    let mut conn = writer.acquire().await.map_err(StoreError::unavailable)?;
    // IMMEDIATE takes the write lock up front instead of failing to upgrade mid-transaction.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut answers = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        answers.push(apply_one(&mut tx, delivery).await?);
    }
    tx.commit().await?;
    Ok(answers)
}

/// The same steps as PostgreSQL's `apply_event`: record the event id first, then the shipment.
async fn apply_one(
    conn: &mut SqliteConnection,
    delivery: &Delivery,
) -> Result<Applied, StoreError> {
    let order = match &delivery.event {
        Event::OrderCreated(order) => Some(order),
        Event::Other { .. } => None,
    };
    let shipment_id = order.map(|_| Uuid::now_v7());
    let now = Utc::now();
    let recorded = sqlx::query(
        "INSERT INTO processed_events (event_id, event_type, order_id, outcome, shipment_id, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&delivery.event_id)
    .bind(delivery.event.event_type())
    .bind(delivery.event.order_id())
    .bind(if order.is_some() { "processed" } else { "ignored" })
    .bind(shipment_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !recorded {
        let (outcome, shipment_id): (String, Option<Uuid>) =
            sqlx::query_as("SELECT outcome, shipment_id FROM processed_events WHERE event_id = $1")
                .bind(&delivery.event_id)
                .fetch_one(&mut *conn)
                .await?;
        return Applied::from_row(false, &outcome, shipment_id);
    }
    let (Some(order), Some(shipment_id)) = (order, shipment_id) else {
        return Ok(Applied {
            outcome: Outcome::Ignored,
            shipment_id: None,
        });
    };
    let created = sqlx::query(
        "INSERT INTO shipments (id, order_id, customer_id, items, shipping_address, status, \
                                source_event_id, ordered_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $8) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(shipment_id)
    .bind(&order.order_id)
    .bind(&order.customer_id)
    .bind(Json(&order.items))
    .bind(Json(&order.shipping_address))
    .bind(&delivery.event_id)
    .bind(order.ordered_at)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if created {
        return Ok(Applied {
            outcome: Outcome::Processed,
            shipment_id: Some(shipment_id),
        });
    }
    let existing: Uuid = sqlx::query_scalar("SELECT id FROM shipments WHERE order_id = $1")
        .bind(&order.order_id)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE processed_events SET outcome = 'duplicate', shipment_id = $1 WHERE event_id = $2",
    )
    .bind(existing)
    .bind(&delivery.event_id)
    .execute(&mut *conn)
    .await?;
    Ok(Applied {
        outcome: Outcome::Duplicate,
        shipment_id: Some(existing),
    })
}
