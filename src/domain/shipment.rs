//! A shipment as stored and as served by the REST API, and the statuses it moves through.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub zip: String,
    /// ISO 3166-1 alpha-2 code, when the sender gives one (the shop platforms do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// What an order says about its shipment: who, what, where. Carried by `order.created` and
/// `order.updated`, kept with each recorded event, and copied onto the shipment by the fold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    pub customer_id: String,
    pub items: Vec<Item>,
    pub shipping_address: Address,
}

#[cfg(test)]
impl OrderState {
    /// One valid order's data, for the unit tests of every module.
    pub fn example(customer_id: &str) -> OrderState {
        OrderState {
            customer_id: customer_id.to_owned(),
            items: vec![Item {
                sku: "SKU".into(),
                quantity: 1,
            }],
            shipping_address: Address {
                street: "1 Road".into(),
                city: "Town".into(),
                zip: "1".into(),
                country: None,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    Pending,
    Packed,
    Shipped,
    Delivered,
    Cancelled,
}

impl ShipmentStatus {
    pub const ALL: [ShipmentStatus; 5] = [
        ShipmentStatus::Pending,
        ShipmentStatus::Packed,
        ShipmentStatus::Shipped,
        ShipmentStatus::Delivered,
        ShipmentStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Pending => "pending",
            ShipmentStatus::Packed => "packed",
            ShipmentStatus::Shipped => "shipped",
            ShipmentStatus::Delivered => "delivered",
            ShipmentStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// The status served, from what the order's events decide (`ordered`) and what an
    /// operator moved the shipment to: the operator's, unless the order's own events cancel a
    /// shipment the operator has only packed (or not touched).
    pub fn served(ordered: ShipmentStatus, operator: Option<ShipmentStatus>) -> ShipmentStatus {
        match (operator, ordered) {
            (Some(ShipmentStatus::Packed) | None, ShipmentStatus::Cancelled) => {
                ShipmentStatus::Cancelled
            }
            (Some(operator), _) => operator,
            (None, ordered) => ordered,
        }
    }

    /// Once the parcel has left or an operator has cancelled it, order events change nothing.
    pub fn is_final_by_operator(operator: Option<ShipmentStatus>) -> bool {
        matches!(
            operator,
            Some(ShipmentStatus::Shipped | ShipmentStatus::Delivered | ShipmentStatus::Cancelled)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shipment {
    pub id: Uuid,
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<Item>,
    pub shipping_address: Address,
    pub status: ShipmentStatus,
    /// The version of the order event that decides the shipment (section 3a of the contract).
    pub version: i64,
    /// Raised by one on every change of the shipment; its `ETag`.
    pub revision: i64,
    pub cancel_reason: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub source_event_id: String,
    pub ordered_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Shipment {
    pub const FIRST_REVISION: i64 = 1;

    /// The shipment as changed now: one revision on. Every change goes through here, whether
    /// the order's events or an operator made it.
    pub fn revised(self, now: DateTime<Utc>) -> Shipment {
        Shipment {
            revision: self.revision + 1,
            updated_at: now,
            ..self
        }
    }
}

/// What kind of change an announcement reports (contract section 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipmentChange {
    #[serde(rename = "shipment.created")]
    Created,
    /// The order's data on it changed (or the operator's carrier or tracking number).
    #[serde(rename = "shipment.updated")]
    Updated,
    #[serde(rename = "shipment.status_changed")]
    StatusChanged,
}

impl ShipmentChange {
    pub const ALL: [ShipmentChange; 3] = [
        ShipmentChange::Created,
        ShipmentChange::Updated,
        ShipmentChange::StatusChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentChange::Created => "shipment.created",
            ShipmentChange::Updated => "shipment.updated",
            ShipmentChange::StatusChanged => "shipment.status_changed",
        }
    }

    pub fn parse(text: &str) -> Option<ShipmentChange> {
        Self::ALL.into_iter().find(|change| change.as_str() == text)
    }

    /// The change from `before` (none: the shipment is new) to `after`.
    pub fn between(before: Option<&Shipment>, after: &Shipment) -> ShipmentChange {
        match before {
            None => ShipmentChange::Created,
            Some(before) if before.status != after.status => ShipmentChange::StatusChanged,
            Some(_) => ShipmentChange::Updated,
        }
    }
}

/// The body of every outbound event: the shipment as `GET /shipments/{id}` serves it, after
/// the change. `id` is the outbound event's own id, stable across retries.
#[derive(Debug, Serialize)]
struct Announcement<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    change: ShipmentChange,
    timestamp: DateTime<Utc>,
    data: &'a Shipment,
}

/// One change of one shipment, as every subscriber will get it: a row of the outbox.
#[derive(Debug, Clone)]
pub struct OutboundEvent {
    pub id: Uuid,
    pub shipment_id: Uuid,
    pub change: ShipmentChange,
    /// The body, exactly as delivered.
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// The trace the change was made in, continued by every attempt to deliver it.
    pub trace: Option<TraceContext>,
}

/// A W3C trace context (`traceparent`, and `tracestate` when there is one), as the request that
/// made a change carried it: kept with the change's announcement so that each delivery
/// attempt continues the same trace. Opaque to the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub parent: String,
    pub state: Option<String>,
}

impl OutboundEvent {
    /// The announcement that `before` (none: a new shipment) became `after`.
    pub fn announce(
        before: Option<&Shipment>,
        after: &Shipment,
        now: DateTime<Utc>,
        trace: Option<TraceContext>,
    ) -> OutboundEvent {
        let announcement = Announcement {
            id: Uuid::now_v7(),
            change: ShipmentChange::between(before, after),
            timestamp: now,
            data: after,
        };
        OutboundEvent {
            id: announcement.id,
            shipment_id: after.id,
            change: announcement.change,
            body: serde_json::to_string(&announcement).expect("plain data always serialises"),
            created_at: now,
            trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ShipmentStatus::*;
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_name() {
        for status in ShipmentStatus::ALL {
            assert_eq!(ShipmentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ShipmentStatus::parse("lost"), None);
    }

    #[test]
    fn an_order_cancellation_wins_over_packed_but_not_over_shipped() {
        assert_eq!(ShipmentStatus::served(Pending, None), Pending);
        assert_eq!(ShipmentStatus::served(Cancelled, None), Cancelled);
        assert_eq!(ShipmentStatus::served(Pending, Some(Packed)), Packed);
        assert_eq!(ShipmentStatus::served(Cancelled, Some(Packed)), Cancelled);
        assert_eq!(ShipmentStatus::served(Cancelled, Some(Shipped)), Shipped);
        assert_eq!(ShipmentStatus::served(Pending, Some(Cancelled)), Cancelled);
    }
}
