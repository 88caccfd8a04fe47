//! What a batch of deliveries writes, decided between loading and saving: each delivery goes
//! to its order's [`OrderLife`] (the rules of an order's life live there), a redelivered id is
//! answered from its record, an event of a type the service does not handle is recorded as
//! ignored, and the rows to write are collected: events, shipments, heads and one outbound
//! event per change of a shipment. Pure, so both backends share it and it is tested without a
//! database.
//!
//! Writers of one order never lock it: each write is guarded by the order's [`Head`], which
//! every event recorded into the order's history advances. The head is the shipment when the
//! order has one (its `head_seq`, and its `revision`, which an operator's move advances too),
//! else the order's first recorded event (`is_head`, its `head_seq`); the first event of a new
//! order becomes its head, and a unique index lets only one. A writer advances the head only
//! from the value it read, so of two writers that read the same order, the second one's write
//! finds the head moved and fails whole, and its batch is read and applied again.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Change, Delivery, Event, Folded, OrderLife, OrderState, OutboundEvent, Outcome, Shipment,
    ShipmentStatus,
};

/// What applying a delivery did, decided inside the committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    /// The order's shipment, when it has one.
    pub shipment_id: Option<Uuid>,
}

/// What a batch needs to know before it decides.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Recorded events by id and whether the id was derived: at least the batch's ids that
    /// are already recorded.
    pub known: HashMap<(String, bool), KnownEvent>,
    /// The batch's orders as stored; an order missing here has nothing recorded.
    pub orders: HashMap<String, StoredOrder>,
}

/// An order as stored: its life (history, the operator's status), its shipment, its head.
#[derive(Debug, Clone, Default)]
pub struct StoredOrder {
    pub life: OrderLife,
    pub shipment: Option<Shipment>,
    pub head: Head,
}

/// What guards the writes of an order (see the module's documentation), as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Head {
    /// Nothing recorded: the batch's first event of the order in its history becomes its head.
    #[default]
    New,
    /// A history without a shipment: the first recorded event's `head_seq`.
    FirstEvent(i64),
    /// The shipment's `head_seq` (its revision is in the shipment).
    Shipment(i64),
}

/// The head a new head starts at.
pub const FIRST_HEAD_SEQ: i64 = 1;

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
    /// `Some(head_seq)` for the first event of a new order: its head.
    pub head_seq: Option<i64>,
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

/// A shipment to write: inserted when new, else updated only where the stored row is still
/// at the revision and head the batch read. Written whenever an event joins its order's
/// history, changed or not, to advance its head.
#[derive(Debug)]
pub struct ShipmentWrite {
    pub shipment: Shipment,
    /// `None` for a new shipment, else the revision and `head_seq` read.
    pub read: Option<(i64, i64)>,
    pub head_seq: i64,
}

/// The first recorded event of an order without a shipment, advanced from `read_seq`.
#[derive(Debug, PartialEq, Eq)]
pub struct HeadWrite {
    pub order_id: String,
    pub read_seq: i64,
}

#[derive(Debug)]
pub struct Plan<'a> {
    /// Sorted by key: concurrent batches insert in one order and never deadlock.
    pub events: Vec<EventRow<'a>>,
    /// Each written shipment in its final state, by order id (the one lock order).
    pub shipments: Vec<ShipmentWrite>,
    /// By order id.
    pub heads: Vec<HeadWrite>,
    /// In the order the changes happened.
    pub outbox: Vec<OutboundEvent>,
    /// One per delivery, in order.
    pub answers: Vec<Applied>,
    /// Every order of the batch as it is stored once the plan is written.
    pub orders: Vec<(String, StoredOrder)>,
}

impl Plan<'_> {
    /// A batch of redeliveries only: every answer came from the record.
    pub fn writes_nothing(&self) -> bool {
        self.events.is_empty() && self.shipments.is_empty() && self.outbox.is_empty()
    }

    /// How many guarded rows the writes must find: each read shipment and each head.
    pub fn guarded_rows(&self) -> i64 {
        let shipments = self.shipments.iter().filter(|w| w.read.is_some()).count();
        (shipments + self.heads.len()) as i64
    }
}

struct OrderSlot {
    stored: StoredOrder,
    /// The head and the shipment's revision as read.
    read_head: Head,
    read_revision: Option<i64>,
    /// Whether an event joined the order's history.
    touched: bool,
    changed: bool,
}

/// The order ids of a batch, sorted and without repeats.
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
        orders: mut stored_orders,
    } = loaded;
    // By order id: shipments and heads are written in that order, so that two batches on
    // the same orders lock their rows in one order and never wait for each other in a circle.
    let mut orders: BTreeMap<&str, OrderSlot> = BTreeMap::new();
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
                .and_then(|slot| slot.stored.shipment.as_ref().map(|s| s.id));
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
                head_seq: None,
            },
            Event::Order(event) => {
                let slot = orders.entry(&event.order_id).or_insert_with(|| {
                    let stored = stored_orders.remove(&event.order_id).unwrap_or_default();
                    OrderSlot {
                        read_head: stored.head,
                        read_revision: stored.shipment.as_ref().map(|s| s.revision),
                        stored,
                        touched: false,
                        changed: false,
                    }
                });
                let decision = slot.stored.life.apply(&delivery.event_id, event);
                if let Some(folded) = decision.shipment {
                    let after =
                        next_shipment(slot, folded, &event.order_id, &delivery.event_id, now);
                    outbox.push(OutboundEvent::announce(
                        slot.stored.shipment.as_ref(),
                        &after,
                        now,
                        delivery.trace.clone(),
                    ));
                    slot.stored.shipment = Some(after);
                    slot.changed = true;
                }
                // A new order's first event in its history becomes its head.
                let head_seq = (decision.outcome.joins_history()
                    && slot.read_head == Head::New
                    && !slot.touched)
                    .then_some(FIRST_HEAD_SEQ);
                slot.touched |= decision.outcome.joins_history();
                EventRow {
                    event_id: &delivery.event_id,
                    derived_id: delivery.derived_id,
                    event_type: event.change.event_type(),
                    order_id: Some(&event.order_id),
                    outcome: decision.outcome,
                    shipment_id: slot.stored.shipment.as_ref().map(|shipment| shipment.id),
                    version: Some(decision.version),
                    change: Some(&event.change),
                    occurred_at: event.occurred_at,
                    head_seq,
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
    let mut shipments = Vec::new();
    let mut heads = Vec::new();
    let mut after = Vec::with_capacity(orders.len());
    for (order_id, mut slot) in orders {
        if slot.touched || slot.changed {
            slot.stored.head = advance(&slot, order_id, &mut shipments, &mut heads);
        }
        after.push((order_id.to_owned(), slot.stored));
    }
    Plan {
        events,
        shipments,
        heads,
        outbox,
        answers,
        orders: after,
    }
}

/// Writes what guards the order's writes in `slot` (its shipment, its first event's head):
/// returns the order's head after them.
fn advance(
    slot: &OrderSlot,
    order_id: &str,
    shipments: &mut Vec<ShipmentWrite>,
    heads: &mut Vec<HeadWrite>,
) -> Head {
    if let Head::FirstEvent(read_seq) = slot.read_head {
        heads.push(HeadWrite {
            order_id: order_id.to_owned(),
            read_seq,
        });
    }
    let Some(shipment) = &slot.stored.shipment else {
        return match slot.read_head {
            Head::FirstEvent(read_seq) => Head::FirstEvent(read_seq + 1),
            _ => Head::FirstEvent(FIRST_HEAD_SEQ),
        };
    };
    let (read, head_seq) = match (slot.read_head, slot.read_revision) {
        (Head::Shipment(seq), Some(revision)) => (Some((revision, seq)), seq + 1),
        _ => (None, FIRST_HEAD_SEQ),
    };
    shipments.push(ShipmentWrite {
        shipment: shipment.clone(),
        read,
        head_seq,
    });
    Head::Shipment(head_seq)
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
    let status = ShipmentStatus::served(folded.status, slot.stored.life.operator_status());
    match &slot.stored.shipment {
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
    use crate::domain::ShipmentChange;

    fn delivery(event_id: &str, order_id: &str, change: Change) -> Delivery {
        Delivery::example(event_id, order_id, change)
    }

    fn created() -> Change {
        Change::Created(OrderState::example("C"))
    }

    fn versioned(event_id: &str, order_id: &str, version: i64, change: Change) -> Delivery {
        let mut delivery = delivery(event_id, order_id, change);
        if let Event::Order(event) = &mut delivery.event {
            event.version = Some(version);
        }
        delivery
    }

    /// What the next batch reads after `plan` committed, as its writer remembers it.
    fn stored_after(plan: Plan<'_>) -> Loaded {
        Loaded {
            known: HashMap::new(),
            orders: plan.orders.into_iter().collect(),
        }
    }

    fn head_rows<'a>(plan: &'a Plan<'a>) -> Vec<(&'a str, Option<i64>)> {
        plan.events
            .iter()
            .map(|row| (row.event_id, row.head_seq))
            .collect()
    }

    #[test]
    fn a_new_orders_first_event_is_its_head_and_its_shipment_heads_it_then() {
        let create = delivery("e1", "O1", created());
        let update = versioned("e2", "O1", 2, Change::Updated(OrderState::example("D")));
        let plan = plan(&[&create, &update], Loaded::default(), Utc::now());
        assert_eq!(head_rows(&plan), [("e1", Some(1)), ("e2", None)]);
        assert!(plan.heads.is_empty());
        assert_eq!(plan.shipments[0].read, None);
        assert_eq!(plan.shipments[0].head_seq, FIRST_HEAD_SEQ);
        assert_eq!(plan.guarded_rows(), 0, "nothing was read to guard");
        assert_eq!(plan.orders[0].1.head, Head::Shipment(FIRST_HEAD_SEQ));
    }

    #[test]
    fn a_parked_order_is_guarded_by_its_first_event_until_its_shipment_exists() {
        let cancel = || Change::Cancelled { reason: None };
        let early = versioned("u2", "O1", 2, cancel());
        let first = plan(&[&early], Loaded::default(), Utc::now());
        assert_eq!(first.answers[0].outcome, Outcome::Parked);
        assert_eq!(head_rows(&first), [("u2", Some(1))]);
        assert!(first.shipments.is_empty());

        let later = versioned("u3", "O1", 3, cancel());
        let second = plan(&[&later], stored_after(first), Utc::now());
        assert_eq!(second.answers[0].outcome, Outcome::Parked);
        assert_eq!(head_rows(&second), [("u3", None)]);
        let advanced = HeadWrite {
            order_id: "O1".into(),
            read_seq: 1,
        };
        assert_eq!(second.heads, [advanced]);
        assert_eq!(second.guarded_rows(), 1);

        let create = versioned("c1", "O1", 1, created());
        let third = plan(&[&create], stored_after(second), Utc::now());
        assert_eq!(third.answers[0].outcome, Outcome::Processed);
        let advanced = HeadWrite {
            order_id: "O1".into(),
            read_seq: 2,
        };
        assert_eq!(third.heads, [advanced], "the head a concurrent parker read");
        assert_eq!(third.shipments[0].read, None, "and the shipment inserted");
        assert_eq!(third.shipments[0].shipment.customer_id, "C");
        assert_eq!(third.orders[0].1.head, Head::Shipment(FIRST_HEAD_SEQ));
    }

    #[test]
    fn an_event_that_changes_nothing_still_advances_the_shipments_head() {
        let create = versioned("c1", "O1", 1, created());
        let update = versioned("u3", "O1", 3, Change::Updated(OrderState::example("C")));
        let first = plan(&[&create, &update], Loaded::default(), Utc::now());
        let revision = first.shipments[0].shipment.revision;

        let old = versioned("u2", "O1", 2, Change::Updated(OrderState::example("B")));
        let stale = plan(&[&old], stored_after(first), Utc::now());
        assert_eq!(stale.answers[0].outcome, Outcome::Stale);
        assert!(stale.outbox.is_empty(), "nothing to announce");
        let write = &stale.shipments[0];
        assert_eq!(write.read, Some((revision, FIRST_HEAD_SEQ)));
        assert_eq!(write.head_seq, FIRST_HEAD_SEQ + 1);
        assert_eq!(
            write.shipment.revision, revision,
            "the shipment itself unchanged"
        );
        assert_eq!(stale.guarded_rows(), 1);
    }

    #[test]
    fn an_event_outside_the_history_writes_its_record_only() {
        let create = versioned("c1", "O1", 1, created());
        let first = plan(&[&create], Loaded::default(), Utc::now());
        let mut loaded = stored_after(first);
        let order = loaded.orders.get_mut("O1").unwrap();
        order.life = OrderLife::new(Vec::new(), None, true);

        let late = versioned("u2", "O1", 2, Change::Updated(OrderState::example("B")));
        let plan = plan(&[&late], loaded, Utc::now());
        assert_eq!(plan.answers[0].outcome, Outcome::TooLate);
        assert_eq!(head_rows(&plan), [("u2", None)]);
        assert!(plan.shipments.is_empty() && plan.heads.is_empty());
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
        assert_eq!(plan.shipments[0].read, None, "a new shipment");
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
