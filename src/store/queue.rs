//! The dispatcher's queue: outbound events written before their writers made their deliveries
//! are fanned out, and due deliveries are leased to an instance (claim); `settle.rs` writes
//! back what the attempts decided. On PostgreSQL several instances share the queue.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::outbox::insert_deliveries;
use super::{json_text, Store, StoreError, Write};
use crate::domain::delivery;
use crate::domain::subscription::without_userinfo;

/// Outbound events one fan-out takes at most.
const FAN_OUT_EVENTS: i64 = 500;

/// The oldest outbound events not fanned out, up to `$1`.
const NOT_FANNED_OUT: &str =
    "SELECT seq FROM outbox_events WHERE NOT fanned_out ORDER BY seq LIMIT $1";

/// A delivery the dispatcher holds a lease on, with all it needs to attempt it. `Debug` shows
/// neither the secret nor the URL's user-info.
#[derive(Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    /// Attempts made before this one.
    pub attempts: i32,
    pub event_id: Uuid,
    pub body: String,
    /// The trace context of the change, which the attempt continues.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub url: String,
    pub secret: String,
    pub subscription_id: Uuid,
    /// The claim that holds the lease: the attempt's result counts only while it still does.
    #[sqlx(skip)]
    pub claim: Uuid,
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("id", &self.id)
            .field("attempts", &self.attempts)
            .field("event_id", &self.event_id)
            .field("url", &without_userinfo(&self.url))
            .field("subscription_id", &self.subscription_id)
            .finish_non_exhaustive()
    }
}

/// What a claim leased, and which subscriptions were active when it did: a delivery this
/// instance holds for any other must not start.
#[derive(Debug, Default)]
pub struct Claim {
    pub deliveries: Vec<Claimed>,
    pub active: HashSet<Uuid>,
}

impl Store {
    /// Makes the deliveries of the oldest outbound events not yet fanned out: those written
    /// before writers made their deliveries themselves. Returns whether more may wait.
    pub async fn fan_out(&self) -> Result<bool, StoreError> {
        let sql = self.dialect();
        let deliver = insert_deliveries(
            sql,
            &format!(
                "SELECT id, shipment_id, event_type, created_at, seq FROM outbox_events \
                 WHERE {}",
                sql.in_json_bigints("seq", 1)
            ),
        );
        let mark = format!(
            "UPDATE outbox_events SET fanned_out = true WHERE {}",
            sql.in_json_bigints("seq", 1)
        );
        Ok(with_backend!(self, |db| {
            // A read first: almost always there is nothing, and then nothing is written.
            let waiting: Vec<i64> = {
                let mut conn = db.reader().await?;
                sqlx::query_scalar(NOT_FANNED_OUT)
                    .bind(FAN_OUT_EVENTS)
                    .fetch_all(&mut *conn)
                    .await?
            };
            if waiting.is_empty() {
                return Ok(false);
            }
            let mut tx = db.begin(Write::FanOut).await?;
            let seqs: Vec<i64> = sqlx::query_scalar(NOT_FANNED_OUT)
                .bind(FAN_OUT_EVENTS)
                .fetch_all(tx.conn())
                .await?;
            if !seqs.is_empty() {
                sqlx::query(&deliver)
                    .bind(json_text(&seqs))
                    .execute(tx.conn())
                    .await?;
                sqlx::query(&mark)
                    .bind(json_text(&seqs))
                    .execute(tx.conn())
                    .await?;
            }
            tx.commit().await?;
            seqs.len() as i64 == FAN_OUT_EVENTS
        }))
    }

    /// Leases up to `limit` due deliveries until `now + lease`: for each subscription and
    /// shipment only the oldest pending one, so a later change waits for an earlier one, and
    /// for each subscription no more than its `share` beside the attempts this instance has
    /// `running` for it. On PostgreSQL several instances claim side by side (`SKIP LOCKED`).
    pub async fn claim_deliveries(
        &self,
        limit: u32,
        lease: Duration,
        share: u32,
        running: &HashMap<Uuid, u32>,
    ) -> Result<Claim, StoreError> {
        let dialect = self.dialect();
        let now = super::now();
        let until = now + lease;
        let claim = Uuid::now_v7();
        let lease_sql = format!(
            "UPDATE deliveries SET leased_until = $2, claim = $3 WHERE {}",
            dialect.in_json_uuids("id", 1)
        );
        Ok(with_backend!(self, |db| {
            // Read first: a claim with nothing due writes nothing (on SQLite, never takes the
            // one writer's turn from the webhooks).
            let subscriptions: Vec<(Uuid, Option<DateTime<Utc>>)> = {
                let mut conn = db.reader().await?;
                sqlx::query_as(SUBSCRIPTIONS_WITH_WORK)
                    .fetch_all(&mut *conn)
                    .await?
            };
            let active = subscriptions.iter().map(|(id, _)| *id).collect();
            let subscriptions = subscriptions
                .into_iter()
                .map(|(id, due)| (id, running.get(&id).copied().unwrap_or_default(), due));
            let shares = delivery::shares(subscriptions, share, now, limit as usize);
            if shares.is_empty() {
                return Ok(Claim {
                    deliveries: Vec::new(),
                    active,
                });
            }
            let mut tx = db.begin(Write::Claim).await?;
            let select = claim_sql(dialect, shares.len());
            let mut query = sqlx::query_as::<_, Claimed>(&select)
                .bind(now)
                .bind(i64::from(limit));
            for (subscription, room) in &shares {
                query = query.bind(*subscription).bind(i64::from(*room));
            }
            let mut claimed = query.fetch_all(tx.conn()).await?;
            if !claimed.is_empty() {
                let ids: Vec<String> = claimed.iter().map(|c| c.id.simple().to_string()).collect();
                sqlx::query(&lease_sql)
                    .bind(json_text(&ids))
                    .bind(until)
                    .bind(claim)
                    .execute(tx.conn())
                    .await?;
            }
            for delivery in &mut claimed {
                delivery.claim = claim;
            }
            tx.commit().await?;
            Claim {
                deliveries: claimed,
                active,
            }
        }))
    }
}

/// Each active subscription with when its oldest pending delivery is due: one index probe
/// each.
const SUBSCRIPTIONS_WITH_WORK: &str = "SELECT s.id, \
       (SELECT MIN(d.next_attempt_at) FROM deliveries d \
        WHERE d.subscription_id = s.id AND d.status = 'pending') AS next_due \
     FROM subscriptions s WHERE s.active";

/// The claim of `subscriptions` subscriptions' due deliveries: for the n-th, bound as
/// `$(2n + 3)` with its room as `$(2n + 4)`, its oldest claimable deliveries along its due
/// index, stopping at its room, each the first pending of its shipment (found along the
/// shipment's own index: the only one that gives its order, which the planner sticks to even
/// without statistics); then, of all, the `$2` due first, with the bodies, URLs and secrets
/// of those few. (`$1` is now.)
fn claim_sql(dialect: super::dialect::Dialect, subscriptions: usize) -> String {
    let members: Vec<String> = (0..subscriptions)
        .map(|n| {
            let (id, room) = (2 * n + 3, 2 * n + 4);
            format!(
                "SELECT * FROM (SELECT d.id, d.attempts, d.event_id, d.subscription_id, \
                                       d.next_attempt_at \
                                FROM deliveries d \
                                WHERE d.subscription_id = ${id} AND d.status = 'pending' \
                                  AND d.next_attempt_at <= $1 \
                                  AND (d.leased_until IS NULL OR d.leased_until < $1) \
                                  AND d.seq = (SELECT e.seq FROM deliveries e \
                                               WHERE e.shipment_id = d.shipment_id \
                                                 AND e.subscription_id = d.subscription_id \
                                                 AND e.status = 'pending' \
                                               ORDER BY e.shipment_id, e.subscription_id, \
                                                        e.status, e.seq \
                                               LIMIT 1) \
                                ORDER BY d.next_attempt_at LIMIT ${room} {}) AS c{n}",
                dialect.skip_locked("d")
            )
        })
        .collect();
    format!(
        "SELECT c.id, c.attempts, o.id AS event_id, o.body, o.traceparent, o.tracestate, \
                s.url, s.secret, \
                s.id AS subscription_id \
         FROM ({}) AS c \
         JOIN subscriptions s ON s.id = c.subscription_id \
         JOIN outbox_events o ON o.id = c.event_id \
         ORDER BY c.next_attempt_at LIMIT $2",
        members.join(" UNION ALL ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dialect::Dialect;
    use crate::store::sqlite_plan;

    #[test]
    fn sqlite_claims_along_the_due_index_and_orders_along_the_shipments() {
        let plan = sqlite_plan(&claim_sql(Dialect::Sqlite, 1));
        assert_eq!(
            plan[1..4],
            [
                "SEARCH d USING INDEX deliveries_due_by_subscription_idx \
                 (subscription_id=? AND next_attempt_at<?)",
                "CORRELATED SCALAR SUBQUERY 1",
                "SEARCH e USING COVERING INDEX deliveries_shipment_idx \
                 (shipment_id=? AND subscription_id=? AND status=?)",
            ]
        );
    }
}
