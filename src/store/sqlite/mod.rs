//! SQLite: one file, one writer at a time. Webhooks go through the group-committing writer
//! (`batch.rs`) on a thread of its own with its own connection, opened without sqlx: a batch
//! is a handful of calls into SQLite with statements prepared once, where each sqlx call
//! would be a round trip to sqlx's worker thread, which costs more than the work. One sync
//! covers a whole batch. The other writes (operators, subscriptions, the dispatcher) use one
//! sqlx connection and take turns with the batch writer, so neither waits in SQLite's
//! busy handler. Reads use their own pool (WAL lets them run beside the writer).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::store::DispatchSignals;
use rusqlite::Connection;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Sqlite;

mod writer;

use super::batch::Batcher;
use super::dialect::Dialect;
use super::{ConnectError, Open, StoreError, Write, WriteTx, ACQUIRE_TIMEOUT};

const DEFAULT_READERS: u32 = 4;
/// Another process (a second instance, `migrate`) may hold the write lock briefly. Also the
/// batch writer's deadline for a lock wait: its calls block, so the batcher's own deadline
/// cannot cut them short.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct SqliteStore {
    readers: SqlitePool,
    writer: SqlitePool,
    /// Held by whichever of this process's two writing connections writes.
    write_turn: Arc<tokio::sync::Mutex<()>>,
    batcher: Batcher,
    wakeup: Arc<DispatchSignals>,
    description: String,
}

impl SqliteStore {
    pub(super) async fn connect(
        url: &str,
        max_connections: Option<u32>,
        open: Open,
    ) -> Result<SqliteStore, ConnectError> {
        if is_in_memory(url) {
            return Err(ConnectError::SqliteInMemory);
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(open == Open::CreateIfMissing)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a 2xx promises the event survives a power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let path = options.get_filename().to_owned();
        let cannot_open = |reason: String| ConnectError::SqliteFile {
            path: path.display().to_string(),
            reason,
        };
        match open {
            Open::Existing if !path.exists() => {
                return Err(ConnectError::SqliteMissing {
                    path: path.display().to_string(),
                })
            }
            Open::Existing => {}
            Open::CreateIfMissing => {
                if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(folder).map_err(|error| {
                        cannot_open(format!("cannot create {}: {error}", folder.display()))
                    })?;
                }
            }
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
        let wakeup = Arc::<DispatchSignals>::default();
        let write_turn = Arc::new(tokio::sync::Mutex::new(()));
        let batcher = open_batch_writer(&path)
            .map_err(StoreError::from)
            .and_then(|conn| {
                Batcher::spawn_thread(writer::SqliteWriter::new(
                    conn,
                    write_turn.clone(),
                    wakeup.clone(),
                ))
                .map_err(StoreError::unavailable)
            })
            .map_err(|error| cannot_open(crate::telemetry::error_chain(&error)))?;
        Ok(SqliteStore {
            readers,
            writer,
            write_turn,
            batcher,
            wakeup,
            description: format!("SQLite {}", path.display()),
        })
    }

    pub(super) async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("migrations/sqlite").run(&self.writer).await
    }

    pub(super) async fn reader(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        self.readers
            .acquire()
            .await
            .map_err(StoreError::unavailable)
    }

    /// A write transaction on the sqlx writer connection, in its turn beside the batch writer.
    /// `BEGIN IMMEDIATE` takes the database's one write lock up front: it serialises every
    /// write, so whatever `write` is about needs no lock of its own. Fan-outs, claims and
    /// settlements commit without syncing the disk: what a crash of the machine loses of them
    /// is done again (events fanned out again, deliveries claimed and sent again), which
    /// at-least-once allows, and the log keeps commits in order, so what survives is a prefix
    /// (a later delivery's result never outlives an earlier one's). Every other commit syncs,
    /// and with it everything written before.
    pub(super) async fn begin(&self, write: Write) -> Result<WriteTx<Sqlite>, StoreError> {
        let turn = self.write_turn.clone().lock_owned().await;
        let begin = match write {
            Write::FanOut | Write::Claim | Write::Settle => {
                "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE"
            }
            Write::Plain | Write::Quarantine => "PRAGMA synchronous = FULL; BEGIN IMMEDIATE",
        };
        let tx = self.writer.begin_with(begin).await?;
        Ok(WriteTx {
            tx,
            _turn: Some(turn),
        })
    }

    pub(super) fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    pub(super) fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    pub(super) fn dispatch_wakeup(&self) -> &Arc<DispatchSignals> {
        &self.wakeup
    }

    pub(super) fn describe(&self) -> &str {
        &self.description
    }

    pub(super) fn pool_usage(&self) -> (u32, usize) {
        (self.readers.size(), self.readers.num_idle())
    }

    /// Called once the server has stopped taking requests, so the queue is already drained.
    pub(super) async fn close(&self) {
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
