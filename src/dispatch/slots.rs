//! The attempts one instance has in flight, and the deliveries it has claimed that wait for a
//! slot: at most a share of attempts in flight per subscription, and the next one ready to
//! start the moment one of them finishes, without a round trip to the database.

use std::collections::{HashMap, VecDeque};

use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::attempt::Sender;
use crate::store::{Claimed, Settlement};

pub(super) struct Slots {
    share: u32,
    sender: Sender,
    in_flight: JoinSet<Settlement>,
    /// Each attempt's subscription, by task: its slot is freed however the task ends.
    attempts: HashMap<tokio::task::Id, Uuid>,
    running: HashMap<Uuid, u32>,
    /// Claimed deliveries waiting for a slot, each with when it must start by.
    waiting: HashMap<Uuid, VecDeque<(Claimed, Instant)>>,
}

impl Slots {
    pub fn new(share: u32, sender: Sender) -> Slots {
        Slots {
            share,
            sender,
            in_flight: JoinSet::new(),
            attempts: HashMap::new(),
            running: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    /// Deliveries held: in flight or waiting.
    pub fn held(&self) -> usize {
        self.in_flight.len() + self.waiting.values().map(VecDeque::len).sum::<usize>()
    }

    /// Whether a claimed delivery waits for a slot.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Deliveries held, by subscription.
    pub fn held_by_subscription(&self) -> HashMap<Uuid, u32> {
        let mut held = self.running.clone();
        for (subscription, waiting) in &self.waiting {
            *held.entry(*subscription).or_default() += waiting.len() as u32;
        }
        held
    }

    /// Forgets the claimed deliveries waiting for a slot of the subscriptions `keep` refuses
    /// (deleted or inactive): they never start here, and their leases run out.
    pub fn drop_waiting(&mut self, keep: impl Fn(&Uuid) -> bool) {
        self.waiting.retain(|subscription, _| keep(subscription));
    }

    /// Starts the attempt if its subscription has a free slot, else keeps it for the next
    /// that frees before `start_by`.
    pub fn start_or_queue(&mut self, delivery: Claimed, start_by: Instant) {
        let subscription = delivery.subscription_id;
        if self.running.get(&subscription).copied().unwrap_or_default() < self.share {
            self.start(delivery);
        } else {
            self.waiting
                .entry(subscription)
                .or_default()
                .push_back((delivery, start_by));
        }
    }

    /// The next attempt to finish (`None` with none in flight); its slot goes to the next
    /// delivery waiting for one of its subscription.
    pub async fn next_finished(&mut self) -> Option<Settlement> {
        loop {
            let (id, finished) = match self.in_flight.join_next_with_id().await? {
                Ok((id, settlement)) => (id, Some(settlement)),
                // An attempt that panicked leaves its lease to expire: attempted again later.
                Err(error) => (error.id(), None),
            };
            if let Some(subscription) = self.attempts.remove(&id) {
                if let Some(count) = self.running.get_mut(&subscription) {
                    *count = count.saturating_sub(1);
                }
                // One that waited too long is left to its lease's end: started now, its
                // attempt could outlast the lease, and another instance could send it too.
                let now = Instant::now();
                let waiting = self.waiting.get_mut(&subscription);
                let next = waiting.and_then(|waiting| {
                    std::iter::from_fn(|| waiting.pop_front()).find(|(_, by)| *by > now)
                });
                if let Some((next, _)) = next {
                    self.start(next);
                }
                self.waiting.retain(|_, waiting| !waiting.is_empty());
            }
            if finished.is_some() {
                return finished;
            }
        }
    }

    fn start(&mut self, delivery: Claimed) {
        *self.running.entry(delivery.subscription_id).or_default() += 1;
        let subscription = delivery.subscription_id;
        let sender = self.sender.clone();
        let task = self
            .in_flight
            .spawn(async move { sender.attempt(delivery).await });
        self.attempts.insert(task.id(), subscription);
    }
}
