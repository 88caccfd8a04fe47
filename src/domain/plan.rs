//! What a batch of deliveries writes, decided between loading and saving: each delivery goes
//! to its order's [`OrderLife`] (the rules of an order's life live there), a redelivered id is
//! answered from its record, an event of a type the service does not handle is recorded as
//! ignored, and the rows to write are collected: events, shipments (each guarded by the
//! revision it was read at), and one outbound event per change of a shipment. Pure, so both
//! backends share it and it is tested without a database.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Change, Delivery, Event, Fact, Folded, OrderLife, OrderState, OutboundEvent, Outcome, Shipment,
    ShipmentStatus,
};

/// What applying a delivery did, decided inside the committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    /// The order's shipment, when it has one.
    pub shipment_id: Option<Uuid>,
}

/// What a batch needs from the database, read after its orders are locked.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Recorded events by id and whether the id was derived: at least the batch's ids that
    /// are already recorded.
    pub known: HashMap<(String, bool), KnownEvent>,
    /// The recorded events of the batch's orders, with their outcomes.
    pub history: HashMap<String, Vec<(Outcome, Fact)>>,
    /// The shipments of the batch's orders.
    pub shipments: HashMap<String, StoredShipment>,
}

/// A shipment as stored, with what the fold does not see in it.
#[derive(Debug, Clone)]
pub struct StoredShipment {
    pub shipment: Shipment,
    /// The status an operator moved it to, which the order's events cannot undo.
    pub operator_status: Option<ShipmentStatus>,
    /// Whether its order's history was let go (retention).
    pub history_removed: bool,
}

#[derive(Debug, Clone)]
pub struct KnownEvent {
    pub outcome: Outcome,
    pub order_id: Option<String>,
    /// The shipment of the event's order, if it has one now.
    pub shipment_id: Option<Uuid>,
}

/// A row for `processed_events`.
#[derive(Debug)]
pub struct EventRow<'a> {
    pub event_id: &'a str,
    pub derived_id: bool,
    pub event_type: &'a str,
    pub order_id: Option<&'a str>,
    pub outcome: Outcome,
    pub shipment_id: Option<Uuid>,
    pub version: Option<i64>,
    pub change: Option<&'a Change>,
    pub occurred_at: Option<DateTime<Utc>>,
}

impl EventRow<'_> {
    /// The order's state the event carries, kept with it for the fold.
    pub fn state(&self) -> Option<&OrderState> {
        self.change.and_then(Change::state)
    }

    pub fn reason(&self) -> Option<&str> {
        self.change.and_then(Change::reason)
    }
}

/// A shipment to write: inserted when new, else updated only if the stored row is still at
/// the revision the batch read (whatever the locking, a write never overwrites a change it
/// did not see).
#[derive(Debug)]
pub struct ShipmentWrite {
    pub shipment: Shipment,
    /// `None` for a new shipment.
    pub read_revision: Option<i64>,
}

#[derive(Debug)]
pub struct Plan<'a> {
    /// Sorted by key: concurrent batches insert in one order and never deadlock.
    pub events: Vec<EventRow<'a>>,
    /// Each changed shipment in its final state.
    pub shipments: Vec<ShipmentWrite>,
    /// In the order the changes happened.
    pub outbox: Vec<OutboundEvent>,
    /// One per delivery, in order.
    pub answers: Vec<Applied>,
}

impl Plan<'_> {
    /// A batch of redeliveries only: every answer came from the record.
    pub fn writes_nothing(&self) -> bool {
        self.events.is_empty() && self.shipments.is_empty() && self.outbox.is_empty()
    }
}

struct OrderSlot {
    life: OrderLife,
    shipment: Option<Shipment>,
    /// The revision the stored shipment was read at.
    read_revision: Option<i64>,
    changed: bool,
}

/// The order ids of a batch, sorted and without repeats: the order to lock them in.
pub fn orders_of(deliveries: &[&Delivery]) -> Vec<String> {
    let mut orders: Vec<String> = deliveries
        .iter()
        .filter_map(|delivery| match &delivery.event {
            Event::Order(event) => Some(event.order_id.clone()),
            Event::Other { .. } => None,
        })
        .collect();
    orders.sort();
    orders.dedup();
    orders
}

/// The event ids of a batch, without repeats.
pub fn event_ids_of(deliveries: &[&Delivery]) -> Vec<String> {
    let mut ids: Vec<String> = deliveries.iter().map(|d| d.event_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Decides every delivery in order; a later delivery sees what the earlier ones did.
pub fn plan<'a>(deliveries: &[&'a Delivery], loaded: Loaded, now: DateTime<Utc>) -> Plan<'a> {
    let Loaded {
        mut known,
        mut history,
        mut shipments,
    } = loaded;
    let mut orders: HashMap<&str, OrderSlot> = HashMap::new();
    let mut events = Vec::with_capacity(deliveries.len());
    let mut outbox = Vec::new();
    let mut answers = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let key = (delivery.event_id.clone(), delivery.derived_id);
        if let Some(recorded) = known.get(&key) {
            let current = recorded
                .order_id
                .as_deref()
                .and_then(|order| orders.get(order))
                .and_then(|slot| slot.shipment.as_ref().map(|s| s.id));
            answers.push(Applied {
                outcome: recorded.outcome.redelivered(),
                shipment_id: current.or(recorded.shipment_id),
            });
            continue;
        }
        let row = match &delivery.event {
            Event::Other {
                event_type,
                order_id,
            } => EventRow {
                event_id: &delivery.event_id,
                derived_id: delivery.derived_id,
                event_type,
                order_id: order_id.as_deref(),
                outcome: Outcome::Ignored,
                shipment_id: None,
                version: None,
                change: None,
                occurred_at: None,
            },
            Event::Order(event) => {
                let slot = orders.entry(&event.order_id).or_insert_with(|| {
                    let stored = shipments.remove(&event.order_id);
                    let life = OrderLife::new(
                        history.remove(&event.order_id).unwrap_or_default(),
                        stored.as_ref().and_then(|stored| stored.operator_status),
                        stored.as_ref().is_some_and(|stored| stored.history_removed),
                    );
                    let shipment = stored.map(|stored| stored.shipment);
                    OrderSlot {
                        life,
                        read_revision: shipment.as_ref().map(|shipment| shipment.revision),
                        shipment,
                        changed: false,
                    }
                });
                let decision = slot.life.apply(&delivery.event_id, event);
                if let Some(folded) = decision.shipment {
                    let after =
                        next_shipment(slot, folded, &event.order_id, &delivery.event_id, now);
                    outbox.push(OutboundEvent::announce(slot.shipment.as_ref(), &after, now));
                    slot.shipment = Some(after);
                    slot.changed = true;
                }
                EventRow {
                    event_id: &delivery.event_id,
                    derived_id: delivery.derived_id,
                    event_type: event.change.event_type(),
                    order_id: Some(&event.order_id),
                    outcome: decision.outcome,
                    shipment_id: slot.shipment.as_ref().map(|shipment| shipment.id),
                    version: Some(decision.version),
                    change: Some(&event.change),
                    occurred_at: event.occurred_at,
                }
            }
        };
        answers.push(Applied {
            outcome: row.outcome,
            shipment_id: row.shipment_id,
        });
        known.insert(
            key,
            KnownEvent {
                outcome: row.outcome,
                order_id: row.order_id.map(str::to_owned),
                shipment_id: row.shipment_id,
            },
        );
        events.push(row);
    }
    events.sort_by(|a, b| (a.event_id, a.derived_id).cmp(&(b.event_id, b.derived_id)));
    let shipments = orders
        .into_values()
        .filter(|slot| slot.changed)
        .filter_map(|slot| {
            Some(ShipmentWrite {
                shipment: slot.shipment?,
                read_revision: slot.read_revision,
            })
        })
        .collect();
    Plan {
        events,
        shipments,
        outbox,
        answers,
    }
}

/// The slot's shipment after its order's fold changed. The fold owns the order's data, its
/// version and whether the order cancelled it; the shipment keeps its id, its creation and the
/// operator's fields (the status an operator moved it to, carrier, tracking number).
fn next_shipment(
    slot: &OrderSlot,
    folded: Folded,
    order_id: &str,
    event_id: &str,
    now: DateTime<Utc>,
) -> Shipment {
    let status = ShipmentStatus::served(folded.status, slot.life.operator_status());
    match &slot.shipment {
        Some(before) => Shipment {
            customer_id: folded.state.customer_id,
            items: folded.state.items,
            shipping_address: folded.state.shipping_address,
            status,
            version: folded.version,
            cancel_reason: folded.cancel_reason,
            ordered_at: folded.ordered_at,
            ..before.clone()
        }
        .revised(now),
        None => Shipment {
            id: Uuid::now_v7(),
            order_id: order_id.to_owned(),
            customer_id: folded.state.customer_id,
            items: folded.state.items,
            shipping_address: folded.state.shipping_address,
            status,
            version: folded.version,
            revision: Shipment::FIRST_REVISION,
            cancel_reason: folded.cancel_reason,
            carrier: None,
            tracking_number: None,
            source_event_id: event_id.to_owned(),
            ordered_at: folded.ordered_at,
            created_at: now,
            updated_at: now,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderEvent, ShipmentChange};

    fn delivery(event_id: &str, order_id: &str, change: Change) -> Delivery {
        Delivery {
            event_id: event_id.into(),
            derived_id: false,
            event: Event::Order(OrderEvent {
                order_id: order_id.into(),
                version: None,
                occurred_at: Some(DateTime::UNIX_EPOCH),
                change,
            }),
        }
    }

    fn created() -> Change {
        Change::Created(OrderState::example("C"))
    }

    #[test]
    fn twins_in_one_batch_get_one_shipment_and_one_row() {
        let first = delivery("e1", "O1", created());
        let twin = first.clone();
        let plan = plan(&[&first, &twin], Loaded::default(), Utc::now());
        assert_eq!(plan.answers[0].outcome, Outcome::Processed);
        assert_eq!(plan.answers[1].outcome, Outcome::Duplicate);
        assert_eq!(plan.answers[1].shipment_id, plan.answers[0].shipment_id);
        assert_eq!(plan.events.len(), 1);
        assert_eq!(plan.shipments.len(), 1);
        assert!(!plan.writes_nothing());
    }

    #[test]
    fn a_creation_then_a_change_in_one_batch_is_one_write_at_revision_two() {
        let create = delivery("e1", "O1", created());
        let cancel = delivery("e2", "O1", Change::Cancelled { reason: None });
        let plan = plan(&[&create, &cancel], Loaded::default(), Utc::now());
        assert_eq!(plan.shipments.len(), 1);
        assert_eq!(plan.shipments[0].shipment.revision, 2);
        assert_eq!(plan.shipments[0].read_revision, None, "a new shipment");
        assert_eq!(plan.shipments[0].shipment.status, ShipmentStatus::Cancelled);
        assert_eq!(plan.answers[1].outcome, Outcome::Updated);
        // Each change is announced on its own, with its own revision.
        let announced: Vec<(ShipmentChange, i64)> = plan
            .outbox
            .iter()
            .map(|row| {
                let body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
                (row.change, body["data"]["revision"].as_i64().unwrap())
            })
            .collect();
        assert_eq!(
            announced,
            [
                (ShipmentChange::Created, 1),
                (ShipmentChange::StatusChanged, 2)
            ]
        );
    }

    #[test]
    fn a_recorded_id_is_answered_from_the_record_and_written_again_never() {
        let shipment = Uuid::now_v7();
        let mut loaded = Loaded::default();
        loaded.known.insert(
            ("e1".into(), false),
            KnownEvent {
                outcome: Outcome::Processed,
                order_id: Some("O-OTHER".into()),
                shipment_id: Some(shipment),
            },
        );
        let reused = delivery("e1", "O1", created());
        let plan = plan(&[&reused], loaded, Utc::now());
        assert_eq!(
            plan.answers,
            [Applied {
                outcome: Outcome::Duplicate,
                shipment_id: Some(shipment)
            }]
        );
        assert!(plan.writes_nothing());
    }
}
