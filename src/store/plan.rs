//! The middle of a batch, between loading and saving: routes each delivery to its order's
//! [`OrderLife`] (the rules live there), answers redelivered ids from the record, and collects
//! the rows to write. Pure, so both backends share it and it runs without a database.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Applied;
use crate::domain::{Change, Delivery, Event, Fact, Folded, OrderLife, Outcome, ShipmentStatus};

/// What a batch needs from the database, read after its orders are locked.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// The batch's event ids that are already recorded, by id and whether it was derived.
    pub known: HashMap<(String, bool), KnownEvent>,
    /// The recorded events of the batch's orders, with their outcomes.
    pub history: HashMap<String, Vec<(Outcome, Fact)>>,
    /// The shipments of the batch's orders.
    pub shipments: HashMap<String, StoredShipment>,
}

#[derive(Debug, Clone)]
pub(super) struct KnownEvent {
    pub outcome: Outcome,
    pub order_id: Option<String>,
    /// The shipment of the event's order, if it has one now.
    pub shipment_id: Option<Uuid>,
}

/// The parts of a stored shipment that the fold does not decide.
#[derive(Debug, Clone)]
pub(super) struct StoredShipment {
    pub id: Uuid,
    pub revision: i64,
    pub operator_status: Option<ShipmentStatus>,
    pub source_event_id: String,
    pub created_at: DateTime<Utc>,
}

/// A row for `processed_events`.
#[derive(Debug)]
pub(super) struct EventRow<'a> {
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

/// A shipment to insert, or to update when its id exists.
#[derive(Debug)]
pub(super) struct ShipmentWrite {
    pub order_id: String,
    pub stored: StoredShipment,
    pub folded: Folded,
    pub status: ShipmentStatus,
}

#[derive(Debug)]
pub(super) struct Plan<'a> {
    /// Sorted by event id: concurrent batches insert in one order and never deadlock.
    pub events: Vec<EventRow<'a>>,
    pub shipments: Vec<ShipmentWrite>,
    /// One per delivery, in order.
    pub answers: Vec<Applied>,
}

#[derive(Default)]
struct OrderSlot {
    life: OrderLife,
    shipment: Option<StoredShipment>,
    changed: bool,
}

/// The order ids of a batch, sorted and without repeats: the order to lock them in.
pub(super) fn orders_of(deliveries: &[&Delivery]) -> Vec<String> {
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
pub(super) fn event_ids_of(deliveries: &[&Delivery]) -> Vec<String> {
    let mut ids: Vec<String> = deliveries.iter().map(|d| d.event_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Decides every delivery in order; a later delivery sees what the earlier ones did.
pub(super) fn plan<'a>(deliveries: &[&'a Delivery], loaded: Loaded) -> Plan<'a> {
    let Loaded {
        mut known,
        mut history,
        mut shipments,
    } = loaded;
    let mut orders: HashMap<&str, OrderSlot> = HashMap::new();
    let mut events = Vec::with_capacity(deliveries.len());
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
        let (row, answer) = match &delivery.event {
            Event::Other {
                event_type,
                order_id,
            } => (
                EventRow {
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
                Applied {
                    outcome: Outcome::Ignored,
                    shipment_id: None,
                },
            ),
            Event::Order(event) => {
                let slot = orders.entry(&event.order_id).or_insert_with(|| OrderSlot {
                    life: OrderLife::new(
                        history.remove(&event.order_id).unwrap_or_default(),
                        shipments
                            .get(&event.order_id)
                            .and_then(|shipment| shipment.operator_status),
                    ),
                    shipment: shipments.remove(&event.order_id),
                    changed: false,
                });
                let decision = slot.life.apply(&delivery.event_id, event);
                if decision.outcome.changes_shipment() {
                    match &mut slot.shipment {
                        Some(shipment) => shipment.revision += 1,
                        None => {
                            slot.shipment = Some(StoredShipment {
                                id: Uuid::now_v7(),
                                revision: 1,
                                operator_status: None,
                                source_event_id: delivery.event_id.clone(),
                                created_at: Utc::now(),
                            })
                        }
                    }
                    slot.changed = true;
                }
                let shipment_id = slot.shipment.as_ref().map(|shipment| shipment.id);
                (
                    EventRow {
                        event_id: &delivery.event_id,
                        derived_id: delivery.derived_id,
                        event_type: event.change.event_type(),
                        order_id: Some(&event.order_id),
                        outcome: decision.outcome,
                        shipment_id,
                        version: Some(decision.version),
                        change: Some(&event.change),
                        occurred_at: event.occurred_at,
                    },
                    Applied {
                        outcome: decision.outcome,
                        shipment_id,
                    },
                )
            }
        };
        known.insert(
            key,
            KnownEvent {
                outcome: row.outcome,
                order_id: row.order_id.map(str::to_owned),
                shipment_id: row.shipment_id,
            },
        );
        events.push(row);
        answers.push(answer);
    }
    events.sort_by(|a, b| (a.event_id, a.derived_id).cmp(&(b.event_id, b.derived_id)));
    let shipments = orders
        .into_iter()
        .filter(|(_, slot)| slot.changed)
        .filter_map(|(order_id, slot)| {
            let folded = slot.life.shipment()?;
            let stored = slot.shipment?;
            Some(ShipmentWrite {
                order_id: order_id.to_owned(),
                status: ShipmentStatus::of(folded.status, stored.operator_status),
                stored,
                folded,
            })
        })
        .collect();
    Plan {
        events,
        shipments,
        answers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Address, Item, OrderEvent, OrderState};

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
        Change::Created(OrderState {
            customer_id: "C".into(),
            items: vec![Item {
                sku: "S".into(),
                quantity: 1,
            }],
            shipping_address: Address {
                street: "1".into(),
                city: "2".into(),
                zip: "3".into(),
            },
        })
    }

    #[test]
    fn twins_in_one_batch_get_one_shipment_and_one_row() {
        let first = delivery("e1", "O1", created());
        let twin = first.clone();
        let plan = plan(&[&first, &twin], Loaded::default());
        assert_eq!(plan.answers[0].outcome, Outcome::Processed);
        assert_eq!(plan.answers[1].outcome, Outcome::Duplicate);
        assert_eq!(plan.answers[1].shipment_id, plan.answers[0].shipment_id);
        assert_eq!(plan.events.len(), 1);
        assert_eq!(plan.shipments.len(), 1);
    }

    #[test]
    fn a_creation_then_a_change_in_one_batch_is_one_write_at_revision_two() {
        let create = delivery("e1", "O1", created());
        let cancel = delivery("e2", "O1", Change::Cancelled { reason: None });
        let plan = plan(&[&create, &cancel], Loaded::default());
        assert_eq!(plan.shipments.len(), 1);
        assert_eq!(plan.shipments[0].stored.revision, 2);
        assert_eq!(plan.shipments[0].status, ShipmentStatus::Cancelled);
        assert_eq!(plan.answers[1].outcome, Outcome::Updated);
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
        let plan = plan(&[&reused], loaded);
        assert_eq!(
            plan.answers,
            [Applied {
                outcome: Outcome::Duplicate,
                shipment_id: Some(shipment)
            }]
        );
        assert!(plan.events.is_empty() && plan.shipments.is_empty());
    }
}
