//! Group commit. Requests hand their delivery to a writer task and wait for its answer; the
//! writer takes everything that queued up while its previous commit was in flight and applies
//! it as one transaction. Each delivery still gets its own exact outcome, and every answer is
//! sent only after the commit that contains it. Under load this turns many small durable
//! commits into few large ones, which is where a database spends its time; with a single
//! sender a batch is one delivery and costs what a plain transaction costs.

use tokio::sync::{mpsc, oneshot};

use super::{postgres, sqlite, Applied, StoreError};
use crate::domain::Delivery;

/// Deliveries queued beyond this are answered 503 at once rather than waiting without bound.
const QUEUE_CAPACITY: usize = 4096;
/// Upper bound on one transaction, so a burst still commits (and answers) in slices.
const MAX_BATCH: usize = 256;

/// The database a writer commits to.
pub(super) enum Writer {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Writer {
    async fn commit(&self, deliveries: &[&Delivery]) -> Result<Vec<Applied>, StoreError> {
        match self {
            Writer::Sqlite(pool) => sqlite::commit(pool, deliveries).await,
            Writer::Postgres(pool) => postgres::commit(pool, deliveries).await,
        }
    }
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
    pub fn spawn(writer: Writer) -> Batcher {
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

async fn write_batches(writer: Writer, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let deliveries: Vec<&Delivery> = batch.iter().map(|job| &job.delivery).collect();
        let answers = match writer.commit(&deliveries).await {
            Ok(answers) => answers.into_iter().map(Ok).collect(),
            // One bad delivery must not fail its neighbours: retry each on its own. Not when
            // the database is unavailable; that would only multiply the wait.
            Err(StoreError::Internal(_)) if batch.len() > 1 => {
                let mut answers = Vec::with_capacity(batch.len());
                for delivery in &deliveries {
                    answers.push(
                        writer
                            .commit(&[delivery])
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
