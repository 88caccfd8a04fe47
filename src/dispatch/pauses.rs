//! Subscriptions that only fail are left alone for a while: one refused connection need not
//! mean a hundred more this second, each settled through the database the webhooks need. A
//! round of results in which nothing reached a subscription pauses its new attempts, twice
//! as long each time up to [`LONGEST`]; between pauses it is tried with one share of its
//! deliveries, not a whole claim's; one delivery ends it all. Per instance, in memory: a
//! restart or another instance tries again at once, which costs one round.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::DeliveryStatus;
use crate::store::Settlement;

/// The first pause of a subscription that failed a round.
const FIRST: Duration = Duration::from_millis(250);
/// The longest pause: how soon a subscriber that comes back is tried again, at most.
const LONGEST: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Pauses {
    /// Until when, and how long the pause was.
    paused: HashMap<Uuid, (Instant, Duration)>,
}

impl Pauses {
    /// Takes a round of results in: a subscription none of whose attempts delivered is
    /// paused (longer than last time), one that got a delivery is not.
    pub fn record(&mut self, finished: &[Settlement], now: Instant) {
        let mut delivered: HashMap<Uuid, bool> = HashMap::new();
        for settled in finished {
            *delivered.entry(settled.subscription_id).or_default() |=
                settled.status == DeliveryStatus::Delivered;
        }
        for (subscription, delivered) in delivered {
            if delivered {
                self.paused.remove(&subscription);
                continue;
            }
            let last = self
                .paused
                .get(&subscription)
                .map_or(Duration::ZERO, |(_, last)| *last);
            let pause = (last * 2).clamp(FIRST, LONGEST);
            self.paused.insert(subscription, (now + pause, pause));
        }
    }

    /// Whether new attempts of `subscription` wait.
    pub fn is_paused(&self, subscription: &Uuid, now: Instant) -> bool {
        self.paused
            .get(subscription)
            .is_some_and(|(until, _)| *until > now)
    }

    /// Until when a claim could take nothing, when every one of the `active` subscriptions is
    /// paused: the end of the first pause. `None` when one of them may be claimed for (or
    /// none is known).
    pub fn all_paused_until(&self, active: &HashSet<Uuid>, now: Instant) -> Option<Instant> {
        let mut first: Option<Instant> = None;
        for subscription in active {
            match self.paused.get(subscription) {
                Some((until, _)) if *until > now => {
                    first = Some(first.map_or(*until, |first| first.min(*until)));
                }
                _ => return None,
            }
        }
        first
    }

    /// `held` with every paused subscription full, so that a claim takes none of its
    /// deliveries, and every other one that has failed since its last delivery holding at
    /// least `cap` less `probe`, so that a claim takes at most `probe` of them.
    pub fn hold_back(
        &self,
        mut held: HashMap<Uuid, u32>,
        now: Instant,
        cap: u32,
        probe: u32,
    ) -> HashMap<Uuid, u32> {
        for subscription in self.paused.keys() {
            let floor = if self.is_paused(subscription, now) {
                u32::MAX
            } else {
                cap.saturating_sub(probe)
            };
            let entry = held.entry(*subscription).or_default();
            *entry = (*entry).max(floor);
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(subscription: Uuid, status: DeliveryStatus) -> Settlement {
        let now = chrono::Utc::now();
        Settlement {
            id: Uuid::now_v7(),
            subscription_id: subscription,
            claim: Uuid::now_v7(),
            status,
            attempts: 1,
            next_attempt_at: now,
            attempted_at: now,
            status_code: None,
            error: None,
            duration: Duration::ZERO,
            gone: false,
        }
    }

    #[test]
    fn a_subscription_that_only_fails_waits_longer_each_round_and_gets_one_share_until_one_delivery(
    ) {
        let (down, up) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let now = Instant::now();
        let mut pauses = Pauses::default();

        pauses.record(
            &[
                result(down, DeliveryStatus::Pending),
                result(up, DeliveryStatus::Failed),
                result(up, DeliveryStatus::Delivered),
            ],
            now,
        );
        assert!(pauses.is_paused(&down, now + FIRST - Duration::from_millis(1)));
        assert!(!pauses.is_paused(&down, now + FIRST));
        assert!(!pauses.is_paused(&up, now));

        for _ in 0..10 {
            pauses.record(&[result(down, DeliveryStatus::Failed)], now);
        }
        assert!(pauses.is_paused(&down, now + LONGEST - Duration::from_millis(1)));
        assert!(!pauses.is_paused(&down, now + LONGEST));
        let held = pauses.hold_back(HashMap::from([(up, 3)]), now, 256, 8);
        assert_eq!(held, HashMap::from([(up, 3), (down, u32::MAX)]));
        // Between pauses, one share.
        let held = pauses.hold_back(HashMap::from([(down, 2)]), now + LONGEST, 256, 8);
        assert_eq!(held, HashMap::from([(down, 248)]));
        let held = pauses.hold_back(HashMap::from([(down, 250)]), now + LONGEST, 256, 8);
        assert_eq!(held, HashMap::from([(down, 250)]));

        pauses.record(&[result(down, DeliveryStatus::Delivered)], now);
        assert!(!pauses.is_paused(&down, now));
    }

    #[test]
    fn nothing_is_claimable_only_while_every_active_subscription_is_paused() {
        let (down, late, up) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let now = Instant::now();
        let mut pauses = Pauses::default();
        pauses.record(&[result(down, DeliveryStatus::Failed)], now);
        pauses.record(&[result(late, DeliveryStatus::Failed)], now);
        pauses.record(&[result(late, DeliveryStatus::Failed)], now);

        let both = HashSet::from([down, late]);
        assert_eq!(pauses.all_paused_until(&both, now), Some(now + FIRST));
        // Once the first pause ends, its subscription may be tried.
        assert_eq!(pauses.all_paused_until(&both, now + FIRST), None);
        assert_eq!(
            pauses.all_paused_until(&HashSet::from([late]), now + FIRST),
            Some(now + FIRST * 2)
        );
        // One subscription that is not paused, or none known, holds nothing back.
        assert_eq!(
            pauses.all_paused_until(&HashSet::from([down, up]), now),
            None
        );
        assert_eq!(pauses.all_paused_until(&HashSet::new(), now), None);
    }
}
