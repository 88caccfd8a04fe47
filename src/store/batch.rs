//! Group commit. Requests hand their delivery to a writer task and wait for its answer; the
//! writer takes everything that queued up while its previous commit was in flight and applies
//! it as one transaction. Each delivery still gets its own exact outcome, and every answer is
//! sent only after the commit that contains it. Under load this turns many small durable
//! commits into few large ones, which is where a database spends its time; with a single
//! sender a batch is one delivery and costs what a plain transaction costs.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::{Applied, StoreError};
use crate::domain::Delivery;

/// Deliveries queued beyond this are answered 503 at once rather than waiting without bound.
const QUEUE_CAPACITY: usize = 4096;
/// Upper bound on one transaction, so a burst still commits (and answers) in slices.
const MAX_BATCH: usize = 256;
/// A batch that lost a race for an event id to another instance is applied again, and then
/// sees the winner's row; more than a few losses in a row would mean something else is wrong.
const RACE_RETRIES: usize = 3;

/// A database that applies a batch of deliveries, in order, in one transaction.
pub(super) trait Commit: Send + Sync + 'static {
    fn commit(
        &self,
        deliveries: &[&Delivery],
    ) -> impl Future<Output = Result<Vec<Applied>, StoreError>> + Send;
}

struct Job {
    delivery: Delivery,
    reply: oneshot::Sender<Result<Applied, StoreError>>,
}

#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts one writer task; it ends when the last `Batcher` clone is dropped.
    pub fn spawn(writer: impl Commit) -> Batcher {
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(write_batches(writer, jobs));
        Batcher { queue }
    }

    pub async fn apply(&self, delivery: Delivery) -> Result<Applied, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job { delivery, reply })
            .map_err(|error| {
                StoreError::unavailable(match error {
                    mpsc::error::TrySendError::Full(_) => sqlx::Error::PoolTimedOut,
                    mpsc::error::TrySendError::Closed(_) => sqlx::Error::PoolClosed,
                })
            })?;
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::unavailable(sqlx::Error::WorkerCrashed)))
    }
}

/// Commits, again while another instance won a race for one of the batch's event ids.
async fn commit(
    writer: &impl Commit,
    deliveries: &[&Delivery],
) -> Result<Vec<Applied>, StoreError> {
    let mut tries = 0;
    loop {
        match writer.commit(deliveries).await {
            Err(error) if error.is_lost_race() && tries < RACE_RETRIES => tries += 1,
            result => return result,
        }
    }
}

async fn write_batches(writer: impl Commit, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let deliveries: Vec<&Delivery> = batch.iter().map(|job| &job.delivery).collect();
        let answers = match commit(&writer, &deliveries).await {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            // One bad delivery must not fail its neighbours: retry each on its own. Not when
            // the database is unavailable; that would only multiply the wait.
            Err(StoreError::Internal(_)) if batch.len() > 1 => {
                let mut answers = Vec::with_capacity(batch.len());
                for delivery in &deliveries {
                    answers.push(
                        commit(&writer, &[delivery])
                            .await
                            .map(|mut one| one.remove(0)),
                    );
                }
                answers
            }
            Err(error) => vec![Err(error); batch.len()],
        };
        for (job, answer) in batch.drain(..).zip(answers) {
            // The sender may have hung up; the commit stands and a redelivery is a duplicate.
            let _ = job.reply.send(answer);
        }
    }
}
