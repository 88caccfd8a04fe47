//! Rows as both backends read them, and their conversion into domain values. A row that does
//! not convert is a corrupt database, reported as an internal error.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use super::plan::{EventRow, KnownEvent, StoredShipment};
use super::StoreError;
use crate::domain::order_event::{ORDER_CANCELLED, ORDER_CREATED, ORDER_UPDATED};
use crate::domain::{Address, Change, Fact, Item, OrderState, Outcome, Shipment, ShipmentStatus};

pub(super) const SHIPMENT_COLUMNS: &str = "seq, id, order_id, customer_id, items, \
     shipping_address, status, version, revision, cancel_reason, carrier, tracking_number, \
     source_event_id, ordered_at, created_at, updated_at";

pub(super) const EVENT_COLUMNS: &str =
    "seq, event_id, event_type, order_id, version, outcome, shipment_id, received_at";

/// The columns of `processed_events` that the fold reads back.
pub(super) const HISTORY_COLUMNS: &str =
    "order_id, event_id, event_type, outcome, version, state, reason, occurred_at";

/// What a change of an existing shipment rewrites: everything the fold decides.
pub(super) const UPSERT_SHIPMENT: &str = "ON CONFLICT (id) DO UPDATE SET \
     customer_id = excluded.customer_id, items = excluded.items, \
     shipping_address = excluded.shipping_address, status = excluded.status, \
     version = excluded.version, revision = excluded.revision, \
     cancel_reason = excluded.cancel_reason, ordered_at = excluded.ordered_at, \
     updated_at = excluded.updated_at";

#[derive(sqlx::FromRow)]
pub(super) struct ShipmentRow {
    pub seq: i64,
    id: Uuid,
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

/// An already recorded event id of a batch, with its order's shipment.
#[derive(sqlx::FromRow)]
pub(super) struct KnownRow {
    event_id: String,
    derived_id: bool,
    outcome: String,
    order_id: Option<String>,
    shipment_id: Option<Uuid>,
}

impl KnownRow {
    pub fn into_known(self) -> Result<((String, bool), KnownEvent), StoreError> {
        Ok((
            (self.event_id, self.derived_id),
            KnownEvent {
                outcome: outcome(&self.outcome)?,
                order_id: self.order_id,
                shipment_id: self.shipment_id,
            },
        ))
    }
}

/// One recorded event of an order, as the fold reads it back.
#[derive(sqlx::FromRow)]
pub(super) struct HistoryRow {
    order_id: String,
    event_id: String,
    event_type: String,
    outcome: String,
    version: Option<i64>,
    state: Option<Json<OrderState>>,
    reason: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
}

impl HistoryRow {
    /// The event as a fact of its order's history; `None` for an event that is not part of
    /// it (a duplicate, one that came too late, one of a type the service does not handle).
    pub fn into_fact(self) -> Result<Option<(String, Outcome, Fact)>, StoreError> {
        let outcome = outcome(&self.outcome)?;
        if !outcome.joins_history() {
            return Ok(None);
        }
        let corrupt = || StoreError::corrupt(format!("event {:?} lacks its data", self.event_id));
        let change = match self.event_type.as_str() {
            ORDER_CREATED => Change::Created(self.state.ok_or_else(corrupt)?.0),
            ORDER_UPDATED => Change::Updated(self.state.ok_or_else(corrupt)?.0),
            ORDER_CANCELLED => Change::Cancelled {
                reason: self.reason,
            },
            _ => return Err(corrupt()),
        };
        let fact = Fact {
            version: self.version.ok_or_else(corrupt)?,
            event_id: self.event_id,
            occurred_at: self.occurred_at,
            change,
        };
        Ok(Some((self.order_id, outcome, fact)))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct StoredShipmentRow {
    pub order_id: String,
    id: Uuid,
    revision: i64,
    operator_status: Option<String>,
    source_event_id: String,
    created_at: DateTime<Utc>,
}

impl StoredShipmentRow {
    pub fn into_stored(self) -> Result<(String, StoredShipment), StoreError> {
        Ok((
            self.order_id,
            StoredShipment {
                id: self.id,
                revision: self.revision,
                operator_status: self.operator_status.as_deref().map(status).transpose()?,
                source_event_id: self.source_event_id,
                created_at: self.created_at,
            },
        ))
    }
}

impl EventRow<'_> {
    /// The order's state, for the `state` column.
    pub fn state(&self) -> Option<Json<&OrderState>> {
        match self.change? {
            Change::Created(state) | Change::Updated(state) => Some(Json(state)),
            Change::Cancelled { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self.change? {
            Change::Cancelled { reason } => reason.as_deref(),
            _ => None,
        }
    }
}

fn status(text: &str) -> Result<ShipmentStatus, StoreError> {
    ShipmentStatus::parse(text)
        .ok_or_else(|| StoreError::corrupt(format!("unknown status {text:?}")))
}

fn outcome(text: &str) -> Result<Outcome, StoreError> {
    Outcome::parse(text).ok_or_else(|| StoreError::corrupt(format!("unknown outcome {text:?}")))
}
