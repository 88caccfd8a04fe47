//! The one seam between the service and its database. Handlers call these methods and never
//! see SQL. Each backend (`sqlite/`, `postgres/`) keeps its connections to itself and
//! offers the same few operations: a reading connection, a write transaction begun its own way
//! for what it is about to write ([`Write`]), and a batch writer for webhooks. The statements
//! above them are written once (sqlx runtime queries with `$n` parameters, which SQLite
//! understands too) and compiled for each driver by [`with_backend!`]. What a batch writes is
//! decided by the domain (`domain::plan`); the store loads, saves guarded by what it read, and
//! takes rows in one order where it must take several.

/// Runs `body` with `$db` bound to the store's backend; the body is compiled once per driver,
/// so it may only use what both backends offer: `reader()`, `begin(Write)`, `dialect()`.
macro_rules! with_backend {
    ($store:expr, |$db:ident| $body:expr) => {
        match $store {
            Store::Sqlite($db) => $body,
            Store::Postgres($db) => $body,
        }
    };
}

mod batch;
pub mod cursor;
mod deliveries;
mod dialect;
mod error;
mod operator;
mod outbox;
mod page;
mod postgres;
mod quarantine;
mod queue;
mod reads;
mod report;
mod retention;
mod rows;
mod sessions;
mod settle;
mod sqlite;
mod subscriptions;

use std::time::Duration;

pub use cursor::Cursor;
pub use deliveries::{AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStats};
pub use error::StoreError;
pub use operator::{Patched, ShipmentMove};
pub use page::{Page, PageRequest};
pub use quarantine::{Arrival, QuarantineEntry, Quarantined};
pub use queue::{Claim, Claimed};
pub use reads::{EventFilter, ShipmentFilter};
pub use report::{Activity, Counting, StatusReport, TableStats};
pub use retention::{Pass, Removed};
pub use rows::EventRecord;
pub use sessions::ConsoleSession;
pub use settle::{Settled, Settlement};

use crate::domain::{Applied, Delivery};
use dialect::Dialect;

/// The time to store: in microseconds, as PostgreSQL keeps it, so that what a change announces
/// equals what is read back afterwards on both backends.
pub(super) fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6)
}

/// A time as text the same way on both backends, and as sqlx writes one to SQLite: for the
/// statements that take their rows as one JSON array.
pub(super) fn time_text(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

/// A value as JSON text, for a JSON column or a parameter holding a list.
pub(super) fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain data always serialises")
}

/// How long a request may wait for a database connection before it is told to retry (503).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// What this instance's writes tell its dispatcher: a wake-up (the `Notify` it derefs to)
/// after every commit that wrote outbound events or made deliveries due, and the
/// subscriptions that stopped taking deliveries, whose claimed deliveries must not start.
#[derive(Default)]
pub struct DispatchSignals {
    wake: tokio::sync::Notify,
    revoked: std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>,
}

impl DispatchSignals {
    /// `subscription` was deleted or deactivated: what this instance holds of it waits no more.
    pub fn revoke(&self, subscription: uuid::Uuid) {
        self.revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(subscription);
        self.wake.notify_one();
    }

    /// The subscriptions revoked since the last call.
    pub fn take_revoked(&self) -> std::collections::HashSet<uuid::Uuid> {
        std::mem::take(
            &mut self
                .revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl std::ops::Deref for DispatchSignals {
    type Target = tokio::sync::Notify;

    fn deref(&self) -> &tokio::sync::Notify {
        &self.wake
    }
}

#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// What a write transaction is about to do; each backend begins it as that needs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Write {
    /// A change of its own: a subscription, a settlement, a requeue, an operator's move.
    Plain,
    /// Turning outbound events into deliveries: one at a time, in the order they were written.
    FanOut,
    /// Leasing due deliveries.
    Claim,
    /// Writing back what delivery attempts decided.
    Settle,
    /// Keeping an event in quarantine: one at a time across instances, so that its bounds
    /// hold however many keep events at once.
    Quarantine,
}

/// A write transaction and, on SQLite, this process's turn to write, held until it ends.
pub(super) struct WriteTx<DB: sqlx::Database> {
    tx: sqlx::Transaction<'static, DB>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<DB: sqlx::Database> WriteTx<DB> {
    pub fn conn(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Why the database could not be opened at start-up, in words that say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach PostgreSQL at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("cannot open the SQLite database {path}: {reason}")]
    SqliteFile { path: String, reason: String },
    #[error("there is no SQLite database at {path}")]
    SqliteMissing { path: String },
    #[error(
        "an in-memory SQLite database would lose every acknowledged event when the service \
         stops; give a file, e.g. sqlite://data/shipping.db"
    )]
    SqliteInMemory,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Whether opening a database may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Create a SQLite file (and its folder) when missing: serving, migrating.
    CreateIfMissing,
    /// Only a database that exists: reading it.
    Existing,
}

impl Store {
    /// Opens the pools; `max_connections` overrides the backend's default pool size.
    pub async fn connect(
        url: &str,
        max_connections: Option<u32>,
        open: Open,
    ) -> Result<Store, ConnectError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(
                sqlite::SqliteStore::connect(url, max_connections, open).await?,
            ))
        } else {
            Ok(Store::Postgres(
                postgres::PgStore::connect(url, max_connections).await?,
            ))
        }
    }

    /// Brings the schema up to date. Safe to run from several instances at once: sqlx takes an
    /// advisory lock on PostgreSQL, and SQLite serialises writers.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        with_backend!(self, |db| db.migrate().await)
    }

    /// Records the delivery's event id and makes its effect on the order's shipment, in one
    /// committed transaction (shared with the deliveries queued beside it). Returns only after
    /// the commit.
    pub async fn apply(&self, delivery: Delivery) -> Result<Applied, StoreError> {
        with_backend!(self, |db| db.batcher().apply(delivery).await)
    }

    /// Whether a webhook could be committed now: a transaction through the writer's queue.
    pub async fn ready(&self) -> Result<(), StoreError> {
        with_backend!(self, |db| db.batcher().probe().await)
    }

    /// Batches this instance applied again because another writer changed their orders first.
    pub fn writer_races(&self) -> u64 {
        with_backend!(self, |db| db.batcher().races())
    }

    /// Woken after every commit of this instance that wrote outbound events: the dispatcher
    /// waits on it.
    pub fn dispatch_wakeup(&self) -> &std::sync::Arc<DispatchSignals> {
        with_backend!(self, |db| db.dispatch_wakeup())
    }

    /// Which database this is, for people: the backend and where, never a password.
    pub fn describe(&self) -> String {
        with_backend!(self, |db| db.describe().to_owned())
    }

    /// `(open, idle)` connections of the request-serving pool, for the metrics.
    pub fn pool_usage(&self) -> (u32, usize) {
        with_backend!(self, |db| db.pool_usage())
    }

    /// Closes every connection; called once the server has stopped taking requests.
    pub async fn close(&self) {
        with_backend!(self, |db| db.close().await)
    }

    fn dialect(&self) -> Dialect {
        with_backend!(self, |db| db.dialect())
    }
}

/// SQLite's plan of a statement, one line per step, on the schema the migrations make: the
/// store's tests hold the statements whose cost must not grow with the tables to theirs.
#[cfg(test)]
fn sqlite_plan(sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    for migration in sqlx::migrate!("migrations/sqlite").iter() {
        conn.execute_batch(&migration.sql).unwrap();
    }
    let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let nulls = vec![rusqlite::types::Null; explain.parameter_count()];
    explain
        .query_map(rusqlite::params_from_iter(nulls), |row| row.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
