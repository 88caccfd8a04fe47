//! The dispatcher: delivers the outbox to the subscriptions, inside `serve`, on every
//! instance unless `DISPATCH=off`. It fans new outbound events out into deliveries, claims due
//! ones under a lease (so a killed instance's work is taken over when the lease ends), POSTs
//! each signed both ways, and settles what each attempt decided with the same retry policy as
//! `send`. Woken by every commit that wrote outbound events; a slow poll catches what another
//! instance wrote. Bounded: at most [`CLAIMED`] deliveries held at once per instance, and
//! `DELIVERY_CONCURRENCY_PER_SUBSCRIPTION` attempts in flight per subscription; only to
//! addresses `egress` allows.

mod attempt;
pub mod egress;
mod pauses;
mod slots;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::DeliveryConfig;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::store::{Claim, Settlement, Store, StoreError};
use egress::Egress;
use pauses::Pauses;
use slots::Slots;

pub use attempt::signed_request;

/// Deliveries one instance holds at once: in flight, or claimed and waiting for a slot of
/// their subscription.
const CLAIMED: usize = 1024;
/// Deliveries one subscription may hold, in shares: one in flight and the rest ready to start
/// as its slots free, so that claims come in rounds. 64 shares of the default 8 are 512 a
/// round, which at a round every [`ROUND_EVERY`] is ~10,000 deliveries a second for one
/// subscription: more than one instance takes in.
const HELD_SHARES: u32 = 64;
/// How long a claimed delivery is this instance's beyond the time it may wait for a slot (one
/// attempt's time limit; later it is left for the next claim) and its own attempt's; past it,
/// another instance may take it over.
const LEASE_MARGIN: Duration = Duration::from_secs(20);
/// How often to look for work nobody woke us for (another instance's writes, retries due) and
/// for subscriptions another instance deleted or deactivated.
const POLL: Duration = Duration::from_millis(500);
/// Rounds (fan-out and claim) start at most this often: the commits that woke the
/// dispatcher meanwhile are fanned out together, in one transaction instead of one each. A
/// round and a settlement each cost a few statements and a commit whatever they carry: at
/// 50 ms, intake beside a subscriber that answers at once keeps 2-14 % more than at 20 ms
/// (bench/README.md), for ~25 ms more from a change to its arrival, far inside the 2 s
/// deliveries may trail.
const ROUND_EVERY: Duration = Duration::from_millis(50);
/// How long to wait for more attempts to finish before claiming for the slots they free.
const GATHER: Duration = Duration::from_millis(1);
/// How often attempts' results are written back at most (see [`ROUND_EVERY`]).
const SETTLE_EVERY: Duration = Duration::from_millis(50);
/// Pause after the database failed, before trying again.
const BACKOFF: Duration = Duration::from_secs(1);

pub struct Dispatcher {
    store: Store,
    client: reqwest::Client,
    egress: Egress,
    /// Longer than a delivery waits for its slot and its attempt can take.
    lease: Duration,
    /// How long a claimed delivery may wait for a slot.
    timeout: Duration,
    /// Attempts in flight for one subscription at most.
    share: u32,
    /// How long a subscription may fail with nothing delivered.
    disable_after: chrono::Duration,
    policy: RetryPolicy,
    metrics: Metrics,
}

impl Dispatcher {
    pub fn new(store: Store, config: &DeliveryConfig, metrics: Metrics) -> Dispatcher {
        let egress = Egress::new(config.allow_nets.clone());
        // Every name is resolved by the egress check, no proxy from the environment stands
        // between the service and where the subscription said, and a redirect is an answer
        // (a failed attempt), never followed.
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(egress.clone()))
            .build()
            .expect("a client with a timeout, a resolver and no redirects");
        Dispatcher {
            store,
            client,
            egress,
            lease: config.timeout * 2 + LEASE_MARGIN,
            timeout: config.timeout,
            share: config.concurrency_per_subscription,
            disable_after: chrono::Duration::from_std(config.disable_after)
                .unwrap_or(chrono::Duration::MAX),
            policy: RetryPolicy {
                max_retries: config.max_retries,
                ..RetryPolicy::default()
            },
            metrics,
        }
    }

    /// Runs until the task is dropped. Each round starts what may start (new events fanned
    /// out, due deliveries claimed for the subscriptions below their share) while the attempts
    /// already held go on; what finishes is written back by a task of its own, so new attempts
    /// run while a claim or a settlement commits.
    pub async fn run(self) {
        let wake = self.store.dispatch_wakeup().clone();
        let settler = self.spawn_settler();
        let mut slots = Slots::new(self.share, self.sender());
        let mut claim = None;
        // New outbound events may be waiting (another instance's, or from before a restart).
        let mut fan_out = true;
        let mut pauses = Pauses::default();
        // The subscriptions active at the last claim. While every one of them is paused, a
        // commit's wake-up cannot make anything claimable: the round waits for the first
        // pause to end, or for the next poll, which also finds new subscriptions.
        let mut active = HashSet::new();
        let mut polled = true;
        // Attempts finished since the last claim.
        let mut freed = u32::MAX;
        // When the database may be asked again after it failed.
        let mut retry_at = Instant::now();
        // Until when the deliveries of the claim in flight may start: their lease leaves
        // room for their attempts until then.
        let mut start_by = Instant::now();
        // When pending deliveries of inactive subscriptions were last looked for.
        let mut swept = Instant::now() - POLL;
        // When the next round may start.
        let mut next_round = Instant::now();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Claims come in rounds, not one per finished attempt: once half the instance's
            // room, or a subscription's share, is free; at once when woken.
            let worth_a_claim =
                fan_out || freed >= self.share || (freed > 0 && !slots.has_waiting());
            let wants_a_round = claim.is_none() && slots.held() <= CLAIMED / 2 && worth_a_claim;
            let mut round_at = retry_at.max(next_round);
            if !polled {
                if let Some(until) = pauses.all_paused_until(&active, Instant::now()) {
                    round_at = round_at.max(until);
                }
            }
            if wants_a_round && Instant::now() >= round_at {
                next_round = Instant::now() + ROUND_EVERY;
                polled = false;
                freed = 0;
                start_by = Instant::now() + self.timeout;
                let sweep = fan_out && swept.elapsed() >= POLL;
                if sweep {
                    swept = Instant::now();
                }
                claim = Some(Box::pin(self.refill(
                    CLAIMED - slots.held(),
                    pauses.hold_back(
                        slots.held_by_subscription(),
                        Instant::now(),
                        self.share * HELD_SHARES,
                        self.share,
                    ),
                    std::mem::take(&mut fan_out),
                    sweep,
                )));
            }
            tokio::select! {
                claimed = async { claim.as_mut().expect("a claim in flight").await }, if claim.is_some() => {
                    claim = None;
                    match claimed {
                        Ok(Claim { deliveries, active: now_active }) => {
                            // Another instance may have deleted or deactivated a subscription
                            // whose deliveries wait here.
                            slots.drop_waiting(|subscription| now_active.contains(subscription));
                            for delivery in deliveries {
                                slots.start_or_queue(delivery, start_by);
                            }
                            active = now_active;
                        }
                        Err(error) => {
                            tracing::warn!(error = crate::telemetry::error_chain(&error), "dispatch failed");
                            retry_at = Instant::now() + BACKOFF;
                            fan_out = true;
                        }
                    }
                }
                Some(first) = slots.next_finished() => {
                    let mut finished = vec![first];
                    // What finishes in the next moment goes with it: one claim for what they
                    // leave room for, one settlement.
                    let gather = Instant::now() + GATHER;
                    while let Ok(Some(done)) = tokio::time::timeout_at(gather, slots.next_finished()).await {
                        finished.push(done);
                    }
                    freed = freed.saturating_add(finished.len() as u32);
                    pauses.record(&finished, Instant::now());
                    let _ = settler.send(finished);
                }
                () = tokio::time::sleep_until(round_at), if wants_a_round && claim.is_none() => {}
                () = wake.notified() => {
                    let revoked = wake.take_revoked();
                    slots.drop_waiting(|subscription| !revoked.contains(subscription));
                    fan_out = true;
                }
                _ = poll.tick() => {
                    // What waits here for a subscription another instance deleted or
                    // deactivated never starts.
                    if slots.has_waiting() {
                        if let Ok(active) = self.store.active_subscriptions().await {
                            slots.drop_waiting(|subscription| active.contains(subscription));
                        }
                    }
                    fan_out = true;
                    polled = true;
                }
            }
        }
    }

    fn sender(&self) -> attempt::Sender {
        attempt::Sender {
            client: self.client.clone(),
            egress: self.egress.clone(),
            policy: self.policy.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// The task that writes attempts' results back, all that finished while the previous
    /// settlement committed in one transaction. It ends once the dispatcher is gone and what
    /// it sent is written. A failure leaves the leases to expire, and the deliveries are
    /// attempted again (at least once, never lost).
    fn spawn_settler(&self) -> mpsc::UnboundedSender<Vec<Settlement>> {
        let (settler, mut finished) = mpsc::unbounded_channel::<Vec<Settlement>>();
        let (store, metrics, disable_after) =
            (self.store.clone(), self.metrics.clone(), self.disable_after);
        let signals = self.store.dispatch_wakeup().clone();
        tokio::spawn(async move {
            let mut next = Instant::now();
            while let Some(mut settled) = finished.recv().await {
                // A settlement is a commit the disk must flush: at most one per moment, with
                // all that finished in it.
                tokio::time::sleep_until(next).await;
                next = Instant::now() + SETTLE_EVERY;
                while let Ok(more) = finished.try_recv() {
                    settled.extend(more);
                }
                let failing_before = chrono::Utc::now()
                    .checked_sub_signed(disable_after)
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
                match store.settle(&settled, failing_before).await {
                    Ok(written) => {
                        for settlement in &settled {
                            if !written.stale.contains(&settlement.id) {
                                metrics.delivery_outcome(settlement.status.as_str());
                            }
                        }
                        metrics.stale_results(written.stale.len());
                        for subscription in written.deactivated {
                            signals.revoke(subscription);
                        }
                    }
                    Err(error) => tracing::warn!(
                        error = crate::telemetry::error_chain(&error),
                        deliveries = settled.len(),
                        "could not record delivery attempts; they will be attempted again"
                    ),
                }
            }
        });
        settler
    }

    /// Fans out new events (when there may be some), fails what inactive subscriptions still
    /// have pending (when asked to `sweep`) and claims up to `room` due deliveries, each
    /// subscription up to [`HELD_SHARES`] times its share beside what is `held` for it.
    async fn refill(
        &self,
        room: usize,
        held: HashMap<Uuid, u32>,
        fan_out: bool,
        sweep: bool,
    ) -> Result<Claim, StoreError> {
        if fan_out {
            while self.store.fan_out().await? {}
        }
        if sweep {
            self.store.fail_waiting_of_inactive().await?;
        }
        self.store
            .claim_deliveries(room as u32, self.lease, self.share * HELD_SHARES, &held)
            .await
    }
}
