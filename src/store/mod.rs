//! The one seam between the service and its database. Handlers call these methods and never
//! see SQL. Both backends share the read queries (sqlx runtime queries with `$n` parameters,
//! which SQLite understands too) and the group-committing writer (`batch.rs`); they differ in
//! how a batch is applied: PostgreSQL calls one stored function, SQLite runs the statements.

mod batch;
pub mod cursor;
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

pub use cursor::Cursor;

use crate::domain::{Address, Delivery, Item, Shipment, ShipmentStatus};

/// How long a request may wait for a database connection before it is told to retry (503).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// What applying a delivery did, decided inside the committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new order: its shipment was created.
    Processed,
    /// The event id or the order was already applied; nothing changed.
    Duplicate,
    /// An event type this service does not handle, recorded so redeliveries are recognised.
    Ignored,
}

impl Outcome {
    fn from_stored(text: &str) -> Result<Outcome, StoreError> {
        match text {
            "processed" => Ok(Outcome::Processed),
            "duplicate" => Ok(Outcome::Duplicate),
            "ignored" => Ok(Outcome::Ignored),
            other => Err(StoreError::corrupt(format!("unknown outcome {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    pub shipment_id: Option<Uuid>,
}

impl Applied {
    /// The answer for a delivery: `first` is whether this call recorded the event id. A reused
    /// event id gets the answer of the stored event, as a duplicate unless it was ignored.
    fn from_row(
        first: bool,
        outcome: &str,
        shipment_id: Option<Uuid>,
    ) -> Result<Applied, StoreError> {
        let outcome = match Outcome::from_stored(outcome)? {
            Outcome::Ignored => Outcome::Ignored,
            stored if first => stored,
            _ => Outcome::Duplicate,
        };
        Ok(Applied {
            outcome,
            shipment_id,
        })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot take the request now (down, restarting, locked, pool exhausted):
    /// nothing was recorded and the sender should retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] Arc<sqlx::Error>),
    #[error("the database failed")]
    Internal(#[source] Arc<sqlx::Error>),
}

impl StoreError {
    fn corrupt(message: String) -> StoreError {
        StoreError::Internal(Arc::new(sqlx::Error::Decode(message.into())))
    }

    /// Errors while getting a connection all mean the database is out of reach.
    fn unavailable(error: sqlx::Error) -> StoreError {
        StoreError::Unavailable(Arc::new(error))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        if is_transient(&error) {
            StoreError::Unavailable(Arc::new(error))
        } else {
            StoreError::Internal(Arc::new(error))
        }
    }
}

/// Errors after which the same request can succeed later. Classified here once.
fn is_transient(error: &sqlx::Error) -> bool {
    use sqlx::Error;
    match error {
        Error::PoolTimedOut
        | Error::PoolClosed
        | Error::Io(_)
        | Error::Tls(_)
        | Error::WorkerCrashed => true,
        Error::Database(db) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            // Primary result codes: BUSY, LOCKED, IOERR, FULL, CANTOPEN.
            let code: i32 = db.code().and_then(|c| c.parse().ok()).unwrap_or_default();
            matches!(code & 0xff, 5 | 6 | 10 | 13 | 14)
        }
        Error::Database(db) => {
            // Connection failures, resource limits, admin shutdown, lock timeouts, and the
            // serialization failures PostgreSQL asks clients to retry.
            let code = db.code().unwrap_or_default();
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "55P03" | "40001" | "40P01"
                )
        }
        _ => false,
    }
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

/// A row of `processed_events`, as the API serves it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub event_id: String,
    pub event_type: String,
    pub order_id: Option<String>,
    pub outcome: String,
    pub shipment_id: Option<Uuid>,
    pub received_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    event_id: String,
    event_type: String,
    order_id: Option<String>,
    outcome: String,
    shipment_id: Option<Uuid>,
    received_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ShipmentRow {
    seq: i64,
    id: Uuid,
    order_id: String,
    customer_id: String,
    items: Json<Vec<Item>>,
    shipping_address: Json<Address>,
    status: String,
    source_event_id: String,
    ordered_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ShipmentRow> for Shipment {
    type Error = StoreError;

    fn try_from(row: ShipmentRow) -> Result<Shipment, StoreError> {
        let status = ShipmentStatus::parse(&row.status)
            .ok_or_else(|| StoreError::corrupt(format!("unknown status {:?}", row.status)))?;
        Ok(Shipment {
            id: row.id,
            order_id: row.order_id,
            customer_id: row.customer_id,
            items: row.items.0,
            shipping_address: row.shipping_address.0,
            status,
            source_event_id: row.source_event_id,
            ordered_at: row.ordered_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const SHIPMENT_COLUMNS: &str = "seq, id, order_id, customer_id, items, shipping_address, status, \
     source_event_id, ordered_at, created_at, updated_at";

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

impl Store {
    /// Opens the pools; `max_connections` overrides the backend's default pool size.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Store, sqlx::Error> {
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
            Store::Postgres(store) => sqlx::migrate!("migrations/postgres").run(&store.pool).await,
        }
    }

    /// Records the delivery's event id and, for a new order, creates its shipment, in one
    /// committed transaction. Returns only after the commit.
    #[tracing::instrument(skip_all, fields(event_id = %delivery.event_id))]
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

    pub async fn events(&self, page: PageRequest) -> Result<Page<EventRecord>, StoreError> {
        const SQL: &str =
            "SELECT seq, event_id, event_type, order_id, outcome, shipment_id, received_at \
             FROM processed_events WHERE ($1 IS NULL OR seq < $1) ORDER BY seq DESC LIMIT $2";
        let rows: Vec<EventRow> = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_as(SQL)
                .bind(page.after.map(|cursor| cursor.before_seq))
                .bind(i64::from(page.limit) + 1)
                .fetch_all(&mut *conn)
                .await?
        });
        paginate(rows, page.limit, |row| row.seq).try_map(|row| {
            Ok(EventRecord {
                event_id: row.event_id,
                event_type: row.event_type,
                order_id: row.order_id,
                outcome: row.outcome,
                shipment_id: row.shipment_id,
                received_at: row.received_at,
            })
        })
    }

    /// Whether the database answers a trivial query now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
        });
        Ok(())
    }

    /// `(open, idle)` connections of the request-serving pool, for the metrics.
    pub fn pool_usage(&self) -> (u32, usize) {
        on_pool!(self, |pool| (pool.size(), pool.num_idle()))
    }

    /// Waits for queued writes to commit, then closes every connection.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(store) => store.close().await,
            Store::Postgres(store) => store.pool.close().await,
        }
    }
}

/// Splits off the extra row fetched to learn whether another page follows.
fn paginate<R>(mut rows: Vec<R>, limit: u32, seq: impl Fn(&R) -> i64) -> Page<R> {
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
    fn try_map<T>(self, f: impl FnMut(R) -> Result<T, StoreError>) -> Result<Page<T>, StoreError> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, _>>()?,
            next: self.next,
        })
    }
}
