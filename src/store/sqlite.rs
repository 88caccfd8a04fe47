//! SQLite: one file, one writer at a time. Webhooks go through the group-committing writer
//! (`batch.rs`) on a thread of its own with its own connection, opened without sqlx: a batch
//! is a handful of calls into SQLite with statements prepared once, where each sqlx call
//! would be a round trip to sqlx's worker thread, which cost more than the work. One sync
//! covers a whole batch. The other writes (operators, subscriptions, the dispatcher) use one
//! sqlx connection and take turns with the batch writer, so neither waits in SQLite's
//! busy handler. Reads use their own pool (WAL lets them run beside the writer).

use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::Notify;

use super::batch::{Batcher, Commit};
use super::plan::{self, Loaded, Plan};
use super::rows::{load_sql, LoadRow, UPSERT_SHIPMENT, WHILE_SUBSCRIBED};
use super::{json_text, time_text, Applied, ConnectError, StoreError, ACQUIRE_TIMEOUT};
use crate::domain::Delivery;

const DEFAULT_READERS: u32 = 4;
/// Another process (a second instance, `migrate`) may hold the write lock briefly. Also the
/// batch writer's deadline for a lock wait: its calls block, so the batcher's own deadline
/// cannot cut them short.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct SqliteStore {
    pub(super) readers: SqlitePool,
    pub(super) writer: SqlitePool,
    /// Held by whichever of this process's two writing connections writes.
    pub(super) write_turn: Arc<tokio::sync::Mutex<()>>,
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
        if is_in_memory(url) {
            return Err(ConnectError::SqliteInMemory);
        }
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
        let write_turn = Arc::new(tokio::sync::Mutex::new(()));
        let batcher = open_batch_writer(&path)
            .map_err(StoreError::from)
            .and_then(|conn| {
                Batcher::spawn_thread(SqliteWriter {
                    conn: Mutex::new(conn),
                    write_turn: write_turn.clone(),
                    announced: announced.clone(),
                })
                .map_err(StoreError::unavailable)
            })
            .map_err(|error| cannot_open(crate::telemetry::error_chain(&error)))?;
        Ok(SqliteStore {
            readers,
            writer,
            write_turn,
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

/// `sqlite::memory:` or `?mode=memory`: a 2xx promises the event is on disk. (The batch
/// writer's own connection could not share such a database with sqlx's either.)
fn is_in_memory(url: &str) -> bool {
    let (database, query) = url.split_once('?').unwrap_or((url, ""));
    database.ends_with(":memory:") || query.split('&').any(|pair| pair == "mode=memory")
}

/// The sqlx connections above made the file a WAL database; these settings are per connection.
fn open_batch_writer(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: a 2xx promises the event survives a power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

struct SqliteWriter {
    /// Only the writer's thread uses it; the mutex makes it shareable, never waits.
    conn: Mutex<Connection>,
    write_turn: Arc<tokio::sync::Mutex<()>>,
    announced: Arc<Notify>,
}

impl Commit for SqliteWriter {
    async fn commit(&self, deliveries: &[&Delivery]) -> Result<Vec<Applied>, StoreError> {
        let _turn = self.write_turn.lock().await;
        let (answers, announced) = self.apply(deliveries)?;
        if announced > 0 {
            self.announced.notify_one();
        }
        Ok(answers)
    }
}

/// The batch's statements that are assembled from shared pieces, built once: the statement
/// cache finds them by their text on every batch.
static UPSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO shipments (id, order_id, customer_id, items, shipping_address, status, \
                                version, revision, cancel_reason, source_event_id, \
                                ordered_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) {UPSERT_SHIPMENT}"
    )
});

static ANNOUNCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO outbox_events (id, shipment_id, event_type, body, created_at) \
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE {WHILE_SUBSCRIBED}"
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
    fn apply(&self, deliveries: &[&Delivery]) -> Result<(Vec<Applied>, usize), StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        // IMMEDIATE takes the write lock up front: it is the lock on every order at once, and
        // what is read below cannot change before the commit.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows = tx
            .prepare_cached(&LOAD)?
            .query_map(
                params![
                    json_text(&plan::orders_of(deliveries)),
                    json_text(&plan::event_ids_of(deliveries)),
                ],
                LoadRow::from_sqlite,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let now = super::now();
        let plan = plan::plan(deliveries, Loaded::from_rows(rows)?, now);
        let announced = save(&tx, &plan, now)?;
        tx.commit()?;
        Ok((plan.answers, announced))
    }
}

/// One prepared statement per table, run once per row: calls into the library in this
/// thread, each cheaper than encoding the rows for one statement. Times are written as text
/// the way sqlx writes them, since the other connections read and compare them.
/// Returns how many outbound events were written.
fn save(conn: &Connection, plan: &Plan<'_>, now: DateTime<Utc>) -> rusqlite::Result<usize> {
    let received_at = time_text(now);
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO processed_events (event_id, derived_id, event_type, order_id, outcome, \
                                       shipment_id, version, state, reason, occurred_at, \
                                       received_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for row in &plan.events {
        insert_event.execute(params![
            row.event_id,
            row.derived_id,
            row.event_type,
            row.order_id,
            row.outcome.as_str(),
            row.shipment_id,
            row.version,
            row.state().map(|state| json_text(&state)),
            row.reason(),
            row.occurred_at.map(time_text),
            received_at,
        ])?;
    }
    let mut upsert_shipment = conn.prepare_cached(&UPSERT)?;
    for shipment in &plan.shipments {
        upsert_shipment.execute(params![
            shipment.id,
            shipment.order_id,
            shipment.customer_id,
            json_text(&shipment.items),
            json_text(&shipment.shipping_address),
            shipment.status.as_str(),
            shipment.version,
            shipment.revision,
            shipment.cancel_reason,
            shipment.source_event_id,
            time_text(shipment.ordered_at),
            time_text(shipment.created_at),
            time_text(shipment.updated_at),
        ])?;
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
        ])?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    /// `.cargo/config.toml` sets the bundled SQLite's compile-time options; a build that
    /// skipped it (another working directory, a Dockerfile without the folder) would sync the
    /// WAL with fsync again. SQLite reports only the second option; both come together.
    #[test]
    fn the_bundled_sqlite_is_built_with_the_configured_options() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let used: bool = conn
            .query_row(
                "SELECT sqlite_compileoption_used('DEFAULT_MEMSTATUS=0')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(used);
    }
}
