//! Group commit. Requests hand their delivery to a writer task and wait for its answer; the
//! writer takes everything that queued up while its previous commit was in flight and applies
//! it as one transaction. Each delivery still gets its own exact outcome, and every answer is
//! sent only after the commit that contains it. Under load this turns many small durable
//! commits into few large ones, which is where a database spends its time; with a single
//! sender a batch is one delivery and costs what a plain transaction costs.
//!
//! The writer is the one path to the database for every webhook, so it must not fail quietly:
//! each commit has a deadline, a panic fails only its batch, and readiness probes go through
//! the same queue and commit, so `/readyz` says whether the writer can commit now.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::StoreError;
use crate::domain::{Applied, Delivery};
use crate::telemetry::traces;

/// Deliveries queued beyond this are answered 503 at once rather than waiting without bound.
const QUEUE_CAPACITY: usize = 4096;
/// Upper bound on one transaction, so a burst still commits (and answers) in slices.
const MAX_BATCH: usize = 256;
/// A batch that lost a race to another writer (an event id it recorded first, a shipment it
/// changed first) is applied again, and then sees the winner's rows; more than a few losses
/// in a row would mean something else is wrong.
const RACE_RETRIES: usize = 3;
/// Longest a batch may take, lock waits included; past it the batch is answered 503 (nothing
/// was committed, so the senders' retries are safe) and the writer moves on.
pub(super) const COMMIT_DEADLINE: Duration = Duration::from_secs(5);

/// A database that applies a batch of deliveries, in order, in one transaction, and answers
/// each only once that has committed.
pub(super) trait ApplyBatch: Send + Sync + 'static {
    fn apply_batch(
        &self,
        deliveries: &[&Delivery],
    ) -> impl Future<Output = Result<Vec<Applied>, StoreError>> + Send;
}

enum Job {
    Apply {
        delivery: Box<Delivery>,
        reply: oneshot::Sender<Result<Applied, StoreError>>,
        /// The request's span, which the batch's commit continues (none while traces are off).
        span: tracing::Span,
    },
    /// Commits (an empty batch, or the batch it joins) and says whether that worked.
    Probe {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::Sender<Job>,
    races: Arc<AtomicU64>,
}

impl Batcher {
    /// Starts one writer task; it ends when the last `Batcher` clone is dropped. One: several,
    /// each with its own batch in flight, make smaller batches, which cost more CPU per event
    /// than their overlap saves.
    pub fn spawn(writer: impl ApplyBatch) -> Batcher {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let races = Arc::default();
        tokio::spawn(write_batches(writer, jobs, Arc::clone(&races)));
        Batcher { queue, races }
    }

    /// Starts one writer on a thread of its own, for a database whose calls block (SQLite):
    /// a webhook's delivery wakes the writer directly, and a batch runs from its first
    /// statement to its commit without handing over to another thread.
    pub fn spawn_thread(writer: impl ApplyBatch) -> std::io::Result<Batcher> {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let races = Arc::default();
        let counter = Arc::clone(&races);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || runtime.block_on(write_batches(writer, jobs, counter)))?;
        Ok(Batcher { queue, races })
    }

    pub async fn apply(&self, delivery: Delivery) -> Result<Applied, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Apply {
            delivery: Box::new(delivery),
            reply,
            span: if traces::enabled() {
                tracing::Span::current()
            } else {
                tracing::Span::none()
            },
        })?;
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::unavailable(sqlx::Error::WorkerCrashed)))
    }

    /// Whether the writer commits now: a transaction through the same queue as the webhooks.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Probe { reply })?;
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::unavailable(sqlx::Error::WorkerCrashed)))
    }

    /// Batches applied again because another writer changed their orders first.
    pub fn races(&self) -> u64 {
        self.races.load(Ordering::Relaxed)
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.queue.try_send(job).map_err(|error| {
            StoreError::unavailable(match error {
                mpsc::error::TrySendError::Full(_) => sqlx::Error::PoolTimedOut,
                mpsc::error::TrySendError::Closed(_) => sqlx::Error::PoolClosed,
            })
        })
    }
}

/// Applies the batch within the deadline, again while another writer won a race for its rows.
/// A panic inside fails this batch only.
async fn commit(
    writer: &impl ApplyBatch,
    deliveries: &[&Delivery],
    races: &AtomicU64,
) -> Result<Vec<Applied>, StoreError> {
    let mut tries = 0;
    loop {
        let attempt = AssertUnwindSafe(writer.apply_batch(deliveries)).catch_unwind();
        let result = match tokio::time::timeout(COMMIT_DEADLINE, attempt).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                tracing::error!("a batch commit panicked; its deliveries are answered 500");
                Err(StoreError::Internal(std::sync::Arc::new(
                    sqlx::Error::WorkerCrashed,
                )))
            }
            Err(_) => {
                tracing::error!(
                    deadline_secs = COMMIT_DEADLINE.as_secs(),
                    "a batch did not commit in time; its deliveries are answered 503"
                );
                Err(StoreError::unavailable(sqlx::Error::Io(
                    std::io::ErrorKind::TimedOut.into(),
                )))
            }
        };
        match result {
            Err(StoreError::Conflict(_)) if tries < RACE_RETRIES => {
                tries += 1;
                races.fetch_add(1, Ordering::Relaxed);
            }
            result => return result,
        }
    }
}

/// The span of a batch's commit: a child of its first request's span, linked to the others'
/// (a batch commits many requests). None while traces are off.
fn commit_span(batch: &[Job]) -> tracing::Span {
    if !traces::enabled() {
        return tracing::Span::none();
    }
    let mut requests = batch.iter().filter_map(|job| match job {
        Job::Apply { span, .. } => Some(span),
        Job::Probe { .. } => None,
    });
    let span = tracing::info_span!(
        "batch commit",
        batch.size = batch.len(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(first) = requests.next() {
        let _ = span.set_parent(first.context());
        traces::link(&span, first);
    }
    for request in requests {
        traces::link(&span, request);
    }
    traces::record_ids(&span);
    span
}

async fn write_batches(
    writer: impl ApplyBatch,
    mut jobs: mpsc::Receiver<Job>,
    races: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let deliveries: Vec<&Delivery> = batch
            .iter()
            .filter_map(|job| match job {
                Job::Apply { delivery, .. } => Some(&**delivery),
                Job::Probe { .. } => None,
            })
            .collect();
        let result = commit(&writer, &deliveries, &races)
            .instrument(commit_span(&batch))
            .await;
        let probed = result.as_ref().map(|_| ()).map_err(Clone::clone);
        let mut answers = match result {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            // One bad delivery must not fail its neighbours: retry each on its own. Not when
            // the database is unavailable; that would only multiply the wait.
            Err(StoreError::Internal(_) | StoreError::Refused(_) | StoreError::Conflict(_))
                if deliveries.len() > 1 =>
            {
                let mut answers = Vec::with_capacity(deliveries.len());
                for delivery in &deliveries {
                    answers.push(
                        commit(&writer, &[delivery], &races)
                            .await
                            .map(|mut one| one.remove(0)),
                    );
                }
                answers
            }
            Err(error) => vec![Err(error); deliveries.len()],
        }
        .into_iter();
        for job in batch.drain(..) {
            // The sender may have hung up; the commit stands and a redelivery is a duplicate.
            match job {
                Job::Apply { reply, .. } => {
                    let _ = reply.send(answers.next().expect("one answer per delivery"));
                }
                Job::Probe { reply } => {
                    let _ = reply.send(probed.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database whose commit panics for one order id and applies the rest.
    struct PanicsOn(&'static str);

    impl ApplyBatch for PanicsOn {
        async fn apply_batch(&self, deliveries: &[&Delivery]) -> Result<Vec<Applied>, StoreError> {
            if deliveries
                .iter()
                .any(|delivery| delivery.event_id == self.0)
            {
                panic!("a bug in a commit");
            }
            Ok(deliveries
                .iter()
                .map(|_| Applied {
                    outcome: crate::domain::Outcome::Ignored,
                    shipment_id: None,
                })
                .collect())
        }
    }

    fn delivery(event_id: &str) -> Delivery {
        Delivery {
            event_id: event_id.into(),
            derived_id: false,
            event: crate::domain::Event::Other {
                event_type: "test".into(),
                order_id: None,
            },
            trace: None,
        }
    }

    #[tokio::test]
    async fn a_panicking_commit_fails_its_delivery_and_the_writer_keeps_serving() {
        let batcher = Batcher::spawn(PanicsOn("bad"));

        let failed = batcher.apply(delivery("bad")).await;
        let next = batcher.apply(delivery("good")).await;

        assert!(matches!(failed, Err(StoreError::Internal(_))));
        assert!(next.is_ok());
        assert!(batcher.probe().await.is_ok());
    }
}
