//! PostgreSQL: deliveries go through the group-committing writer (`batch.rs`). A batch is
//! three set-based statements over arrays, whatever its size: lock its orders, load what the
//! fold needs, and write its events, shipments and outbound events (see `PgWriter`). Several
//! instances share one database safely because every batch first takes an advisory lock per
//! order and keeps it until its write has committed.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use tokio::sync::Notify;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use super::batch::{Batcher, Commit, COMMIT_DEADLINE};
use super::plan::{self, Loaded, Plan};
use super::rows::{load_sql, LoadRow, UPSERT_SHIPMENT, WHILE_SUBSCRIBED};
use super::{json_text, Applied, ConnectError, StoreError, ACQUIRE_TIMEOUT};
use crate::domain::Delivery;

/// Enough to keep two cores busy with reads beside the batch writer (whose connection is its
/// own); more only adds contention.
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    pub(super) batcher: Batcher,
    /// Woken after every commit of this instance that wrote outbound events.
    pub(super) announced: Arc<Notify>,
    /// Without the pool's statement deadline, for migrations.
    options: Box<PgConnectOptions>,
    pub(super) description: String,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<PgStore, ConnectError> {
        let options = PgConnectOptions::from_str(url)?.application_name("shipping-service");
        check_reachable(&options).await?;
        // The server gives up on a statement (a lock wait included) when the writer would:
        // nothing keeps a connection busy after its batch was answered 503. And every query
        // of the service reads rows by key or pages along an index: until autovacuum has
        // analysed the tables, the planner guesses hundreds of rows per key and picks
        // (parallel) scans of whole tables (seen: 3x slower at 64 senders), or joins a
        // batch's few orders to every shipment by hashing them all (seen: a batch's load
        // 0.1 -> 1.7 ms, growing with the table), so it is told not to. That makes the few
        // real scans (of `subscriptions`) look expensive enough to be JIT-compiled, 80 ms
        // for a statement of microseconds: no JIT either.
        let deadline = format!("{}ms", COMMIT_DEADLINE.as_millis());
        let pooled = options.clone().options([
            ("statement_timeout", deadline.as_str()),
            ("enable_seqscan", "off"),
            ("enable_hashjoin", "off"),
            ("enable_mergejoin", "off"),
            ("max_parallel_workers_per_gather", "0"),
            ("jit", "off"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A ping per acquire would double the round trips of every event; a dead
            // connection shows up as a failed query instead, answered 503 and retried.
            .test_before_acquire(false)
            .connect_with(pooled.clone())
            .await?;
        let announced = Arc::new(Notify::new());
        let batcher = Batcher::spawn(PgWriter {
            options: pooled,
            conn: tokio::sync::Mutex::new(None),
            announced: announced.clone(),
        });
        Ok(PgStore {
            pool,
            batcher,
            announced,
            description: format!(
                "PostgreSQL {}:{}/{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or_default()
            ),
            options: Box::new(options),
        })
    }

    pub async fn connect_unbounded(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options).await
    }

    pub async fn apply(&self, delivery: Delivery) -> Result<Applied, StoreError> {
        self.batcher.apply(delivery).await
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

/// The batch writer. Its connection is its own, not the pool's: between two batches it may
/// still hold the previous batch's order locks, which must never pass to another user.
struct PgWriter {
    options: PgConnectOptions,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
    announced: Arc<Notify>,
}

/// A batch in three round trips, none of them a BEGIN or a COMMIT: lock the batch's orders
/// (session locks, releasing the previous batch's), load (a statement of its own, so its
/// snapshot is taken after the locks are held), and save, one statement that commits
/// atomically and durably on its own. The locks are released only after that commit: by the
/// next batch's first statement, or by `idle` when no batch follows.
impl Commit for PgWriter {
    async fn commit(&self, deliveries: &[&Delivery]) -> Result<Vec<Applied>, StoreError> {
        let mut slot = self.conn.lock().await;
        // Out of the slot while in use: a batch abandoned half-way (deadline, panic) drops
        // its connection, and the server releases every lock it held.
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => PgConnection::connect_with(&self.options)
                .await
                .map_err(StoreError::unavailable)?,
        };
        let result = write_batch(&mut conn, deliveries).await;
        // After an error of the server the connection is as good as before; after a lost
        // connection or a timeout it is not.
        if !matches!(result, Err(StoreError::Unavailable(_))) {
            *slot = Some(conn);
        }
        let (answers, announced) = result?;
        if announced > 0 {
            self.announced.notify_one();
        }
        Ok(answers)
    }

    async fn idle(&self) {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_mut() {
            if let Err(error) = conn.execute(UNLOCK).await {
                tracing::warn!(%error, "the batch writer could not release its order locks; reconnecting");
                *slot = None;
            }
        }
    }
}

/// Returns each delivery's answer and how many outbound events were written.
async fn write_batch(
    conn: &mut PgConnection,
    deliveries: &[&Delivery],
) -> Result<(Vec<Applied>, u64), StoreError> {
    let orders = plan::orders_of(deliveries);
    conn.execute(relock(&orders).as_str()).await?;
    let rows: Vec<LoadRow> = sqlx::query_as(&LOAD)
        .bind(&orders)
        .bind(plan::event_ids_of(deliveries))
        .fetch_all(&mut *conn)
        .await?;
    let now = super::now();
    let plan = plan::plan(deliveries, Loaded::from_rows(rows)?, now);
    // A batch of redeliveries skips the statement that would insert nothing.
    let announced = if plan.writes_nothing() {
        0
    } else {
        save(conn, &plan, now).await?
    };
    Ok((plan.answers, announced))
}

const UNLOCK: &str = "SELECT pg_advisory_unlock_all()";

/// The advisory lock keys of some orders, ascending (so two lockers never deadlock) and
/// without repeats: a hash of the order id computed here, the same in every instance (two
/// orders sharing one only wait for each other).
fn lock_keys(orders: &[String]) -> Vec<i64> {
    let mut keys: Vec<i64> = orders
        .iter()
        .map(|order| {
            let digest = Sha256::digest(order.as_bytes());
            i64::from_be_bytes(digest[..8].try_into().expect("eight bytes"))
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// `SELECT pg_advisory_lock(key) ...` over the keys of `orders`, as `lock` names it; only
/// integers are written into the statement.
fn lock_statement(lock: &str, orders: &[String]) -> String {
    let keys: Vec<String> = lock_keys(orders).iter().map(i64::to_string).collect();
    format!(
        "SELECT {lock}(key) FROM unnest('{{{}}}'::int8[]) AS key",
        keys.join(",")
    )
}

/// `BEGIN` and a transaction-scoped lock per order, in one round trip.
pub(super) fn begin_and_lock(orders: &[String]) -> String {
    format!("BEGIN; {}", lock_statement("pg_advisory_xact_lock", orders))
}

/// The batch writer's first statement: the previous batch's locks released, this one's taken.
fn relock(orders: &[String]) -> String {
    format!("{UNLOCK}; {}", lock_statement("pg_advisory_lock", orders))
}

/// The batch's statements, built once: they are the same text every time.
static LOAD: LazyLock<String> = LazyLock::new(|| load_sql("= ANY($1)", "= ANY($2)"));

static SAVE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH events AS ( \
           INSERT INTO processed_events (event_id, derived_id, event_type, order_id, outcome, \
                                         shipment_id, version, state, reason, occurred_at, \
                                         received_at) \
           SELECT event_id, derived_id, event_type, order_id, outcome, shipment_id, \
                  version, state::jsonb, reason, occurred_at, $1 \
           FROM unnest($2::text[], $3::bool[], $4::text[], $5::text[], $6::text[], $7::uuid[], \
                       $8::int8[], $9::text[], $10::text[], $11::timestamptz[]) \
                AS e(event_id, derived_id, event_type, order_id, outcome, shipment_id, \
                     version, state, reason, occurred_at) \
         ), changed AS ( \
           INSERT INTO shipments (id, order_id, customer_id, items, shipping_address, status, \
                                  version, revision, cancel_reason, source_event_id, ordered_at, \
                                  created_at, updated_at) \
           SELECT id, order_id, customer_id, items::jsonb, shipping_address::jsonb, status, \
                  version, revision, cancel_reason, source_event_id, ordered_at, created_at, $1 \
           FROM unnest($12::uuid[], $13::text[], $14::text[], $15::text[], $16::text[], \
                       $17::text[], $18::int8[], $19::int8[], $20::text[], $21::text[], \
                       $22::timestamptz[], $23::timestamptz[]) \
                AS w(id, order_id, customer_id, items, shipping_address, status, version, \
                     revision, cancel_reason, source_event_id, ordered_at, created_at) \
           {UPSERT_SHIPMENT} \
         ) \
         INSERT INTO outbox_events (id, shipment_id, event_type, body, created_at) \
         SELECT id, shipment_id, event_type, body, $1 \
         FROM unnest($24::uuid[], $25::uuid[], $26::text[], $27::text[]) \
              AS o(id, shipment_id, event_type, body) \
         WHERE {WHILE_SUBSCRIBED}"
    )
});

/// Every row of the batch in one statement: its events, its shipments, its outbound events.
/// Returns how many outbound events were written.
async fn save(
    conn: &mut PgConnection,
    plan: &Plan<'_>,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut events = EventColumns::default();
    for row in &plan.events {
        events.event_ids.push(row.event_id);
        events.derived_ids.push(row.derived_id);
        events.event_types.push(row.event_type);
        events.order_ids.push(row.order_id);
        events.outcomes.push(row.outcome.as_str());
        events.shipment_ids.push(row.shipment_id);
        events.versions.push(row.version);
        events
            .states
            .push(row.state().map(|state| json_text(&state)));
        events.reasons.push(row.reason());
        events.occurred_ats.push(row.occurred_at);
    }
    let mut shipments = ShipmentColumns::default();
    for shipment in &plan.shipments {
        shipments.ids.push(shipment.id);
        shipments.order_ids.push(&shipment.order_id);
        shipments.customer_ids.push(&shipment.customer_id);
        shipments.items.push(json_text(&shipment.items));
        shipments
            .addresses
            .push(json_text(&shipment.shipping_address));
        shipments.statuses.push(shipment.status.as_str());
        shipments.versions.push(shipment.version);
        shipments.revisions.push(shipment.revision);
        shipments
            .cancel_reasons
            .push(shipment.cancel_reason.as_deref());
        shipments.source_event_ids.push(&shipment.source_event_id);
        shipments.ordered_ats.push(shipment.ordered_at);
        shipments.created_ats.push(shipment.created_at);
    }
    let mut outbox = OutboxColumns::default();
    for row in &plan.outbox {
        outbox.ids.push(row.id);
        outbox.shipment_ids.push(row.shipment_id);
        outbox.types.push(row.change.as_str());
        outbox.bodies.push(&row.body);
    }
    let written = sqlx::query(&SAVE)
        .bind(now)
        .bind(events.event_ids)
        .bind(events.derived_ids)
        .bind(events.event_types)
        .bind(events.order_ids)
        .bind(events.outcomes)
        .bind(events.shipment_ids)
        .bind(events.versions)
        .bind(events.states)
        .bind(events.reasons)
        .bind(events.occurred_ats)
        .bind(shipments.ids)
        .bind(shipments.order_ids)
        .bind(shipments.customer_ids)
        .bind(shipments.items)
        .bind(shipments.addresses)
        .bind(shipments.statuses)
        .bind(shipments.versions)
        .bind(shipments.revisions)
        .bind(shipments.cancel_reasons)
        .bind(shipments.source_event_ids)
        .bind(shipments.ordered_ats)
        .bind(shipments.created_ats)
        .bind(outbox.ids)
        .bind(outbox.shipment_ids)
        .bind(outbox.types)
        .bind(outbox.bodies)
        .execute(&mut *conn)
        .await?;
    Ok(written.rows_affected())
}

#[derive(Default)]
struct OutboxColumns<'a> {
    ids: Vec<Uuid>,
    shipment_ids: Vec<Uuid>,
    types: Vec<&'static str>,
    bodies: Vec<&'a str>,
}

#[derive(Default)]
struct EventColumns<'a> {
    event_ids: Vec<&'a str>,
    derived_ids: Vec<bool>,
    event_types: Vec<&'a str>,
    order_ids: Vec<Option<&'a str>>,
    outcomes: Vec<&'static str>,
    shipment_ids: Vec<Option<Uuid>>,
    versions: Vec<Option<i64>>,
    states: Vec<Option<String>>,
    reasons: Vec<Option<&'a str>>,
    occurred_ats: Vec<Option<DateTime<Utc>>>,
}

#[derive(Default)]
struct ShipmentColumns<'a> {
    ids: Vec<Uuid>,
    order_ids: Vec<&'a str>,
    customer_ids: Vec<&'a str>,
    items: Vec<String>,
    addresses: Vec<String>,
    statuses: Vec<&'static str>,
    versions: Vec<i64>,
    revisions: Vec<i64>,
    cancel_reasons: Vec<Option<&'a str>>,
    source_event_ids: Vec<&'a str>,
    ordered_ats: Vec<DateTime<Utc>>,
    created_ats: Vec<DateTime<Utc>>,
}
