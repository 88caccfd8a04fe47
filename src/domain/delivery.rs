//! The life of one outbound delivery (contract sections 8 and 10): pending until an attempt
//! delivers it or it fails for good; a failed one may be queued again by an operator. And the
//! rules over a subscription's deliveries: a fair share of attempts in flight, and when a
//! subscription that only fails is deactivated.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ];

    /// The only status an operator may queue a delivery again from: a pending one is still
    /// being tried, and a delivered one has arrived.
    pub const REQUEUEABLE: DeliveryStatus = DeliveryStatus::Failed;

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Whether no more attempts will be made on their own.
    pub fn is_settled(self) -> bool {
        self != DeliveryStatus::Pending
    }
}

/// How many attempts each subscription may start now: its share (`cap`) less what it has in
/// flight, for those with work due, the longest waiting first, at most `most` of them. One
/// slow subscriber cannot take every attempt from the others. `subscriptions` are `(id,
/// attempts in flight, when its oldest pending delivery is due)`.
pub fn shares(
    subscriptions: impl IntoIterator<Item = (Uuid, u32, Option<DateTime<Utc>>)>,
    cap: u32,
    now: DateTime<Utc>,
    most: usize,
) -> Vec<(Uuid, u32)> {
    let mut waiting: Vec<(DateTime<Utc>, Uuid, u32)> = subscriptions
        .into_iter()
        .filter_map(|(id, in_flight, due)| {
            let room = cap.saturating_sub(in_flight);
            let due = due.filter(|due| *due <= now)?;
            (room > 0).then_some((due, id, room))
        })
        .collect();
    waiting.sort();
    waiting
        .into_iter()
        .take(most)
        .map(|(_, id, room)| (id, room))
        .collect()
}

/// How a subscription fared in a round of settled attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Something reached it: whatever failed before, it is not failing.
    Delivering,
    /// Nothing reached it; its earliest failed attempt of the round. A subscription failing
    /// since longer than `DELIVERY_DISABLE_AFTER`, with nothing delivered meanwhile, is
    /// deactivated.
    FailingSince(DateTime<Utc>),
}

/// The health of each subscription from its settled attempts: `(subscription, delivered,
/// attempted at)`.
pub fn health(
    attempts: impl IntoIterator<Item = (Uuid, bool, DateTime<Utc>)>,
) -> HashMap<Uuid, Health> {
    let mut health = HashMap::new();
    for (subscription, delivered, at) in attempts {
        let entry = health
            .entry(subscription)
            .or_insert(Health::FailingSince(at));
        *entry = match (*entry, delivered) {
            (_, true) | (Health::Delivering, _) => Health::Delivering,
            (Health::FailingSince(since), false) => Health::FailingSince(since.min(at)),
        };
    }
    health
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subscription_gets_its_share_less_what_it_has_in_flight_oldest_first() {
        let at = |seconds| DateTime::from_timestamp(seconds, 0).unwrap();
        let [slow, fast, idle, later, new] = [1, 2, 3, 4, 5].map(Uuid::from_u128);
        let shares = shares(
            vec![
                (slow, 8, Some(at(1))),
                (fast, 3, Some(at(5))),
                (idle, 0, None),
                (later, 0, Some(at(99))),
                (new, 0, Some(at(2))),
            ],
            8,
            at(10),
            10,
        );
        assert_eq!(shares, [(new, 8), (fast, 5)]);
    }

    #[test]
    fn one_delivery_makes_a_subscription_healthy_and_failures_date_from_the_first() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let at = |seconds| DateTime::from_timestamp(seconds, 0).unwrap();
        let health = health([
            (a, false, at(30)),
            (a, true, at(20)),
            (b, false, at(40)),
            (b, false, at(10)),
        ]);
        assert_eq!(health[&a], Health::Delivering);
        assert_eq!(health[&b], Health::FailingSince(at(10)));
    }

    #[test]
    fn every_status_reads_back_from_its_name_and_only_failed_is_requeued() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("lost"), None);
        assert_eq!(DeliveryStatus::REQUEUEABLE, DeliveryStatus::Failed);
        assert!(!DeliveryStatus::Pending.is_settled());
    }
}
