//! The SQLite batch writer: a batch of webhook deliveries in one transaction on a connection
//! of its own, opened without sqlx (see the module above), with statements prepared once.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::store::DispatchSignals;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};

use crate::domain::plan::{self, Loaded, Plan};
use crate::domain::{Applied, Delivery};
use crate::store::batch::ApplyBatch;
use crate::store::dialect::Dialect;
use crate::store::outbox::{insert_deliveries, insert_outbound};
use crate::store::rows::{load_sql, LoadColumns, LoadRow, EVENT_WRITTEN, SHIPMENT_WRITTEN};
use crate::store::{json_text, time_text, StoreError};

pub(super) struct SqliteWriter {
    /// Only the writer's thread uses it; the mutex makes it shareable, never waits.
    conn: Mutex<Connection>,
    /// Held by whichever of this process's two writing connections writes.
    write_turn: Arc<tokio::sync::Mutex<()>>,
    wakeup: Arc<DispatchSignals>,
}

impl SqliteWriter {
    pub(super) fn new(
        conn: Connection,
        write_turn: Arc<tokio::sync::Mutex<()>>,
        wakeup: Arc<DispatchSignals>,
    ) -> SqliteWriter {
        SqliteWriter {
            conn: Mutex::new(conn),
            write_turn,
            wakeup,
        }
    }
}

impl ApplyBatch for SqliteWriter {
    async fn apply_batch(&self, deliveries: &[&Delivery]) -> Result<Vec<Applied>, StoreError> {
        let _turn = self.write_turn.lock().await;
        let (answers, announced) = self.write(deliveries)?;
        if announced > 0 {
            self.wakeup.notify_one();
        }
        Ok(answers)
    }
}

/// The batch's statements that are assembled from shared pieces, built once: the statement
/// cache finds them by their text on every batch.
static ANNOUNCE: LazyLock<String> =
    LazyLock::new(|| insert_outbound("SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7"));

static DELIVER: LazyLock<String> = LazyLock::new(|| {
    insert_deliveries(
        Dialect::Sqlite,
        "SELECT id, shipment_id, event_type, created_at, seq FROM outbox_events \
         WHERE id IN (SELECT unhex(value) FROM json_each(?1))",
    )
});

static LOAD: LazyLock<String> = LazyLock::new(|| {
    load_sql(
        "IN (SELECT value FROM json_each(?1))",
        "IN (SELECT value FROM json_each(?2))",
    )
});

impl SqliteWriter {
    /// Returns each delivery's answer and how many outbound events were written.
    fn write(&self, deliveries: &[&Delivery]) -> Result<(Vec<Applied>, usize), StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        // IMMEDIATE takes the write lock up front: it is the lock on every order at once, and
        // what is read below cannot change before the commit.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let orders = plan::orders_of(deliveries);
        let mut load = tx.prepare_cached(&LOAD)?;
        let columns = LoadColumns::of(&load)?;
        let rows = load
            .query_map(
                params![
                    json_text(&orders),
                    json_text(&plan::event_ids_of(deliveries)),
                ],
                |row| LoadRow::from_sqlite(row, &columns),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(load);
        let now = crate::store::now();
        let plan = plan::plan(deliveries, Loaded::from_rows(rows, &orders)?, now);
        let announced = save(&tx, &plan, now)?;
        tx.commit()?;
        Ok((plan.answers, announced))
    }
}

static INSERT_EVENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO processed_events ({EVENT_WRITTEN}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    )
});
static INSERT_SHIPMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO shipments ({SHIPMENT_WRITTEN}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    )
});

/// One prepared statement per table, run once per row: calls into the library in this
/// thread, each cheaper than encoding the rows for one statement. Times are written as text
/// the way sqlx writes them, since the other connections read and compare them. A shipment
/// or a head is written only over what the batch read (the plan's guards; under the write lock
/// they always hold). Returns how many outbound events were written.
fn save(conn: &Connection, plan: &Plan<'_>, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let received_at = time_text(now);
    let mut insert_event = conn.prepare_cached(&INSERT_EVENT)?;
    for row in &plan.events {
        insert_event.execute(params![
            row.event_id,
            row.derived_id,
            row.event_type,
            row.order_id,
            row.outcome.as_str(),
            row.shipment_id,
            row.version,
            row.state().map(json_text),
            row.reason(),
            row.occurred_at.map(time_text),
            received_at,
            row.outcome.joins_history(),
            row.head_seq,
        ])?;
    }
    let mut advance_head = conn.prepare_cached(
        "UPDATE processed_events SET head_seq = ?2 + 1 \
         WHERE order_id = ?1 AND in_history AND head_seq = ?2",
    )?;
    for head in &plan.heads {
        if advance_head.execute(params![head.order_id, head.read_seq])? != 1 {
            return Err(StoreError::stale(format!(
                "order {} changed after its head {} was read",
                head.order_id, head.read_seq
            )));
        }
    }
    let mut insert_shipment = conn.prepare_cached(&INSERT_SHIPMENT)?;
    let mut update_shipment = conn.prepare_cached(
        "UPDATE shipments SET customer_id = ?3, items = ?4, shipping_address = ?5, \
                status = ?6, version = ?7, revision = ?8, cancel_reason = ?9, carrier = ?10, \
                tracking_number = ?11, ordered_at = ?13, updated_at = ?15, head_seq = ?16 \
         WHERE id = ?1 AND revision = ?17 AND head_seq = ?18",
    )?;
    for write in &plan.shipments {
        let shipment = &write.shipment;
        let columns = params![
            shipment.id,
            shipment.order_id,
            shipment.customer_id,
            json_text(&shipment.items),
            json_text(&shipment.shipping_address),
            shipment.status.as_str(),
            shipment.version,
            shipment.revision,
            shipment.cancel_reason,
            shipment.carrier,
            shipment.tracking_number,
            shipment.source_event_id,
            time_text(shipment.ordered_at),
            time_text(shipment.created_at),
            time_text(shipment.updated_at),
            write.head_seq,
        ];
        match &write.read {
            None => {
                insert_shipment.execute(columns)?;
            }
            Some((revision, head_seq)) => {
                let mut guarded = columns.to_vec();
                guarded.extend([revision as &dyn rusqlite::ToSql, head_seq]);
                if update_shipment.execute(guarded.as_slice())? != 1 {
                    return Err(StoreError::stale(format!(
                        "shipment {} changed after revision {revision} was read",
                        shipment.id
                    )));
                }
            }
        }
    }
    let mut announce = conn.prepare_cached(&ANNOUNCE)?;
    let mut written = 0;
    for row in &plan.outbox {
        written += announce.execute(params![
            row.id,
            row.shipment_id,
            row.change.as_str(),
            row.body,
            time_text(row.created_at),
            row.trace.as_ref().map(|trace| &trace.parent),
            row.trace.as_ref().and_then(|trace| trace.state.as_ref()),
        ])?;
    }
    if written > 0 {
        let ids: Vec<String> = plan
            .outbox
            .iter()
            .map(|row| row.id.simple().to_string())
            .collect();
        conn.prepare_cached(&DELIVER)?
            .execute(params![json_text(&ids)])?;
    }
    Ok(written)
}
