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
mod slots;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::DeliveryConfig;
use crate::domain::DeliveryStatus;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::store::{Settlement, Store};
use egress::Egress;
use slots::Slots;

pub use attempt::signed_request;

/// Deliveries one instance holds at once: in flight, or claimed and waiting for a slot of
/// their subscription.
const CLAIMED: usize = 64;
/// Deliveries one subscription may hold, in shares: one in flight and the rest ready to start
/// as its slots free, so that claims come in rounds.
const HELD_SHARES: u32 = 4;
/// How long a claimed delivery is this instance's beyond the time limits of the attempts it
/// may wait behind and its own; past it, another instance may take it over.
const LEASE_MARGIN: Duration = Duration::from_secs(20);
/// How often to look for work nobody woke us for: another instance's writes, retries due.
const POLL: Duration = Duration::from_millis(500);
/// How long to wait for more attempts to finish before claiming for the slots they free.
const GATHER: Duration = Duration::from_millis(1);
/// The first pause between rounds in which no attempt succeeded.
const FAILING_PAUSE: Duration = Duration::from_millis(50);
/// Pause after the database failed, before trying again.
const BACKOFF: Duration = Duration::from_secs(1);

pub struct Dispatcher {
    store: Store,
    client: reqwest::Client,
    egress: Egress,
    /// Longer than an attempt can take.
    lease: Duration,
    /// Attempts in flight for one subscription at most.
    share: u32,
    /// How long a subscription may fail with nothing delivered.
    disable_after: chrono::Duration,
    policy: RetryPolicy,
    metrics: Metrics,
}

impl Dispatcher {
    pub fn new(store: Store, config: &DeliveryConfig, metrics: Metrics) -> Dispatcher {
        // Every name is resolved by the egress check, no proxy from the environment stands
        // between the service and where the subscription said, and a redirect is an answer
        // (a failed attempt), never followed.
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(config.egress.clone()))
            .build()
            .expect("a client with a timeout, a resolver and no redirects");
        Dispatcher {
            store,
            client,
            egress: config.egress.clone(),
            lease: config.timeout * HELD_SHARES + LEASE_MARGIN,
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
    /// out, due deliveries claimed for the subscriptions below their share); what finishes is
    /// written back by a task of its own, so new attempts run while a settlement commits.
    pub async fn run(self) {
        let wake = self.store.dispatch_wakeup().clone();
        let settler = self.spawn_settler();
        let mut slots = Slots::new(self.share, self.sender());
        // New outbound events may be waiting (another instance's, or from before a restart).
        let mut fan_out = true;
        let mut failing = Duration::ZERO;
        // Attempts finished since the last claim.
        let mut freed = u32::MAX;
        loop {
            // Claims come in rounds, not one per finished attempt: once half the instance's
            // room, or a subscription's worth of held deliveries, is free; at once when
            // nothing waits for a slot, or when woken.
            let worth_a_claim = fan_out || !slots.has_waiting() || freed >= self.share * 2;
            if slots.held() <= CLAIMED / 2 && worth_a_claim {
                freed = 0;
                if let Err(error) = self.refill(&mut slots, fan_out).await {
                    tracing::warn!(
                        error = crate::telemetry::error_chain(&error),
                        "dispatch failed"
                    );
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
                fan_out = false;
            }
            if slots.is_empty() {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
                fan_out = true;
                continue;
            }
            tokio::select! {
                Some(first) = slots.next_finished() => {
                    let mut finished = vec![first];
                    // What finishes in the next moment goes with it: one claim for what they
                    // leave room for, one settlement.
                    let gather = tokio::time::Instant::now() + GATHER;
                    while let Ok(Some(done)) = tokio::time::timeout_at(gather, slots.next_finished()).await {
                        finished.push(done);
                    }
                    freed = freed.saturating_add(finished.len() as u32);
                    // While nothing gets through (a subscriber down), attempting the backlog
                    // as fast as it can be claimed would only load the database the webhooks
                    // need: pause between rounds, doubling up to a second, until one succeeds.
                    failing = if finished.iter().any(|s| s.status == DeliveryStatus::Delivered) {
                        Duration::ZERO
                    } else {
                        (failing * 2).clamp(FAILING_PAUSE, Duration::from_secs(1))
                    };
                    let _ = settler.send(finished);
                    tokio::time::sleep(failing).await;
                }
                () = wake.notified() => fan_out = true,
                () = tokio::time::sleep(POLL) => fan_out = true,
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
        tokio::spawn(async move {
            while let Some(mut settled) = finished.recv().await {
                while let Ok(more) = finished.try_recv() {
                    settled.extend(more);
                }
                for settlement in &settled {
                    metrics.delivery_outcome(settlement.status.as_str());
                }
                let failing_before = chrono::Utc::now()
                    .checked_sub_signed(disable_after)
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
                if let Err(error) = store.settle(&settled, failing_before).await {
                    tracing::warn!(
                        error = crate::telemetry::error_chain(&error),
                        deliveries = settled.len(),
                        "could not record delivery attempts; they will be attempted again"
                    );
                }
            }
        });
        settler
    }

    /// Fans out new events (when there may be some) and claims due deliveries, up to the
    /// bounds: each subscription may hold [`HELD_SHARES`] times its share.
    async fn refill(
        &self,
        slots: &mut Slots,
        fan_out: bool,
    ) -> Result<(), crate::store::StoreError> {
        if fan_out {
            while self.store.fan_out().await? {}
        }
        let room = CLAIMED - slots.held();
        if room == 0 {
            return Ok(());
        }
        let claimed = self
            .store
            .claim_deliveries(
                room as u32,
                self.lease,
                self.share * HELD_SHARES,
                &slots.held_by_subscription(),
            )
            .await?;
        for delivery in claimed {
            slots.start_or_queue(delivery);
        }
        Ok(())
    }
}
