//! The one seam between the service and its database. Handlers call these methods and never
//! see SQL. Both backends share the read queries (sqlx runtime queries with `$n` parameters,
//! which SQLite understands too), the group-committing writer (`batch.rs`) and the middle of
//! every batch (`plan.rs`, which asks the domain's fold what each event does); they differ only
//! in how a batch locks its orders, loads their history and saves the result.

/// Runs the same statement on whichever pool the store has; the body is compiled once per backend.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            Store::Sqlite(store) => {
                let $pool = &store.readers;
                $body
            }
            Store::Postgres(store) => {
                let $pool = &store.pool;
                $body
            }
        }
    };
}

/// Runs `body` in a write transaction: on SQLite on the sqlx writer connection in its turn
/// beside the batch writer, begun with `BEGIN IMMEDIATE` (the write lock up front); on PostgreSQL on a pooled connection, begun
/// with `pg_begin` (which may take locks in the same round trip). `body` commits.
macro_rules! in_transaction {
    ($store:expr, $pg_begin:expr, |$tx:ident| $body:expr) => {
        match $store {
            Store::Sqlite(store) => {
                let _turn = store.write_turn.lock().await;
                let mut conn = store
                    .writer
                    .acquire()
                    .await
                    .map_err(StoreError::unavailable)?;
                let mut $tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
                $body
            }
            Store::Postgres(store) => {
                let mut conn = store
                    .pool
                    .acquire()
                    .await
                    .map_err(StoreError::unavailable)?;
                let mut $tx = sqlx::Connection::begin_with(&mut *conn, $pg_begin).await?;
                $body
            }
        }
    };
}

mod batch;
pub mod cursor;
mod operator;
mod outbox;
mod plan;
mod postgres;
mod rows;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

pub use cursor::Cursor;
pub use operator::Patched;
pub use outbox::{
    AttemptRecord, Claimed, DeliveryFilter, DeliveryRecord, DeliveryStats, DeliveryStatus,
    Settlement,
};
pub use rows::EventRecord;

use crate::domain::{Delivery, Outcome, Shipment, ShipmentStatus};
use rows::{EventRecordRow, ShipmentRow, EVENT_COLUMNS, SHIPMENT_COLUMNS};

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

#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// What `shipping-service status` prints.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub shipments: Vec<(String, i64)>,
    pub recent_events: Vec<(String, i64)>,
    pub pending_deliveries: i64,
    pub failed_deliveries: i64,
}

/// What applying a delivery did, decided inside the committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    /// The order's shipment, when it has one.
    pub shipment_id: Option<Uuid>,
}

/// Why the database could not be opened at start-up, in words that say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach PostgreSQL at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("cannot open the SQLite database {path}: {reason}")]
    SqliteFile { path: String, reason: String },
    #[error(
        "an in-memory SQLite database would lose every acknowledged event when the service \
         stops; give a file, e.g. sqlite://data/shipping.db"
    )]
    SqliteInMemory,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The error beneath a [`StoreError`]: from sqlx, or from SQLite's writer connection.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot take the request now (down, restarting, locked, pool exhausted):
    /// nothing was recorded and the sender should retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] Cause),
    /// The database refuses a value of the request itself (too long for an index, not valid
    /// in its encoding): the same request would fail again, and it is the sender's to fix.
    #[error("the database cannot store a value of this request")]
    Refused(#[source] Cause),
    #[error("the database failed")]
    Internal(#[source] Cause),
}

impl StoreError {
    pub(super) fn corrupt(message: String) -> StoreError {
        StoreError::Internal(Arc::new(sqlx::Error::Decode(message.into())))
    }

    /// Errors while getting a connection all mean the database is out of reach.
    fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Unavailable(Arc::new(error))
    }

    /// Another instance recorded one of the batch's event ids first (their orders differ, so
    /// no order lock kept them apart). Applying the batch again sees that row.
    fn is_lost_race(&self) -> bool {
        match self {
            StoreError::Internal(error) => error
                .downcast_ref::<sqlx::Error>()
                .and_then(sqlx::Error::as_database_error)
                .is_some_and(|error| error.is_unique_violation()),
            StoreError::Unavailable(_) | StoreError::Refused(_) => false,
        }
    }

    fn classify(class: ErrorClass, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        let cause: Cause = Arc::new(error);
        match class {
            ErrorClass::Transient => StoreError::Unavailable(cause),
            ErrorClass::RefusedValue => StoreError::Refused(cause),
            ErrorClass::Other => StoreError::Internal(cause),
        }
    }
}

enum ErrorClass {
    /// The same request can succeed later.
    Transient,
    /// A value the request carried. The limits of `domain` keep every known case from
    /// reaching the database; this is the net under them.
    RefusedValue,
    Other,
}

/// SQLite's result codes, classified once for both of its drivers.
fn sqlite_class(extended_code: i32) -> ErrorClass {
    match extended_code & 0xff {
        // BUSY, LOCKED, IOERR, FULL, CANTOPEN.
        5 | 6 | 10 | 13 | 14 => ErrorClass::Transient,
        // TOOBIG: a string or blob over the library's limit.
        18 => ErrorClass::RefusedValue,
        _ => ErrorClass::Other,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        StoreError::classify(sqlx_class(&error), error)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        let class = match &error {
            rusqlite::Error::SqliteFailure(failure, _) => sqlite_class(failure.extended_code),
            _ => ErrorClass::Other,
        };
        StoreError::classify(class, error)
    }
}

fn sqlx_class(error: &sqlx::Error) -> ErrorClass {
    use sqlx::Error;
    match error {
        Error::PoolTimedOut
        | Error::PoolClosed
        | Error::Io(_)
        | Error::Tls(_)
        | Error::WorkerCrashed => ErrorClass::Transient,
        Error::Database(db) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            sqlite_class(db.code().and_then(|c| c.parse().ok()).unwrap_or_default())
        }
        Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // Connection failures, resource limits, statement timeouts, admin shutdown, lock
            // timeouts, and the serialization failures PostgreSQL asks clients to retry.
            if code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    &*code,
                    "57014" | "57P01" | "57P02" | "57P03" | "55P03" | "40001" | "40P01"
                )
            {
                ErrorClass::Transient
            // Class 22, data exception (a value too long or not valid); class 54, program
            // limit exceeded (an index row too large).
            } else if code.starts_with("22") || code.starts_with("54") {
                ErrorClass::RefusedValue
            } else {
                ErrorClass::Other
            }
        }
        _ => ErrorClass::Other,
    }
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub order_id: Option<String>,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, Default)]
pub struct ShipmentFilter {
    pub status: Option<ShipmentStatus>,
    pub customer_id: Option<String>,
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl Store {
    /// Opens the pools; `max_connections` overrides the backend's default pool size.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Store, ConnectError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(
                sqlite::SqliteStore::connect(url, max_connections).await?,
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
        match self {
            Store::Sqlite(store) => sqlx::migrate!("migrations/sqlite").run(&store.writer).await,
            Store::Postgres(store) => {
                // A connection of its own: the pool's statements have a deadline that a
                // migration of a large table may rightly exceed.
                let mut conn = store.connect_unbounded().await?;
                sqlx::migrate!("migrations/postgres").run(&mut conn).await
            }
        }
    }

    /// Records the delivery's event id and makes its effect on the order's shipment, in one
    /// committed transaction (shared with the deliveries queued beside it). Returns only after
    /// the commit.
    pub async fn apply(&self, delivery: Delivery) -> Result<Applied, StoreError> {
        match self {
            Store::Sqlite(store) => store.apply(delivery).await,
            Store::Postgres(store) => store.apply(delivery).await,
        }
    }

    pub async fn shipments(
        &self,
        filter: &ShipmentFilter,
        page: PageRequest,
    ) -> Result<Page<Shipment>, StoreError> {
        let sql = format!(
            "SELECT {SHIPMENT_COLUMNS} FROM shipments \
             WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR customer_id = $2) \
               AND ($3 IS NULL OR order_id = $3) AND ($4 IS NULL OR seq < $4) \
             ORDER BY seq DESC LIMIT $5"
        );
        let rows: Vec<ShipmentRow> = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_as(&sql)
                .bind(filter.status.map(ShipmentStatus::as_str))
                .bind(filter.customer_id.as_deref())
                .bind(filter.order_id.as_deref())
                .bind(page.after.map(|cursor| cursor.before_seq))
                .bind(i64::from(page.limit) + 1)
                .fetch_all(&mut *conn)
                .await?
        });
        paginate(rows, page.limit, |row| row.seq).try_map(Shipment::try_from)
    }

    pub async fn shipment(&self, id: Uuid) -> Result<Option<Shipment>, StoreError> {
        let sql = format!("SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE id = $1");
        let row: Option<ShipmentRow> = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(Shipment::try_from).transpose()
    }

    pub async fn events(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<Page<EventRecord>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM processed_events \
             WHERE ($1 IS NULL OR order_id = $1) AND ($2 IS NULL OR outcome = $2) \
               AND ($3 IS NULL OR seq < $3) \
             ORDER BY seq DESC LIMIT $4"
        );
        let rows: Vec<EventRecordRow> = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_as(&sql)
                .bind(filter.order_id.as_deref())
                .bind(filter.outcome.map(Outcome::as_str))
                .bind(page.after.map(|cursor| cursor.before_seq))
                .bind(i64::from(page.limit) + 1)
                .fetch_all(&mut *conn)
                .await?
        });
        paginate(rows, page.limit, |row| row.seq).try_map(EventRecord::try_from)
    }

    /// Whether a webhook could be committed now: a transaction through the writer's queue.
    pub async fn ready(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.batcher.probe().await,
            Store::Postgres(store) => store.batcher.probe().await,
        }
    }

    /// Which database this is, for people: the backend and where, never a password.
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(store) => store.description.clone(),
            Store::Postgres(store) => store.description.clone(),
        }
    }

    /// Counts for an operator at a terminal (`shipping-service status`).
    pub async fn status(&self) -> Result<StatusReport, StoreError> {
        let since = now() - chrono::Duration::hours(1);
        Ok(on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            let shipments = sqlx::query_as(
                "SELECT status, COUNT(*) FROM shipments GROUP BY status ORDER BY status",
            )
            .fetch_all(&mut *conn)
            .await?;
            let recent_events = sqlx::query_as(
                "SELECT outcome, COUNT(*) FROM processed_events WHERE received_at >= $1 \
                 GROUP BY outcome ORDER BY outcome",
            )
            .bind(since)
            .fetch_all(&mut *conn)
            .await?;
            let (pending_deliveries, failed_deliveries) = sqlx::query_as(
                "SELECT COUNT(CASE WHEN status = 'pending' THEN 1 END), \
                        COUNT(CASE WHEN status = 'failed' THEN 1 END) FROM deliveries",
            )
            .fetch_one(&mut *conn)
            .await?;
            StatusReport {
                shipments,
                recent_events,
                pending_deliveries,
                failed_deliveries,
            }
        }))
    }

    /// `(open, idle)` connections of the request-serving pool, for the metrics.
    pub fn pool_usage(&self) -> (u32, usize) {
        on_pool!(self, |pool| (pool.size(), pool.num_idle()))
    }

    /// Closes every connection; called once the server has stopped taking requests.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(store) => store.close().await,
            Store::Postgres(store) => store.pool.close().await,
        }
    }
}

/// Splits off the extra row fetched to learn whether another page follows.
pub(super) fn paginate<R>(mut rows: Vec<R>, limit: u32, seq: impl Fn(&R) -> i64) -> Page<R> {
    let limit = limit as usize;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|row| Cursor {
            before_seq: seq(row),
        })
    } else {
        None
    };
    Page { items: rows, next }
}

impl<R> Page<R> {
    pub(super) fn try_map<T>(
        self,
        f: impl FnMut(R) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            next: self.next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One classification for both SQLite drivers: the same failure is the same answer
    /// whether sqlx's connection or the batch writer's met it.
    #[test]
    fn sqlite_result_codes_classify_the_same_through_both_drivers() {
        let through_rusqlite = |code: i32| {
            StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT (extended), SQLITE_LOCKED, SQLITE_IOERR_FSYNC,
        // SQLITE_FULL, SQLITE_CANTOPEN: the sender retries.
        for code in [5, 517, 6, 1034, 13, 14] {
            assert!(
                matches!(sqlite_class(code), ErrorClass::Transient),
                "{code}"
            );
            assert!(
                matches!(through_rusqlite(code), StoreError::Unavailable(_)),
                "{code}"
            );
        }
        // SQLITE_TOOBIG: the request's own value.
        assert!(matches!(through_rusqlite(18), StoreError::Refused(_)));
        // SQLITE_CONSTRAINT, SQLITE_CORRUPT: a failure of ours.
        for code in [19, 11] {
            assert!(
                matches!(through_rusqlite(code), StoreError::Internal(_)),
                "{code}"
            );
        }
    }
}
