//! The dispatcher: delivers the outbox to the subscriptions, inside `serve`, on every
//! instance unless `DISPATCH=off`. It fans new outbound events out into deliveries, claims due
//! ones under a lease (so a killed instance's work is taken over when the lease ends), POSTs
//! each signed both ways, and settles what each attempt decided with the same retry policy as
//! `send`. Woken by every commit that wrote outbound events; a slow poll catches what another
//! instance wrote. Bounded: at most [`IN_FLIGHT`] attempts at once per instance.

mod attempt;

use std::time::Duration;

use tokio::task::JoinSet;

use crate::config::DeliveryConfig;
use crate::domain::DeliveryStatus;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::store::{Settlement, Store};

pub use attempt::signed_request;

/// Attempts in flight at once per instance.
const IN_FLIGHT: usize = 64;
/// Outbound events fanned out per transaction.
const FAN_OUT_BATCH: u32 = 500;
/// How long a claimed delivery is this instance's beyond the attempt's own time limit; past
/// it, another instance may take it over.
const LEASE_MARGIN: Duration = Duration::from_secs(20);
/// How often to look for work nobody woke us for: another instance's writes, retries due.
const POLL: Duration = Duration::from_millis(500);
/// How long to wait for more attempts to finish before settling those that have.
const GATHER: Duration = Duration::from_millis(2);
/// The first pause between rounds in which no attempt succeeded.
const FAILING_PAUSE: Duration = Duration::from_millis(50);
/// Pause after the database failed, before trying again.
const BACKOFF: Duration = Duration::from_secs(1);

pub struct Dispatcher {
    store: Store,
    client: reqwest::Client,
    /// Longer than an attempt can take.
    lease: Duration,
    policy: RetryPolicy,
    metrics: Metrics,
}

impl Dispatcher {
    pub fn new(store: Store, config: &DeliveryConfig, metrics: Metrics) -> Dispatcher {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with a timeout and no redirects");
        Dispatcher {
            store,
            client,
            lease: config.timeout + LEASE_MARGIN,
            policy: RetryPolicy {
                max_retries: config.max_retries,
                ..RetryPolicy::default()
            },
            metrics,
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        let wake = self.store.dispatch_wakeup().clone();
        let mut in_flight: JoinSet<Settlement> = JoinSet::new();
        // New outbound events may be waiting (another instance's, or from before a restart).
        let mut fan_out = true;
        let mut failing = Duration::ZERO;
        loop {
            // Refill at half empty: claims then come in rounds, not one per finished attempt.
            if in_flight.len() <= IN_FLIGHT / 2 {
                if let Err(error) = self.refill(&mut in_flight, fan_out).await {
                    tracing::warn!(
                        error = crate::telemetry::error_chain(&error),
                        "dispatch failed"
                    );
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
                fan_out = false;
            }
            if in_flight.is_empty() {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
                fan_out = true;
                continue;
            }
            tokio::select! {
                Some(done) = in_flight.join_next() => {
                    let mut settled: Vec<Settlement> = done.ok().into_iter().collect();
                    // Whatever finishes in the next moment is settled in the same transaction.
                    let gather = tokio::time::Instant::now() + GATHER;
                    while let Ok(Some(done)) = tokio::time::timeout_at(gather, in_flight.join_next()).await {
                        settled.extend(done.ok());
                    }
                    self.settle(&settled).await;
                    // While nothing gets through (a subscriber down), attempting the backlog
                    // as fast as it can be claimed would only load the database the webhooks
                    // need: pause between rounds, doubling up to a second, until one succeeds.
                    failing = if settled.iter().any(|s| s.status == DeliveryStatus::Delivered) {
                        Duration::ZERO
                    } else {
                        (failing * 2).clamp(FAILING_PAUSE, Duration::from_secs(1))
                    };
                    tokio::time::sleep(failing).await;
                }
                () = wake.notified() => fan_out = true,
                () = tokio::time::sleep(POLL) => fan_out = true,
            }
        }
    }

    /// Fans out new events (when there may be some) and starts attempts for due deliveries,
    /// up to the bound.
    async fn refill(
        &self,
        in_flight: &mut JoinSet<Settlement>,
        fan_out: bool,
    ) -> Result<(), crate::store::StoreError> {
        if fan_out {
            while self.store.fan_out(FAN_OUT_BATCH).await? == FAN_OUT_BATCH as usize {}
        }
        let room = IN_FLIGHT - in_flight.len();
        if room == 0 {
            return Ok(());
        }
        let claimed = self.store.claim_deliveries(room as u32, self.lease).await?;
        for delivery in claimed {
            let (client, policy, metrics) = (
                self.client.clone(),
                self.policy.clone(),
                self.metrics.clone(),
            );
            in_flight
                .spawn(async move { attempt::attempt(&client, &policy, &metrics, delivery).await });
        }
        Ok(())
    }

    /// Writes the attempts' results back; a failure here leaves the leases to expire, and the
    /// deliveries are attempted again (at least once, never lost).
    async fn settle(&self, settled: &[Settlement]) {
        for settlement in settled {
            self.metrics.delivery_outcome(settlement.status.as_str());
        }
        if let Err(error) = self.store.settle(settled).await {
            tracing::warn!(
                error = crate::telemetry::error_chain(&error),
                deliveries = settled.len(),
                "could not record delivery attempts; they will be attempted again"
            );
        }
    }
}
