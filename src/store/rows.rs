//! Rows as both backends read them, and their conversion into domain values. A row that does
//! not convert is a corrupt database, reported as an internal error.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use super::StoreError;
use crate::domain::order_event::{ORDER_CANCELLED, ORDER_CREATED, ORDER_UPDATED};
use crate::domain::plan::{Head, KnownEvent, Loaded, StoredOrder};
use crate::domain::{
    Address, Change, Fact, Item, OrderLife, OrderState, Outcome, Shipment, ShipmentStatus,
};

pub(super) const SHIPMENT_COLUMNS: &str = "seq, id, order_id, customer_id, items, \
     shipping_address, status, version, revision, cancel_reason, carrier, tracking_number, \
     source_event_id, ordered_at, created_at, updated_at";

pub(super) const EVENT_COLUMNS: &str =
    "seq, event_id, event_type, order_id, version, outcome, shipment_id, received_at";

#[derive(sqlx::FromRow)]
pub(super) struct ShipmentRow {
    pub seq: i64,
    pub id: Uuid,
    order_id: String,
    customer_id: String,
    items: Json<Vec<Item>>,
    shipping_address: Json<Address>,
    status: String,
    version: i64,
    revision: i64,
    cancel_reason: Option<String>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    source_event_id: String,
    ordered_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ShipmentRow> for Shipment {
    type Error = StoreError;

    fn try_from(row: ShipmentRow) -> Result<Shipment, StoreError> {
        Ok(Shipment {
            id: row.id,
            order_id: row.order_id,
            customer_id: row.customer_id,
            items: row.items.0,
            shipping_address: row.shipping_address.0,
            status: status(&row.status)?,
            version: row.version,
            revision: row.revision,
            cancel_reason: row.cancel_reason,
            carrier: row.carrier,
            tracking_number: row.tracking_number,
            source_event_id: row.source_event_id,
            ordered_at: row.ordered_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A row of `processed_events`, as the API serves it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub event_id: String,
    pub event_type: String,
    pub order_id: Option<String>,
    pub version: Option<i64>,
    pub outcome: Outcome,
    pub shipment_id: Option<Uuid>,
    pub received_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRecordRow {
    pub seq: i64,
    event_id: String,
    event_type: String,
    order_id: Option<String>,
    version: Option<i64>,
    outcome: String,
    shipment_id: Option<Uuid>,
    received_at: DateTime<Utc>,
}

impl TryFrom<EventRecordRow> for EventRecord {
    type Error = StoreError;

    fn try_from(row: EventRecordRow) -> Result<EventRecord, StoreError> {
        Ok(EventRecord {
            outcome: outcome(&row.outcome)?,
            event_id: row.event_id,
            event_type: row.event_type,
            order_id: row.order_id,
            version: row.version,
            shipment_id: row.shipment_id,
            received_at: row.received_at,
        })
    }
}

/// The columns a batch writes of each recorded event, in the order both batch writers give
/// their values.
pub(super) const EVENT_WRITTEN: &str = "event_id, derived_id, event_type, order_id, outcome, \
     shipment_id, version, state, reason, occurred_at, received_at, in_history, head_seq";

/// The columns a batch writes of a new shipment, in the order both batch writers give their
/// values.
pub(super) const SHIPMENT_WRITTEN: &str = "id, order_id, customer_id, items, shipping_address, \
     status, version, revision, cancel_reason, carrier, tracking_number, source_event_id, \
     ordered_at, created_at, updated_at, head_seq";

/// What a batch reads, in one statement: the history of the batch's orders (never their
/// other records: duplicates, events that came too late) with their heads, every recorded
/// event with one of the batch's ids with its order's current shipment, and the batch's
/// orders' shipments. Its columns are [`LoadRow`]'s fields, read by name on both backends.
pub(super) fn load_sql(orders_param: &str, ids_param: &str) -> String {
    format!(
        "SELECT e.order_id, e.event_id, e.derived_id, e.event_type, e.outcome, e.version, \
                e.state, e.reason, e.occurred_at, e.head_seq, c.id AS current_shipment, \
                NULL AS operator_status, NULL AS history_removed_at, {NO_SHIPMENT} \
         FROM processed_events e LEFT JOIN shipments c ON c.order_id = e.order_id \
         WHERE (e.order_id {orders_param} AND e.in_history) OR e.event_id {ids_param} \
         UNION ALL \
         SELECT s.order_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.id, \
                s.operator_status, s.history_removed_at, {SHIPMENT_AS_LOADED} \
         FROM shipments s WHERE s.order_id {orders_param}"
    )
}

const SHIPMENT_AS_LOADED: &str =
    "s.head_seq AS s_head_seq, s.seq AS s_seq, s.id AS s_id, s.customer_id AS s_customer_id, \
     s.items AS s_items, s.shipping_address AS s_shipping_address, s.status AS s_status, \
     s.version AS s_version, s.revision AS s_revision, s.cancel_reason AS s_cancel_reason, \
     s.carrier AS s_carrier, s.tracking_number AS s_tracking_number, \
     s.source_event_id AS s_source_event_id, s.ordered_at AS s_ordered_at, \
     s.created_at AS s_created_at, s.updated_at AS s_updated_at";

/// The shipment's columns of an event's row: none (named here, as a union's first part names
/// its columns).
const NO_SHIPMENT: &str =
    "NULL AS s_head_seq, NULL AS s_seq, NULL AS s_id, NULL AS s_customer_id, \
     NULL AS s_items, NULL AS s_shipping_address, NULL AS s_status, NULL AS s_version, \
     NULL AS s_revision, NULL AS s_cancel_reason, NULL AS s_carrier, \
     NULL AS s_tracking_number, NULL AS s_source_event_id, NULL AS s_ordered_at, \
     NULL AS s_created_at, NULL AS s_updated_at";

/// A row of the load: an event (with `event_id`) or a shipment (without).
#[derive(sqlx::FromRow)]
pub(super) struct LoadRow {
    order_id: Option<String>,
    event_id: Option<String>,
    derived_id: Option<bool>,
    event_type: Option<String>,
    outcome: Option<String>,
    version: Option<i64>,
    state: Option<Json<OrderState>>,
    reason: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    head_seq: Option<i64>,
    current_shipment: Option<Uuid>,
    operator_status: Option<String>,
    history_removed_at: Option<DateTime<Utc>>,
    s_head_seq: Option<i64>,
    s_seq: Option<i64>,
    s_id: Option<Uuid>,
    s_customer_id: Option<String>,
    s_items: Option<Json<Vec<Item>>>,
    s_shipping_address: Option<Json<Address>>,
    s_status: Option<String>,
    s_version: Option<i64>,
    s_revision: Option<i64>,
    s_cancel_reason: Option<String>,
    s_carrier: Option<String>,
    s_tracking_number: Option<String>,
    s_source_event_id: Option<String>,
    s_ordered_at: Option<DateTime<Utc>>,
    s_created_at: Option<DateTime<Utc>>,
    s_updated_at: Option<DateTime<Utc>>,
}

/// Where each of [`LoadRow`]'s columns is in a prepared [`load_sql`], found by name once per
/// statement: a lookup by name per column per row would cost more than the rest of reading a
/// batch of duplicates.
pub(super) struct LoadColumns([usize; 29]);

impl LoadColumns {
    const NAMES: [&'static str; 29] = [
        "order_id",
        "event_id",
        "derived_id",
        "event_type",
        "outcome",
        "version",
        "state",
        "reason",
        "occurred_at",
        "head_seq",
        "current_shipment",
        "operator_status",
        "history_removed_at",
        "s_head_seq",
        "s_seq",
        "s_id",
        "s_customer_id",
        "s_items",
        "s_shipping_address",
        "s_status",
        "s_version",
        "s_revision",
        "s_cancel_reason",
        "s_carrier",
        "s_tracking_number",
        "s_source_event_id",
        "s_ordered_at",
        "s_created_at",
        "s_updated_at",
    ];

    pub fn of(statement: &rusqlite::Statement<'_>) -> rusqlite::Result<LoadColumns> {
        let mut columns = [0; 29];
        for (column, name) in columns.iter_mut().zip(Self::NAMES) {
            *column = statement.column_index(name)?;
        }
        Ok(LoadColumns(columns))
    }
}

impl LoadRow {
    /// The same row as SQLite's writer connection reads it (it runs outside sqlx), each
    /// column where `columns` found its name.
    pub fn from_sqlite(
        row: &rusqlite::Row<'_>,
        columns: &LoadColumns,
    ) -> rusqlite::Result<LoadRow> {
        let [order_id, event_id, derived_id, event_type, outcome, version, state, reason, occurred_at, head_seq, current_shipment, operator_status, history_removed_at, s_head_seq, s_seq, s_id, s_customer_id, s_items, s_shipping_address, s_status, s_version, s_revision, s_cancel_reason, s_carrier, s_tracking_number, s_source_event_id, s_ordered_at, s_created_at, s_updated_at] =
            columns.0;
        Ok(LoadRow {
            order_id: row.get(order_id)?,
            event_id: row.get(event_id)?,
            derived_id: row.get(derived_id)?,
            event_type: row.get(event_type)?,
            outcome: row.get(outcome)?,
            version: row.get(version)?,
            state: json_column(row, state)?,
            reason: row.get(reason)?,
            occurred_at: row.get(occurred_at)?,
            head_seq: row.get(head_seq)?,
            current_shipment: row.get(current_shipment)?,
            operator_status: row.get(operator_status)?,
            history_removed_at: row.get(history_removed_at)?,
            s_head_seq: row.get(s_head_seq)?,
            s_seq: row.get(s_seq)?,
            s_id: row.get(s_id)?,
            s_customer_id: row.get(s_customer_id)?,
            s_items: json_column(row, s_items)?,
            s_shipping_address: json_column(row, s_shipping_address)?,
            s_status: row.get(s_status)?,
            s_version: row.get(s_version)?,
            s_revision: row.get(s_revision)?,
            s_cancel_reason: row.get(s_cancel_reason)?,
            s_carrier: row.get(s_carrier)?,
            s_tracking_number: row.get(s_tracking_number)?,
            s_source_event_id: row.get(s_source_event_id)?,
            s_ordered_at: row.get(s_ordered_at)?,
            s_created_at: row.get(s_created_at)?,
            s_updated_at: row.get(s_updated_at)?,
        })
    }
}

/// A JSON text column, decoded as sqlx decodes `Json<T>`.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> rusqlite::Result<Option<Json<T>>> {
    let Some(text) = row.get_ref(index)?.as_str_or_null()? else {
        return Ok(None);
    };
    serde_json::from_str(text)
        .map(|value| Some(Json(value)))
        .map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                error.into(),
            )
        })
}

impl Loaded {
    /// The rows of [`load_sql`] for `orders` (sorted): every order's history only when the
    /// order was asked for (a batch's id may name an event of another order).
    pub(super) fn from_rows(rows: Vec<LoadRow>, orders: &[String]) -> Result<Loaded, StoreError> {
        let mut known = HashMap::new();
        let mut read: HashMap<String, ReadOrder> = HashMap::new();
        for row in rows {
            if row.event_id.is_none() {
                let (order_id, shipment) = row.into_shipment()?;
                read.entry(order_id).or_default().shipment = Some(shipment);
                continue;
            }
            let event = row.into_event()?;
            known.insert(event.key, event.known);
            if let Some((order_id, outcome, fact, head_seq)) = event.history {
                if orders.binary_search(&order_id).is_ok() {
                    let order = read.entry(order_id).or_default();
                    order.history.push((outcome, fact));
                    order.first_event_head = order.first_event_head.or(head_seq);
                }
            }
        }
        let orders = read
            .into_iter()
            .map(|(order_id, order)| (order_id, order.into_stored()))
            .collect();
        Ok(Loaded { known, orders })
    }
}

/// An order's rows as they are read.
#[derive(Default)]
struct ReadOrder {
    history: Vec<(Outcome, Fact)>,
    first_event_head: Option<i64>,
    shipment: Option<LoadedShipment>,
}

struct LoadedShipment {
    shipment: Shipment,
    operator_status: Option<ShipmentStatus>,
    history_removed: bool,
    head_seq: i64,
}

impl ReadOrder {
    fn into_stored(self) -> StoredOrder {
        let (operator_status, history_removed) = self
            .shipment
            .as_ref()
            .map_or((None, false), |s| (s.operator_status, s.history_removed));
        let head = match (&self.shipment, self.first_event_head) {
            (Some(shipment), _) => Head::Shipment(shipment.head_seq),
            (None, Some(seq)) => Head::FirstEvent(seq),
            (None, None) => Head::New,
        };
        StoredOrder {
            life: OrderLife::new(self.history, operator_status, history_removed),
            shipment: self.shipment.map(|s| s.shipment),
            head,
        }
    }
}

/// A loaded event: the record of its id and, when it is part of its order's history, its
/// place there (and its head, when it is the order's first).
struct LoadedEvent {
    key: (String, bool),
    known: KnownEvent,
    history: Option<(String, Outcome, Fact, Option<i64>)>,
}

impl LoadRow {
    fn into_shipment(self) -> Result<(String, LoadedShipment), StoreError> {
        let missing = || StoreError::corrupt(format!("shipment {:?} lacks a column", self.s_id));
        let order_id = self.order_id.clone().ok_or_else(missing)?;
        let shipment = ShipmentRow {
            seq: self.s_seq.ok_or_else(missing)?,
            id: self.s_id.ok_or_else(missing)?,
            order_id: order_id.clone(),
            customer_id: self.s_customer_id.ok_or_else(missing)?,
            items: self.s_items.ok_or_else(missing)?,
            shipping_address: self.s_shipping_address.ok_or_else(missing)?,
            status: self.s_status.ok_or_else(missing)?,
            version: self.s_version.ok_or_else(missing)?,
            revision: self.s_revision.ok_or_else(missing)?,
            cancel_reason: self.s_cancel_reason,
            carrier: self.s_carrier,
            tracking_number: self.s_tracking_number,
            source_event_id: self.s_source_event_id.ok_or_else(missing)?,
            ordered_at: self.s_ordered_at.ok_or_else(missing)?,
            created_at: self.s_created_at.ok_or_else(missing)?,
            updated_at: self.s_updated_at.ok_or_else(missing)?,
        }
        .try_into()?;
        let loaded = LoadedShipment {
            shipment,
            operator_status: self.operator_status.as_deref().map(status).transpose()?,
            history_removed: self.history_removed_at.is_some(),
            head_seq: self.s_head_seq.ok_or_else(missing)?,
        };
        Ok((order_id, loaded))
    }

    fn into_event(self) -> Result<LoadedEvent, StoreError> {
        let corrupt = || StoreError::corrupt(format!("event {:?} lacks its data", self.event_id));
        let event_id = self.event_id.clone().ok_or_else(corrupt)?;
        let outcome = outcome(self.outcome.as_deref().ok_or_else(corrupt)?)?;
        let mut event = LoadedEvent {
            key: (event_id.clone(), self.derived_id.ok_or_else(corrupt)?),
            known: KnownEvent {
                outcome,
                order_id: self.order_id.clone(),
                shipment_id: self.current_shipment,
            },
            history: None,
        };
        let Some(order_id) = self.order_id.filter(|_| outcome.joins_history()) else {
            return Ok(event);
        };
        let change = match self.event_type.as_deref() {
            Some(ORDER_CREATED) => Change::Created(self.state.ok_or_else(corrupt)?.0),
            Some(ORDER_UPDATED) => Change::Updated(self.state.ok_or_else(corrupt)?.0),
            Some(ORDER_CANCELLED) => Change::Cancelled {
                reason: self.reason,
            },
            _ => return Err(corrupt()),
        };
        let fact = Fact {
            version: self.version.ok_or_else(corrupt)?,
            event_id,
            occurred_at: self.occurred_at,
            change,
        };
        event.history = Some((order_id, outcome, fact, self.head_seq));
        Ok(event)
    }
}

pub(super) fn status(text: &str) -> Result<ShipmentStatus, StoreError> {
    ShipmentStatus::parse(text)
        .ok_or_else(|| StoreError::corrupt(format!("unknown status {text:?}")))
}

fn outcome(text: &str) -> Result<Outcome, StoreError> {
    Outcome::parse(text).ok_or_else(|| StoreError::corrupt(format!("unknown outcome {text:?}")))
}
