//! The rules of an order's life (contract section 3a), written once, as pure functions: the
//! shipment is the fold of the order's recorded events, so it ends the same whatever order the
//! events arrived in. The stores only load an order's history, hand it to [`OrderLife`] and save
//! what it decided; both backends share these rules, and they are tested without a database.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::order_event::{Change, OrderEvent};
use super::{OrderState, ShipmentStatus};

/// What a delivery did, decided inside the transaction that records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The event made the shipment exist.
    Processed,
    /// The event changed the shipment.
    Updated,
    /// Recorded; newer events of the order already decide the shipment.
    Stale,
    /// Recorded; an operator has shipped, delivered or cancelled the shipment.
    TooLate,
    /// Recorded; the order has no state yet (a cancellation came first).
    Parked,
    /// The event id, or the order's `order.created`, was already recorded.
    Duplicate,
    /// An event type this service does not handle, recorded so redeliveries are recognised.
    Ignored,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Processed,
        Outcome::Updated,
        Outcome::Stale,
        Outcome::TooLate,
        Outcome::Parked,
        Outcome::Duplicate,
        Outcome::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Processed => "processed",
            Outcome::Updated => "updated",
            Outcome::Stale => "stale",
            Outcome::TooLate => "too_late",
            Outcome::Parked => "parked",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }

    /// Whether an event with this outcome is part of its order's history. Duplicates and
    /// events that came too late were recorded only to be recognised when redelivered.
    pub fn joins_history(self) -> bool {
        matches!(
            self,
            Outcome::Processed | Outcome::Updated | Outcome::Stale | Outcome::Parked
        )
    }

    /// Whether the shipment was written: created or changed.
    pub fn changes_shipment(self) -> bool {
        matches!(self, Outcome::Processed | Outcome::Updated)
    }

    /// The answer to a redelivery of an event recorded with this outcome.
    pub fn redelivered(self) -> Outcome {
        match self {
            Outcome::Ignored => Outcome::Ignored,
            _ => Outcome::Duplicate,
        }
    }
}

/// One recorded event of an order, as the fold needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub event_id: String,
    pub version: i64,
    pub occurred_at: Option<DateTime<Utc>>,
    pub change: Change,
}

impl Fact {
    /// Created, then updated, then cancelled, for events of the same version.
    fn rank(&self) -> u8 {
        match self.change {
            Change::Created(_) => 0,
            Change::Updated(_) => 1,
            Change::Cancelled { .. } => 2,
        }
    }

    fn state(&self) -> Option<&OrderState> {
        match &self.change {
            Change::Created(state) | Change::Updated(state) => Some(state),
            Change::Cancelled { .. } => None,
        }
    }
}

/// The shipment an order's events describe; `None` from [`fold`] while no event carries state.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    pub state: OrderState,
    /// `Pending` or `Cancelled`: the other statuses are an operator's.
    pub status: ShipmentStatus,
    pub cancel_reason: Option<String>,
    pub version: i64,
    /// When the order was placed: its `order.created`, else its first state-carrying event.
    pub ordered_at: DateTime<Utc>,
}

/// The shipment as a pure function of the order's recorded events, in any order.
pub fn fold(facts: &[Fact]) -> Option<Folded> {
    let mut sorted: Vec<&Fact> = facts.iter().collect();
    sorted.sort_by(|a, b| {
        (a.version, a.rank(), &a.event_id).cmp(&(b.version, b.rank(), &b.event_id))
    });
    let first_placed = sorted
        .iter()
        .find(|fact| matches!(fact.change, Change::Created(_)))
        .or_else(|| sorted.iter().find(|fact| fact.state().is_some()))?;
    let ordered_at = first_placed.occurred_at.unwrap_or(DateTime::UNIX_EPOCH);
    let cancellation = sorted
        .iter()
        .position(|fact| matches!(fact.change, Change::Cancelled { .. }));
    let Some(at) = cancellation else {
        let last = sorted
            .iter()
            .rev()
            .find_map(|fact| Some((fact, fact.state()?)))?;
        return Some(Folded {
            state: last.1.clone(),
            status: ShipmentStatus::Pending,
            cancel_reason: None,
            version: last.0.version,
            ordered_at,
        });
    };
    let cancel = sorted[at];
    let state = sorted[..at]
        .iter()
        .rev()
        .find_map(|fact| fact.state())
        .or_else(|| sorted[at + 1..].iter().find_map(|fact| fact.state()))?;
    let Change::Cancelled { reason } = &cancel.change else {
        unreachable!("found as a cancellation")
    };
    Some(Folded {
        state: state.clone(),
        status: ShipmentStatus::Cancelled,
        cancel_reason: reason.clone(),
        version: cancel.version,
        ordered_at,
    })
}

/// One order's recorded history and what an operator did to its shipment: everything needed to
/// decide what a new event of the order does.
#[derive(Debug, Clone, Default)]
pub struct OrderLife {
    facts: Vec<Fact>,
    operator_status: Option<ShipmentStatus>,
    /// The order closed long ago and its history is gone (retention): nothing applies to it.
    history_removed: bool,
    /// `fold(&facts)`, kept so that each new event folds the history once.
    current: Option<Folded>,
}

/// The decision for one new event of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The version the event is recorded with: the sender's, or the one it is placed at.
    pub version: i64,
    /// The shipment after the event, when the event created or changed it.
    pub shipment: Option<Folded>,
}

impl OrderLife {
    /// `recorded` are the order's stored events with their outcomes, in any order;
    /// `history_removed` says the order's history was let go once it closed.
    pub fn new(
        recorded: impl IntoIterator<Item = (Outcome, Fact)>,
        operator_status: Option<ShipmentStatus>,
        history_removed: bool,
    ) -> OrderLife {
        let facts: Vec<Fact> = recorded
            .into_iter()
            .filter(|(outcome, _)| outcome.joins_history())
            .map(|(_, fact)| fact)
            .collect();
        OrderLife {
            current: fold(&facts),
            facts,
            operator_status,
            history_removed,
        }
    }

    pub fn shipment(&self) -> Option<Folded> {
        self.current.clone()
    }

    pub fn operator_status(&self) -> Option<ShipmentStatus> {
        self.operator_status
    }

    /// Whether an event of the order's history has this id.
    pub fn records(&self, event_id: &str) -> bool {
        self.facts.iter().any(|fact| fact.event_id == event_id)
    }

    /// Decides what `event`, new under `event_id`, does to the order, and records it.
    pub fn apply(&mut self, event_id: &str, event: &OrderEvent) -> Decision {
        let version = event.version.unwrap_or_else(|| match event.change {
            Change::Created(_) => 1,
            _ => {
                self.facts
                    .iter()
                    .map(|fact| fact.version)
                    .max()
                    .unwrap_or(0)
                    + 1
            }
        });
        let is_created = |change: &Change| matches!(change, Change::Created(_));
        let decision = |outcome| Decision {
            outcome,
            version,
            shipment: None,
        };
        // A closed order whose history is gone can tell a redelivery from a new event no
        // more; either way it comes too late to change anything.
        if self.history_removed {
            return decision(Outcome::TooLate);
        }
        if is_created(&event.change) && self.facts.iter().any(|fact| is_created(&fact.change)) {
            return decision(Outcome::Duplicate);
        }
        if ShipmentStatus::is_final_by_operator(self.operator_status) {
            return decision(Outcome::TooLate);
        }
        self.facts.push(Fact {
            event_id: event_id.to_owned(),
            version,
            occurred_at: event.occurred_at,
            change: event.change.clone(),
        });
        let after = fold(&self.facts);
        let before = std::mem::replace(&mut self.current, after.clone());
        let outcome = match (before, &after) {
            (_, None) => Outcome::Parked,
            (None, Some(_)) => Outcome::Processed,
            (Some(before), Some(after)) if before != *after => Outcome::Updated,
            (Some(_), Some(_)) => Outcome::Stale,
        };
        Decision {
            shipment: after.filter(|_| outcome.changes_shipment()),
            ..decision(outcome)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(customer: &str) -> OrderState {
        OrderState::example(customer)
    }

    fn event(version: Option<i64>, change: Change) -> OrderEvent {
        OrderEvent {
            order_id: "ORD".into(),
            version,
            occurred_at: Some(DateTime::UNIX_EPOCH),
            change,
        }
    }

    fn created(customer: &str) -> Change {
        Change::Created(state(customer))
    }

    fn updated(customer: &str) -> Change {
        Change::Updated(state(customer))
    }

    fn cancelled(reason: &str) -> Change {
        Change::Cancelled {
            reason: Some(reason.into()),
        }
    }

    fn outcomes(life: &mut OrderLife, events: &[(&str, OrderEvent)]) -> Vec<Outcome> {
        events
            .iter()
            .map(|(id, event)| life.apply(id, event).outcome)
            .collect()
    }

    #[test]
    fn created_then_updated_then_an_old_update() {
        let mut life = OrderLife::default();
        let answers = outcomes(
            &mut life,
            &[
                ("c", event(None, created("A"))),
                ("u3", event(Some(3), updated("C"))),
                ("u2", event(Some(2), updated("B"))),
            ],
        );
        assert_eq!(
            answers,
            [Outcome::Processed, Outcome::Updated, Outcome::Stale]
        );
        let shipment = life.shipment().unwrap();
        assert_eq!(shipment.state.customer_id, "C");
        assert_eq!(shipment.version, 3);
    }

    #[test]
    fn a_cancellation_first_parks_then_the_shipment_appears_cancelled() {
        let mut life = OrderLife::default();
        let answers = outcomes(
            &mut life,
            &[
                ("x", event(Some(2), cancelled("fraud"))),
                ("c", event(Some(1), created("A"))),
            ],
        );
        assert_eq!(answers, [Outcome::Parked, Outcome::Processed]);
        let shipment = life.shipment().unwrap();
        assert_eq!(shipment.status, ShipmentStatus::Cancelled);
        assert_eq!(shipment.cancel_reason.as_deref(), Some("fraud"));
        assert_eq!(shipment.version, 2);
        assert_eq!(shipment.state.customer_id, "A");
    }

    #[test]
    fn the_first_cancellation_decides_and_keeps_the_state_before_it() {
        let mut life = OrderLife::default();
        let answers = outcomes(
            &mut life,
            &[
                ("c", event(Some(1), created("A"))),
                ("u4", event(Some(4), updated("D"))),
                ("x3", event(Some(3), cancelled("late"))),
                ("x5", event(Some(5), cancelled("again"))),
                ("u2", event(Some(2), updated("B"))),
            ],
        );
        assert_eq!(
            answers,
            [
                Outcome::Processed,
                Outcome::Updated,
                Outcome::Updated,
                Outcome::Stale,
                Outcome::Updated
            ]
        );
        let shipment = life.shipment().unwrap();
        assert_eq!(shipment.cancel_reason.as_deref(), Some("late"));
        assert_eq!(shipment.state.customer_id, "B");
        assert_eq!(shipment.version, 3);
    }

    #[test]
    fn an_update_without_a_version_comes_after_everything_recorded() {
        let mut life = OrderLife::default();
        life.apply("c", &event(Some(4), created("A")));
        let decision = life.apply("u", &event(None, updated("B")));
        assert_eq!(decision.version, 5);
        assert_eq!(decision.outcome, Outcome::Updated);
    }

    #[test]
    fn a_second_order_created_is_a_duplicate_and_does_not_count() {
        let mut life = OrderLife::default();
        life.apply("c1", &event(None, created("A")));
        let decision = life.apply("c2", &event(None, created("B")));
        assert_eq!(decision.outcome, Outcome::Duplicate);
        assert_eq!(life.shipment().unwrap().state.customer_id, "A");
    }

    #[test]
    fn after_the_operator_ships_order_events_are_too_late_but_packed_still_folds() {
        let recorded = [(
            Outcome::Processed,
            Fact {
                event_id: "c".into(),
                version: 1,
                occurred_at: None,
                change: created("A"),
            },
        )];
        let mut packed = OrderLife::new(recorded.clone(), Some(ShipmentStatus::Packed), false);
        let mut shipped = OrderLife::new(recorded, Some(ShipmentStatus::Shipped), false);
        let cancel = event(None, cancelled("changed my mind"));
        assert_eq!(packed.apply("x", &cancel).outcome, Outcome::Updated);
        assert_eq!(shipped.apply("x", &cancel).outcome, Outcome::TooLate);
        assert_eq!(shipped.shipment().unwrap().status, ShipmentStatus::Pending);
    }

    #[test]
    fn once_a_closed_orders_history_is_gone_every_event_is_too_late() {
        let mut removed = OrderLife::new([], None, true);
        for (id, change) in [
            ("c", created("A")),
            ("u", updated("B")),
            ("x", cancelled("late")),
        ] {
            let decision = removed.apply(id, &event(None, change));
            assert_eq!(decision.outcome, Outcome::TooLate, "{id}");
            assert_eq!(decision.shipment, None);
        }
    }

    /// One order's history as a sender would emit it: its creation, updates, and perhaps one
    /// cancellation somewhere in between, each with a distinct id.
    #[derive(Debug, Clone)]
    struct History {
        events: Vec<(String, OrderEvent)>,
    }

    fn history(versioned: bool) -> impl Strategy<Value = History> {
        (0usize..5, proptest::option::of(1usize..6), any::<bool>()).prop_map(
            move |(updates, cancel_at, reason)| {
                let mut events =
                    vec![("c".to_owned(), event(versioned.then_some(1), created("v1")))];
                for n in 0..updates {
                    let version = n as i64 + 2;
                    if cancel_at == Some(n + 1) {
                        let change = Change::Cancelled {
                            reason: reason.then(|| format!("r{version}")),
                        };
                        events.push((
                            format!("x{version}"),
                            event(versioned.then_some(version), change),
                        ));
                    } else {
                        let change = updated(&format!("v{version}"));
                        events.push((
                            format!("u{version}"),
                            event(versioned.then_some(version), change),
                        ));
                    }
                }
                History { events }
            },
        )
    }

    /// The contract's rule read directly off a history given in the sender's order.
    fn model(history: &History) -> Folded {
        let events = &history.events;
        let cancel = events
            .iter()
            .position(|(_, e)| matches!(e.change, Change::Cancelled { .. }));
        let state_of = |e: &OrderEvent| match &e.change {
            Change::Created(s) | Change::Updated(s) => Some(s.clone()),
            Change::Cancelled { .. } => None,
        };
        let (state, status, reason, version) = match cancel {
            None => {
                let last = events.last().unwrap();
                (
                    state_of(&last.1).unwrap(),
                    ShipmentStatus::Pending,
                    None,
                    events.len() as i64,
                )
            }
            Some(at) => {
                let Change::Cancelled { reason } = &events[at].1.change else {
                    unreachable!()
                };
                let state = events[..at]
                    .iter()
                    .rev()
                    .find_map(|(_, e)| state_of(e))
                    .unwrap();
                (
                    state,
                    ShipmentStatus::Cancelled,
                    reason.clone(),
                    at as i64 + 1,
                )
            }
        };
        Folded {
            state,
            status,
            cancel_reason: reason,
            version,
            ordered_at: DateTime::UNIX_EPOCH,
        }
    }

    /// Delivers `order` (indexes into the history, repeats allowed), with a twin of the
    /// creation under another id; returns the shipment and the outcomes.
    fn deliver(history: &History, order: &[usize]) -> (Option<Folded>, Vec<Outcome>) {
        let mut life = OrderLife::default();
        let mut seen = std::collections::HashSet::new();
        let mut answers = Vec::new();
        for &index in order {
            let (id, event) = &history.events[index];
            // A redelivered id is answered from the record, as the store does.
            if !seen.insert(id.clone()) {
                answers.push(Outcome::Duplicate);
                continue;
            }
            answers.push(life.apply(id, event).outcome);
            if index == 0 {
                answers.push(life.apply("c-twin", event).outcome);
            }
        }
        (life.shipment(), answers)
    }

    proptest! {
        #[test]
        fn versioned_events_end_the_same_in_any_arrival_order(
            (history, order) in history(true).prop_flat_map(|h| {
                let n = h.events.len();
                let order = proptest::collection::vec(0..n, 0..3 * n)
                    .prop_flat_map(move |extra| {
                        let mut all: Vec<usize> = (0..n).chain(extra).collect();
                        all.sort();
                        Just(all).prop_shuffle()
                    });
                (Just(h), order)
            })
        ) {
            let (shipment, answers) = deliver(&history, &order);
            prop_assert_eq!(shipment, Some(model(&history)));
            prop_assert_eq!(answers.iter().filter(|o| **o == Outcome::Processed).count(), 1);
        }

        #[test]
        fn unversioned_events_in_the_senders_order_with_redeliveries_end_as_the_model(
            (history, repeats) in history(false).prop_flat_map(|h| {
                let n = h.events.len();
                (Just(h), proptest::collection::vec(0..3usize, n))
            })
        ) {
            let order: Vec<usize> = repeats
                .iter()
                .enumerate()
                .flat_map(|(index, times)| std::iter::repeat_n(index, times + 1))
                .collect();
            let (shipment, answers) = deliver(&history, &order);
            prop_assert_eq!(shipment, Some(model(&history)));
            prop_assert_eq!(answers.iter().filter(|o| **o == Outcome::Processed).count(), 1);
        }
    }
}
