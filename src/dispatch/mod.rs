//! The dispatcher: delivers the outbox to the subscriptions, inside `serve`, on every
//! instance unless `DISPATCH=off`. It fans new outbound events out into deliveries, claims due
//! ones under a lease (so a killed instance's work is taken over when the lease ends), POSTs
//! each signed both ways, and settles what each attempt decided with the same retry policy as
//! `send`. Woken by every commit that wrote outbound events; a slow poll catches what another
//! instance wrote. Bounded: at most [`IN_FLIGHT`] attempts at once per instance, and
//! `DELIVERY_CONCURRENCY_PER_SUBSCRIPTION` per subscription; only to addresses `egress`
//! allows.

mod attempt;
pub mod egress;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::config::DeliveryConfig;
use crate::domain::DeliveryStatus;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::store::{Settlement, Store};
use egress::Egress;

pub use attempt::signed_request;

/// Attempts in flight at once per instance.
const IN_FLIGHT: usize = 64;
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
            lease: config.timeout + LEASE_MARGIN,
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
            while self.store.fan_out().await? > 0 {}
        }
        let room = IN_FLIGHT - in_flight.len();
        if room == 0 {
            return Ok(());
        }
        let claimed = self
            .store
            .claim_deliveries(room as u32, self.lease, self.share)
            .await?;
        for delivery in claimed {
            let sender = attempt::Sender {
                client: self.client.clone(),
                egress: self.egress.clone(),
                policy: self.policy.clone(),
                metrics: self.metrics.clone(),
            };
            in_flight.spawn(async move { sender.attempt(delivery).await });
        }
        Ok(())
    }

    /// Writes the attempts' results back; a failure here leaves the leases to expire, and the
    /// deliveries are attempted again (at least once, never lost).
    async fn settle(&self, settled: &[Settlement]) {
        for settlement in settled {
            self.metrics.delivery_outcome(settlement.status.as_str());
        }
        let failing_before = chrono::Utc::now()
            .checked_sub_signed(self.disable_after)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        if let Err(error) = self.store.settle(settled, failing_before).await {
            tracing::warn!(
                error = crate::telemetry::error_chain(&error),
                deliveries = settled.len(),
                "could not record delivery attempts; they will be attempted again"
            );
        }
    }
}
