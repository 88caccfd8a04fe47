//! The PostgreSQL batch writer: a batch of webhook deliveries in three set-based statements
//! over arrays, whatever its size (see [`PgWriter`]).

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::Notify;
use uuid::Uuid;

use super::lock_statement;
use crate::domain::plan::{self, Loaded, Plan};
use crate::domain::{Applied, Delivery};
use crate::store::batch::ApplyBatch;
use crate::store::outbox::insert_outbound;
use crate::store::rows::{load_sql, LoadRow};
use crate::store::{json_text, StoreError};

const UNLOCK: &str = "SELECT pg_advisory_unlock_all()";

/// The batch writer. Its connection is its own, not the pool's: between two batches it may
/// still hold the previous batch's order locks, which must never pass to another user.
pub(super) struct PgWriter {
    options: PgConnectOptions,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
    wakeup: Arc<Notify>,
}

impl PgWriter {
    pub(super) fn new(options: PgConnectOptions, wakeup: Arc<Notify>) -> PgWriter {
        PgWriter {
            options,
            conn: tokio::sync::Mutex::new(None),
            wakeup,
        }
    }
}

/// A batch in three round trips, none of them a BEGIN or a COMMIT: lock the batch's orders
/// (session locks, releasing the previous batch's), load (a statement of its own, so its
/// snapshot is taken after the locks are held), and save, one statement that commits
/// atomically and durably on its own. The locks are released only after that commit: by the
/// next batch's first statement, or by `idle` when no batch follows.
impl ApplyBatch for PgWriter {
    async fn apply_batch(&self, deliveries: &[&Delivery]) -> Result<Vec<Applied>, StoreError> {
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
            self.wakeup.notify_one();
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
) -> Result<(Vec<Applied>, i64), StoreError> {
    let orders = plan::orders_of(deliveries);
    conn.execute(relock(&orders).as_str()).await?;
    let rows: Vec<LoadRow> = sqlx::query_as(&LOAD)
        .bind(&orders)
        .bind(plan::event_ids_of(deliveries))
        .fetch_all(&mut *conn)
        .await?;
    let now = crate::store::now();
    let plan = plan::plan(deliveries, Loaded::from_rows(rows)?, now);
    // A batch of redeliveries skips the statement that would insert nothing.
    let announced = if plan.writes_nothing() {
        0
    } else {
        save(conn, &plan, now).await?
    };
    Ok((plan.answers, announced))
}

/// The batch writer's first statement: the previous batch's locks released, this one's taken.
fn relock(orders: &[String]) -> String {
    format!("{UNLOCK}; {}", lock_statement("pg_advisory_lock", orders))
}

/// The batch's statements, built once: they are the same text every time.
static LOAD: LazyLock<String> = LazyLock::new(|| load_sql("= ANY($1)", "= ANY($2)"));

/// Events, shipments and outbound events in one statement. A new shipment is inserted (a
/// second one for its order breaks the unique key: a race lost); a changed one is updated only
/// where it is still at the revision the batch read, and `shipping_expect_rows` fails the
/// whole statement when one was not.
static SAVE: LazyLock<String> = LazyLock::new(|| {
    let announce = insert_outbound(
        "SELECT id, shipment_id, event_type, body, $1 \
         FROM unnest($27::uuid[], $28::uuid[], $29::text[], $30::text[]) \
              AS o(id, shipment_id, event_type, body)",
    );
    format!(
        "WITH events AS ( \
           INSERT INTO processed_events (event_id, derived_id, event_type, order_id, outcome, \
                                         shipment_id, version, state, reason, occurred_at, \
                                         in_history, received_at) \
           SELECT event_id, derived_id, event_type, order_id, outcome, shipment_id, \
                  version, state::jsonb, reason, occurred_at, in_history, $1 \
           FROM unnest($2::text[], $3::bool[], $4::text[], $5::text[], $6::text[], $7::uuid[], \
                       $8::int8[], $9::text[], $10::text[], $11::timestamptz[], $32::bool[]) \
                AS e(event_id, derived_id, event_type, order_id, outcome, shipment_id, \
                     version, state, reason, occurred_at, in_history) \
         ), written AS ( \
           SELECT * FROM unnest($12::uuid[], $13::text[], $14::text[], $15::text[], \
                                $16::text[], $17::text[], $18::int8[], $19::int8[], \
                                $20::text[], $21::text[], $22::text[], $23::text[], \
                                $24::timestamptz[], $25::timestamptz[], $26::int8[]) \
             AS w(id, order_id, customer_id, items, shipping_address, status, version, \
                  revision, cancel_reason, carrier, tracking_number, source_event_id, \
                  ordered_at, created_at, read_revision) \
         ), created AS ( \
           INSERT INTO shipments (id, order_id, customer_id, items, shipping_address, status, \
                                  version, revision, cancel_reason, carrier, tracking_number, \
                                  source_event_id, ordered_at, created_at, updated_at) \
           SELECT id, order_id, customer_id, items::jsonb, shipping_address::jsonb, status, \
                  version, revision, cancel_reason, carrier, tracking_number, \
                  source_event_id, ordered_at, created_at, $1 \
           FROM written WHERE read_revision IS NULL \
         ), changed AS ( \
           UPDATE shipments s SET customer_id = w.customer_id, items = w.items::jsonb, \
                  shipping_address = w.shipping_address::jsonb, status = w.status, \
                  version = w.version, revision = w.revision, \
                  cancel_reason = w.cancel_reason, carrier = w.carrier, \
                  tracking_number = w.tracking_number, ordered_at = w.ordered_at, \
                  updated_at = $1 \
           FROM written w \
           WHERE s.id = w.id AND s.revision = w.read_revision \
           RETURNING 1 \
         ), announced AS ( \
           {announce} RETURNING 1 \
         ) \
         SELECT shipping_expect_rows($31, (SELECT count(*) FROM changed), \
                                     'shipments changed since the batch read them'), \
                (SELECT count(*) FROM announced)"
    )
});

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
    }
    let mut shipments = ShipmentColumns::default();
    let mut updates = 0_i64;
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
        shipments.read_revisions.push(write.read_revision);
        updates += i64::from(write.read_revision.is_some());
    }
    let mut outbox = OutboxColumns::default();
    for row in &plan.outbox {
        outbox.ids.push(row.id);
        outbox.shipment_ids.push(row.shipment_id);
        outbox.types.push(row.change.as_str());
        outbox.bodies.push(&row.body);
    }
    let (_, announced): (i64, i64) = sqlx::query_as(&SAVE)
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
        .bind(shipments.carriers)
        .bind(shipments.tracking_numbers)
        .bind(shipments.source_event_ids)
        .bind(shipments.ordered_ats)
        .bind(shipments.created_ats)
        .bind(shipments.read_revisions)
        .bind(outbox.ids)
        .bind(outbox.shipment_ids)
        .bind(outbox.types)
        .bind(outbox.bodies)
        .bind(updates)
        .bind(events.in_history)
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
    read_revisions: Vec<Option<i64>>,
}
