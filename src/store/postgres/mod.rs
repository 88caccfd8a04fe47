//! PostgreSQL. Webhooks go through the group-committing writer (`batch.rs`) on a connection
//! of its own: a batch is one set-based statement over arrays whatever its size, after one
//! that reads the orders the writer does not remember (see `PgWriter`). Several instances
//! share one database safely without locking orders: every write of an order is guarded by
//! the order's head (`domain::plan`), so a writer that missed another's change fails instead
//! of overwriting it, and applies its batch again. The other writes and all reads use the pool.

use std::str::FromStr;
use std::sync::Arc;

use crate::store::DispatchSignals;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres};

mod recent;
mod writer;

use super::batch::{Batcher, COMMIT_DEADLINE};
use super::dialect::Dialect;
use super::{ConnectError, StoreError, Write, WriteTx, ACQUIRE_TIMEOUT};

/// Enough to keep two cores busy with reads beside the batch writer (whose connection is its
/// own); more only adds contention.
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// A retention pass takes this advisory lock: one pass at a time across instances.
const PRUNE_LOCK: i64 = 0x5348_4950_5052_554e;

/// Fan-outs take this advisory lock, one at a time across instances, so deliveries are made in
/// the order their events were written.
const FAN_OUT_LOCK: i64 = 0x5348_4950_4f55_5401;

/// Keeping an event in quarantine takes this advisory lock, so that its bounds are read and
/// kept by one instance at a time.
const QUARANTINE_LOCK: i64 = 0x5348_4950_5155_4152;

/// Fan-outs and claims do not wait for the disk: what a crash of the database loses of them is
/// done again (events fanned out again, deliveries claimed again), which at-least-once allows.
/// Settlements do wait, and their flush makes everything written before them durable too, so a
/// later change of a shipment is never claimed while an earlier delivery could still come back
/// as pending.
const WITHOUT_FLUSH: &str = "SET LOCAL synchronous_commit = off";
const BY_KEY: &str = "SET LOCAL enable_seqscan = off; SET LOCAL jit = off";

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    batcher: Batcher,
    wakeup: Arc<DispatchSignals>,
    /// Without the pool's statement deadline, for migrations.
    options: Box<PgConnectOptions>,
    description: String,
}

impl PgStore {
    pub(super) async fn connect(
        url: &str,
        max_connections: Option<u32>,
    ) -> Result<PgStore, ConnectError> {
        let options = PgConnectOptions::from_str(url)?.application_name("shipping-service");
        check_reachable(&options).await?;
        // The server gives up on a statement (a lock wait included) when the writer would:
        // nothing keeps a connection busy after its batch was answered 503.
        let deadline = format!("{}ms", COMMIT_DEADLINE.as_millis());
        // No JIT: the service's statements touch a few rows by key, but the dispatcher's
        // claim over a backlog is estimated past `jit_above_cost` and would pay ~10 ms of
        // compilation for a millisecond of work, every round.
        let pooled = options
            .clone()
            .options([("statement_timeout", deadline.as_str()), ("jit", "off")]);
        // The batch writer's statements read rows by key. Until autovacuum has analysed the
        // tables, the planner guesses hundreds of rows per key and would scan whole tables or
        // hash every shipment to join a batch's few orders, a cost that grows with the tables:
        // on the writer's connection it is told not to (which makes the one real scan, of the
        // few subscriptions, look expensive: another reason for no JIT). Its statements' plans
        // do not depend on the values in their arrays, and planning the batch statement anew
        // each time would cost more than executing it: the writer plans each statement once.
        let writer = pooled.clone().options([
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
            ("enable_hashjoin", "off"),
            ("enable_mergejoin", "off"),
            ("max_parallel_workers_per_gather", "0"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A ping per acquire would double the round trips of every request; a dead
            // connection shows up as a failed query instead, answered 503 and retried.
            .test_before_acquire(false)
            .connect_with(pooled)
            .await?;
        let wakeup = Arc::<DispatchSignals>::default();
        let batcher = Batcher::spawn(writer::PgWriter::new(writer, wakeup.clone()));
        Ok(PgStore {
            pool,
            batcher,
            wakeup,
            description: format!(
                "PostgreSQL {}:{}/{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or_default()
            ),
            options: Box::new(options),
        })
    }

    pub(super) async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        // A connection of its own: the pool's statements have a deadline that a migration of
        // a large table may rightly exceed.
        let mut conn = PgConnection::connect_with(&self.options).await?;
        sqlx::migrate!("migrations/postgres").run(&mut conn).await
    }

    pub(super) async fn reader(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.pool.acquire().await.map_err(StoreError::unavailable)
    }

    /// A transaction begun, in one round trip, with what `write` needs: the locks it takes
    /// and the settings it runs under.
    pub(super) async fn begin(&self, write: Write) -> Result<WriteTx<Postgres>, StoreError> {
        // The queue's tables start empty and grow: a generic plan (PostgreSQL's choice after
        // five runs, kept until the table is next analysed) made while one was small scans
        // it whole on every run, however large it grows, and so do the checks of the
        // foreign keys. Fan-outs and settlements only look rows up by key: never a
        // sequential scan (and no JIT for the cost that puts on one).
        let begin = match write {
            Write::Plain => "BEGIN".to_owned(),
            Write::Quarantine => format!("BEGIN; SELECT pg_advisory_xact_lock({QUARANTINE_LOCK})"),
            Write::FanOut => format!(
                "BEGIN; {WITHOUT_FLUSH}; {BY_KEY}; SELECT pg_advisory_xact_lock({FAN_OUT_LOCK})"
            ),
            Write::Settle => format!("BEGIN; {BY_KEY}"),
            // Along the due indexes, in their order, stopping at the limit: whatever the
            // backlog, never a sort of every due delivery (which the planner picks while it
            // has no statistics). Those settings make the plans look costly enough to be
            // JIT-compiled, which costs far more than the claim: no JIT. And planned for each
            // claim's own time and limit: a generic plan (PostgreSQL's choice after five
            // runs) cannot know how many deliveries are due, and with thousands waiting it
            // reads them all.
            Write::Claim => format!(
                "BEGIN; {WITHOUT_FLUSH}; SET LOCAL enable_bitmapscan = off; \
                 SET LOCAL enable_sort = off; SET LOCAL jit = off; \
                 SET LOCAL plan_cache_mode = force_custom_plan"
            ),
        };
        let tx = self.pool.begin_with(begin).await?;
        Ok(WriteTx { tx, _turn: None })
    }

    /// A connection of its own holding the retention pass's lock, which goes with it;
    /// `None` while another instance holds it.
    pub(super) async fn prune_turn(&self) -> Result<Option<PgConnection>, StoreError> {
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(StoreError::unavailable)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PRUNE_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            Ok(Some(conn))
        } else {
            conn.close().await?;
            Ok(None)
        }
    }

    pub(super) fn dialect(&self) -> Dialect {
        Dialect::Postgres
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
        (self.pool.size(), self.pool.num_idle())
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// One connection first, so that a server out of reach is reported as such (a pool would only
/// say that it timed out waiting for a connection).
async fn check_reachable(options: &PgConnectOptions) -> Result<(), ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        address: format!("{}:{}", options.get_host(), options.get_port()),
        reason,
    };
    match tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(options)).await {
        Err(_) => Err(unreachable(format!(
            "no answer within {} s",
            ACQUIRE_TIMEOUT.as_secs()
        ))),
        Ok(Err(sqlx::Error::Io(error))) => Err(unreachable(match error.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            _ => error.to_string(),
        })),
        Ok(Err(error)) => Err(error.into()),
        Ok(Ok(conn)) => Ok(conn.close().await?),
    }
}

/// Where the server's autovacuum is off, vacuums and analyses `tables` on `conn` (the
/// retention pass's own, without the pool's statement deadline: a vacuum takes as long as the
/// table needs): otherwise the space of removed rows is never reused, and the planner never
/// learns how large the tables have grown. A vacuum blocks no reads or writes.
pub(super) async fn vacuum_unless_autovacuum(
    conn: &mut PgConnection,
    tables: &[&str],
) -> Result<(), StoreError> {
    if tables.is_empty() {
        return Ok(());
    }
    let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(&mut *conn)
        .await?;
    if autovacuum == "off" {
        let vacuum = format!("VACUUM (ANALYZE) {}", tables.join(", "));
        sqlx::Executor::execute(&mut *conn, vacuum.as_str()).await?;
        tracing::info!(
            tables = tables.join(","),
            "vacuumed: the server's autovacuum is off"
        );
    }
    Ok(())
}
