//! The PostgreSQL batch writer: a batch of webhook deliveries in one set-based statement
//! over arrays whatever its size, preceded by a read of its orders only where the writer does
//! not remember them (see [`PgWriter`]).

use std::sync::LazyLock;

use crate::store::DispatchSignals;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::recent::{Recalled, RecentOrders};
use crate::domain::plan::{self, Loaded, Plan, StoredOrder};
use crate::domain::{Applied, Delivery};
use crate::store::batch::ApplyBatch;
use crate::store::dialect::Dialect;
use crate::store::outbox::{insert_deliveries, insert_outbound};
use crate::store::rows::{load_sql, LoadRow, EVENT_WRITTEN, SHIPMENT_WRITTEN};
use crate::store::{json_text, StoreError};

/// The batch writer, on a connection of its own (with the planner settings its statements
/// need), with its memory of recent orders.
pub(super) struct PgWriter {
    options: PgConnectOptions,
    state: tokio::sync::Mutex<WriterState>,
    wakeup: std::sync::Arc<DispatchSignals>,
}

#[derive(Default)]
struct WriterState {
    conn: Option<PgConnection>,
    recent: RecentOrders,
}

impl PgWriter {
    pub(super) fn new(
        options: PgConnectOptions,
        wakeup: std::sync::Arc<DispatchSignals>,
    ) -> PgWriter {
        PgWriter {
            options,
            state: tokio::sync::Mutex::default(),
            wakeup,
        }
    }
}

/// A batch is one statement that commits atomically and durably on its own, after one that
/// reads the orders the writer does not remember (none, for new orders and orders it wrote
/// lately). No order is locked: every write is guarded by its order's head (`domain::plan`).
/// A batch that finds a head moved fails as a conflict and forgets its orders, so the batcher's
/// next try reads them, under lock (`write_batch`).
impl ApplyBatch for PgWriter {
    async fn apply_batch(&self, deliveries: &[&Delivery]) -> Result<Vec<Applied>, StoreError> {
        let mut state = self.state.lock().await;
        let WriterState { conn, recent } = &mut *state;
        // Out of the slot while in use: a batch abandoned half-way (deadline, panic) drops
        // its connection.
        let mut connection = match conn.take() {
            Some(connection) => connection,
            None => PgConnection::connect_with(&self.options)
                .await
                .map_err(StoreError::unavailable)?,
        };
        let recalled = recent.recall(deliveries);
        let result = write_batch(&mut connection, deliveries, recalled).await;
        // After an error of the server the connection is as good as before; after a lost
        // connection or a timeout it is not.
        if !matches!(result, Err(StoreError::Unavailable(_))) {
            *conn = Some(connection);
        }
        match result {
            Ok((answers, announced, orders)) => {
                recent.remember(orders);
                if announced > 0 {
                    self.wakeup.notify_one();
                }
                Ok(answers)
            }
            Err(error) => {
                recent.doubt(plan::orders_of(deliveries));
                Err(error)
            }
        }
    }
}

/// Each delivery's answer, how many outbound events were written and the batch's orders as
/// stored now.
type Written = (Vec<Applied>, i64, Vec<(String, StoredOrder)>);

/// Writes the batch: one statement, or, when some of its orders lost a race lately, a
/// transaction that locks those orders' guard rows before it reads them.
async fn write_batch(
    conn: &mut PgConnection,
    deliveries: &[&Delivery],
    recalled: Recalled,
) -> Result<Written, StoreError> {
    if recalled.orders_to_lock.is_empty() {
        return read_and_save(conn, deliveries, recalled).await;
    }
    let mut transaction = conn.begin().await?;
    sqlx::query(LOCK)
        .bind(&recalled.orders_to_lock)
        .execute(&mut *transaction)
        .await?;
    let written = read_and_save(&mut transaction, deliveries, recalled).await?;
    transaction.commit().await?;
    Ok(written)
}

/// Locks the rows that guard the orders (their shipments, their heads), in order, so that
/// two such transactions never wait for each other in a circle.
const LOCK: &str = "\
    WITH shipments_locked AS ( \
      SELECT 1 FROM shipments WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE \
    ), heads_locked AS ( \
      SELECT 1 FROM processed_events WHERE order_id = ANY($1) AND head_seq IS NOT NULL \
      ORDER BY order_id FOR UPDATE \
    ) \
    SELECT (SELECT count(*) FROM shipments_locked) + (SELECT count(*) FROM heads_locked)";

async fn read_and_save(
    conn: &mut PgConnection,
    deliveries: &[&Delivery],
    recalled: Recalled,
) -> Result<Written, StoreError> {
    let Recalled {
        orders_to_read,
        ids_to_read,
        remembered,
        ..
    } = recalled;
    // A readiness probe (no deliveries) still reads the tables, so it waits where a webhook
    // would.
    let nothing_to_read = orders_to_read.is_empty() && ids_to_read.is_empty();
    let mut loaded = if nothing_to_read && !deliveries.is_empty() {
        Loaded::default()
    } else {
        let rows: Vec<LoadRow> = sqlx::query_as(&LOAD)
            .bind(&orders_to_read)
            .bind(&ids_to_read)
            .fetch_all(&mut *conn)
            .await?;
        Loaded::from_rows(rows, &orders_to_read)?
    };
    loaded.orders.extend(remembered.orders);
    let now = crate::store::now();
    let plan = plan::plan(deliveries, loaded, now);
    // A batch of redeliveries skips the statement that would insert nothing.
    let announced = if plan.writes_nothing() {
        0
    } else {
        save(conn, &plan, now).await?
    };
    Ok((plan.answers, announced, plan.orders))
}

/// The batch's statements, built once: they are the same text every time.
static LOAD: LazyLock<String> = LazyLock::new(|| load_sql("= ANY($1)", "= ANY($2)"));

/// Events, heads, shipments and outbound events in one statement. A new order's first event
/// is inserted as its head and a new shipment as one more row of its order (a second of either
/// breaks a unique key: a race lost); a head or a shipment that was read is advanced only
/// where it is still as read, and `shipping_expect_rows` fails the whole statement when one
/// was not. Two shapes, built once: a batch that only inserts (new orders, records) runs the
/// one without the guarded updates, whose mere set-up costs the database on every execution.
static SAVE: LazyLock<[String; 2]> = LazyLock::new(|| [save_sql(false), save_sql(true)]);

fn save_sql(guarded: bool) -> String {
    let announce = insert_outbound(
        "SELECT id, shipment_id, event_type, body, $1, traceparent, tracestate \
         FROM unnest($32::uuid[], $33::uuid[], $34::text[], $35::text[], $39::text[], \
                     $40::text[]) \
              AS o(id, shipment_id, event_type, body, traceparent, tracestate)",
    );
    let deliver = insert_deliveries(Dialect::Postgres, "SELECT * FROM announced");
    let (heads, changed, checked) = if guarded {
        (
            "), heads AS ( \
               UPDATE processed_events p SET head_seq = h.read_seq + 1 \
               FROM unnest($36::text[], $37::int8[]) AS h(order_id, read_seq) \
               WHERE p.order_id = h.order_id AND p.in_history AND p.head_seq = h.read_seq \
               RETURNING 1 ",
            "), changed AS ( \
               UPDATE shipments s SET customer_id = w.customer_id, items = w.items::jsonb, \
                      shipping_address = w.shipping_address::jsonb, status = w.status, \
                      version = w.version, revision = w.revision, \
                      cancel_reason = w.cancel_reason, carrier = w.carrier, \
                      tracking_number = w.tracking_number, ordered_at = w.ordered_at, \
                      updated_at = w.updated_at, head_seq = w.head_seq \
               FROM written w \
               WHERE s.id = w.id AND s.revision = w.read_revision \
                 AND s.head_seq = w.read_head_seq \
               RETURNING 1 ",
            "shipping_expect_rows($38, \
               (SELECT count(*) FROM changed) + (SELECT count(*) FROM heads), \
               'orders changed since the batch read them')",
        )
    } else {
        ("", "", "$38::int8")
    };
    format!(
        "WITH events AS ( \
           INSERT INTO processed_events ({EVENT_WRITTEN}) \
           SELECT event_id, derived_id, event_type, order_id, outcome, shipment_id, \
                  version, state::jsonb, reason, occurred_at, $1, in_history, head_seq \
           FROM unnest($2::text[], $3::bool[], $4::text[], $5::text[], $6::text[], $7::uuid[], \
                       $8::int8[], $9::text[], $10::text[], $11::timestamptz[], $12::bool[], \
                       $13::int8[]) \
                AS e(event_id, derived_id, event_type, order_id, outcome, shipment_id, \
                     version, state, reason, occurred_at, in_history, head_seq) \
         {heads}), written AS ( \
           SELECT * FROM unnest($14::uuid[], $15::text[], $16::text[], $17::text[], \
                                $18::text[], $19::text[], $20::int8[], $21::int8[], \
                                $22::text[], $23::text[], $24::text[], $25::text[], \
                                $26::timestamptz[], $27::timestamptz[], $28::timestamptz[], \
                                $29::int8[], $30::int8[], $31::int8[]) \
             AS w(id, order_id, customer_id, items, shipping_address, status, version, \
                  revision, cancel_reason, carrier, tracking_number, source_event_id, \
                  ordered_at, created_at, updated_at, head_seq, read_revision, read_head_seq) \
         ), created AS ( \
           INSERT INTO shipments ({SHIPMENT_WRITTEN}) \
           SELECT id, order_id, customer_id, items::jsonb, shipping_address::jsonb, status, \
                  version, revision, cancel_reason, carrier, tracking_number, \
                  source_event_id, ordered_at, created_at, updated_at, head_seq \
           FROM written WHERE read_revision IS NULL \
         {changed}), announced AS ( \
           {announce} RETURNING id, shipment_id, event_type, created_at, seq \
         ), delivered AS ( \
           {deliver} RETURNING 1 \
         ) \
         SELECT {checked}, (SELECT count(*) FROM announced) + 0 * (SELECT count(*) FROM delivered)"
    )
}

/// Every row of the batch in one statement: its events, its shipments, its outbound events.
/// Returns how many outbound events were written.
async fn save(
    conn: &mut PgConnection,
    plan: &Plan<'_>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let mut events = EventColumns::default();
    for row in &plan.events {
        events.event_ids.push(row.event_id);
        events.derived_ids.push(row.derived_id);
        events.event_types.push(row.event_type);
        events.order_ids.push(row.order_id);
        events.outcomes.push(row.outcome.as_str());
        events.shipment_ids.push(row.shipment_id);
        events.versions.push(row.version);
        events.states.push(row.state().map(json_text));
        events.reasons.push(row.reason());
        events.occurred_ats.push(row.occurred_at);
        events.in_history.push(row.outcome.joins_history());
        events.head_seqs.push(row.head_seq);
    }
    let mut shipments = ShipmentColumns::default();
    for write in &plan.shipments {
        let shipment = &write.shipment;
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
        shipments.carriers.push(shipment.carrier.as_deref());
        shipments
            .tracking_numbers
            .push(shipment.tracking_number.as_deref());
        shipments.source_event_ids.push(&shipment.source_event_id);
        shipments.ordered_ats.push(shipment.ordered_at);
        shipments.created_ats.push(shipment.created_at);
        shipments.updated_ats.push(shipment.updated_at);
        shipments.head_seqs.push(write.head_seq);
        shipments
            .read_revisions
            .push(write.read.map(|(revision, _)| revision));
        shipments
            .read_head_seqs
            .push(write.read.map(|(_, head_seq)| head_seq));
    }
    let (head_orders, head_seqs): (Vec<&str>, Vec<i64>) = plan
        .heads
        .iter()
        .map(|head| (head.order_id.as_str(), head.read_seq))
        .unzip();
    let mut outbox = OutboxColumns::default();
    for row in &plan.outbox {
        outbox.ids.push(row.id);
        outbox.shipment_ids.push(row.shipment_id);
        outbox.types.push(row.change.as_str());
        outbox.bodies.push(&row.body);
        outbox
            .traceparents
            .push(row.trace.as_ref().map(|trace| trace.parent.as_str()));
        outbox
            .tracestates
            .push(row.trace.as_ref().and_then(|trace| trace.state.as_deref()));
    }
    let (_, announced): (i64, i64) = sqlx::query_as(&SAVE[usize::from(plan.guarded_rows() > 0)])
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
        .bind(events.in_history)
        .bind(events.head_seqs)
        .bind(shipments.ids)
        .bind(shipments.order_ids)
        .bind(shipments.customer_ids)
        .bind(shipments.items)
        .bind(shipments.addresses)
        .bind(shipments.statuses)
        .bind(shipments.versions)
        .bind(shipments.revisions)
        .bind(shipments.cancel_reasons)
        .bind(shipments.carriers)
        .bind(shipments.tracking_numbers)
        .bind(shipments.source_event_ids)
        .bind(shipments.ordered_ats)
        .bind(shipments.created_ats)
        .bind(shipments.updated_ats)
        .bind(shipments.head_seqs)
        .bind(shipments.read_revisions)
        .bind(shipments.read_head_seqs)
        .bind(outbox.ids)
        .bind(outbox.shipment_ids)
        .bind(outbox.types)
        .bind(outbox.bodies)
        .bind(head_orders)
        .bind(head_seqs)
        .bind(plan.guarded_rows())
        .bind(outbox.traceparents)
        .bind(outbox.tracestates)
        .fetch_one(&mut *conn)
        .await?;
    Ok(announced)
}

#[derive(Default)]
struct OutboxColumns<'a> {
    ids: Vec<Uuid>,
    shipment_ids: Vec<Uuid>,
    types: Vec<&'static str>,
    bodies: Vec<&'a str>,
    traceparents: Vec<Option<&'a str>>,
    tracestates: Vec<Option<&'a str>>,
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
    in_history: Vec<bool>,
    head_seqs: Vec<Option<i64>>,
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
    carriers: Vec<Option<&'a str>>,
    tracking_numbers: Vec<Option<&'a str>>,
    source_event_ids: Vec<&'a str>,
    ordered_ats: Vec<DateTime<Utc>>,
    created_ats: Vec<DateTime<Utc>>,
    updated_ats: Vec<DateTime<Utc>>,
    head_seqs: Vec<i64>,
    read_revisions: Vec<Option<i64>>,
    read_head_seqs: Vec<Option<i64>>,
}
