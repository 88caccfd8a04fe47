//! The dispatcher's queue: outbound events are turned into one delivery per subscription that
//! wants them (fan-out), due deliveries are leased to an instance (claim), and what each
//! attempt decided is written back (settle). On PostgreSQL several instances share the queue.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::outbox::insert_deliveries;
use super::{json_text, time_text, Store, StoreError, Write};
use crate::domain::delivery;
use crate::domain::subscription::without_userinfo;
use crate::domain::{DeactivationReason, DeliveryStatus, Health};

/// Outbound events one fan-out takes at most.
const FAN_OUT_EVENTS: i64 = 500;

/// A delivery the dispatcher holds a lease on, with all it needs to attempt it. `Debug` shows
/// neither the secret nor the URL's user-info.
#[derive(Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    /// Attempts made before this one.
    pub attempts: i32,
    pub event_id: Uuid,
    pub body: String,
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

/// What one attempt decided, to be written back.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub id: Uuid,
    pub subscription_id: Uuid,
    /// The claim the attempt was made under.
    pub claim: Uuid,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// When to try again, for a delivery still pending.
    pub next_attempt_at: DateTime<Utc>,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration: Duration,
    /// The receiver said 410 Gone: stop sending it anything.
    pub gone: bool,
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
                sqlx::query_scalar(
                    "SELECT seq FROM outbox_events WHERE NOT fanned_out ORDER BY seq LIMIT $1",
                )
                .bind(FAN_OUT_EVENTS)
                .fetch_all(&mut *conn)
                .await?
            };
            if waiting.is_empty() {
                return Ok(false);
            }
            let mut tx = db.begin(Write::FanOut).await?;
            let seqs: Vec<i64> = sqlx::query_scalar(
                "SELECT seq FROM outbox_events WHERE NOT fanned_out ORDER BY seq LIMIT $1",
            )
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

    /// Writes back what the attempts decided, in one transaction, with what they say of each
    /// subscription: a 410 deactivates it at once (`gone`); a subscription that has failed
    /// since before `failing_before`, with nothing delivered meanwhile, is deactivated too
    /// (`failing`). A result counts only while its attempt's claim still holds the delivery:
    /// one whose lease passed to another claim, or whose delivery was queued again or deleted
    /// meanwhile, changes nothing and is counted in [`Settled::stale`]; it never fails the
    /// others.
    pub async fn settle(
        &self,
        settlements: &[Settlement],
        failing_before: DateTime<Utc>,
    ) -> Result<Settled, StoreError> {
        if settlements.is_empty() {
            return Ok(Settled::default());
        }
        let sql = self.dialect();
        let lock = format!(
            "SELECT id FROM subscriptions WHERE {} ORDER BY id {}",
            sql.in_json_uuids("id", 1),
            sql.lock_rows()
        );
        let update = format!(
            "UPDATE deliveries SET status = r.status, attempts = r.attempts, \
                 next_attempt_at = r.next_attempt_at, leased_until = NULL, claim = NULL, \
                 last_error = r.error, updated_at = $2 \
             FROM (SELECT {} AS rid, {} AS rclaim, value ->> 1 AS status, {} AS attempts, \
                          {} AS next_attempt_at, value ->> 3 AS error FROM {}) AS r \
             WHERE deliveries.id = r.rid AND deliveries.claim = r.rclaim AND {} \
             RETURNING id",
            sql.uuid("value ->> 0"),
            sql.uuid("value ->> 5"),
            sql.cast("value ->> 2", "int"),
            sql.time("value ->> 4"),
            sql.json_rows(1),
            // The ids again, as a list: see `in_json_uuids`.
            sql.in_json_uuids("deliveries.id", 3),
        );
        let attempts = format!(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, error, \
                                            duration_ms) \
             SELECT {}, {}, {}, value ->> 2, {} FROM {}",
            sql.uuid("value ->> 0"),
            sql.time("value ->> 1"),
            sql.cast("value ->> 3", "int"),
            sql.cast("value ->> 4", "bigint"),
            sql.json_rows(1),
        );
        let delivering = format!(
            "UPDATE subscriptions SET failing_since = NULL \
             WHERE failing_since IS NOT NULL AND {}",
            sql.in_json_uuids("id", 1)
        );
        let failing = format!(
            "UPDATE subscriptions SET failing_since = r.since \
             FROM (SELECT {} AS rid, {} AS since FROM {}) AS r \
             WHERE subscriptions.id = r.rid AND subscriptions.failing_since IS NULL",
            sql.uuid("value ->> 0"),
            sql.time("value ->> 1"),
            sql.json_rows(1),
        );
        let deactivate = format!(
            "UPDATE subscriptions SET active = false, deactivated_reason = $3, updated_at = $2 \
             WHERE active AND {} AND ($4 IS NULL OR failing_since < $4) RETURNING id",
            sql.in_json_uuids("id", 1)
        );
        let fail_waiting = fail_waiting_sql(sql, true);
        let mut ids = Vec::new();
        let mut updates = Vec::new();
        let mut subscriptions = Vec::new();
        for settled in settlements {
            let id = settled.id.simple().to_string();
            ids.push(id.clone());
            updates.push(serde_json::json!([
                id,
                settled.status.as_str(),
                settled.attempts,
                settled.error,
                time_text(settled.next_attempt_at),
                settled.claim.simple().to_string(),
            ]));
            subscriptions.push(settled.subscription_id.simple().to_string());
        }
        subscriptions.sort_unstable();
        subscriptions.dedup();
        let now = super::now();
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Settle).await?;
            // Subscriptions before deliveries, in id order, as every writer of both does.
            sqlx::query(&lock)
                .bind(json_text(&subscriptions))
                .execute(tx.conn())
                .await?;
            let held: HashSet<Uuid> = sqlx::query_scalar(&update)
                .bind(json_text(&updates))
                .bind(now)
                .bind(json_text(&ids))
                .fetch_all(tx.conn())
                .await?
                .into_iter()
                .collect();
            let counted: Vec<&Settlement> = settlements
                .iter()
                .filter(|settled| held.contains(&settled.id))
                .collect();
            let effects = SettleEffects::of(&counted, failing_before);
            if !effects.tries.is_empty() {
                sqlx::query(&attempts)
                    .bind(json_text(&effects.tries))
                    .execute(tx.conn())
                    .await?;
            }
            if !effects.healthy.is_empty() {
                sqlx::query(&delivering)
                    .bind(json_text(&effects.healthy))
                    .execute(tx.conn())
                    .await?;
            }
            if !effects.unhealthy_since.is_empty() {
                sqlx::query(&failing)
                    .bind(json_text(&effects.unhealthy_since))
                    .execute(tx.conn())
                    .await?;
            }
            let mut deactivated = Vec::new();
            for (subscriptions, reason, before) in &effects.deactivations {
                if subscriptions.is_empty() {
                    continue;
                }
                let ids: Vec<Uuid> = sqlx::query_scalar(&deactivate)
                    .bind(json_text(subscriptions))
                    .bind(now)
                    .bind(reason.as_str())
                    .bind(*before)
                    .fetch_all(tx.conn())
                    .await?;
                deactivated.extend(ids);
            }
            sqlx::query(&fail_waiting)
                .bind(now)
                .bind(json_text(&subscriptions))
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            Settled {
                stale: settlements
                    .iter()
                    .map(|settled| settled.id)
                    .filter(|id| !held.contains(id))
                    .collect(),
                deactivated,
            }
        }))
    }

    /// Fails every pending delivery of an inactive subscription, saying why: nothing is left
    /// `pending` that will not be attempted. The statements that deactivate a subscription do
    /// this in their own transaction; this pass catches a delivery made or queued again by a
    /// transaction that read the subscription as active just before. Returns how many failed.
    pub async fn fail_waiting_of_inactive(&self) -> Result<u64, StoreError> {
        // From the inactive subscriptions (few), one index probe each: never a read of every
        // pending delivery.
        let any = "SELECT EXISTS (SELECT 1 FROM subscriptions s WHERE NOT s.active \
                                  AND EXISTS (SELECT 1 FROM deliveries d \
                                              WHERE d.subscription_id = s.id \
                                                AND d.status = 'pending'))";
        let fail = fail_waiting_sql(self.dialect(), false);
        Ok(with_backend!(self, |db| {
            // A read first: the write (SQLite's only writer's turn) is almost never needed.
            let waiting: bool = {
                let mut conn = db.reader().await?;
                sqlx::query_scalar(any).fetch_one(&mut *conn).await?
            };
            if !waiting {
                return Ok(0);
            }
            let mut tx = db.begin(Write::Plain).await?;
            let failed = sqlx::query(&fail)
                .bind(super::now())
                .execute(tx.conn())
                .await?
                .rows_affected();
            tx.commit().await?;
            failed
        }))
    }
}

/// What a settlement wrote.
#[derive(Debug, Default)]
pub struct Settled {
    /// The deliveries whose results' claims no longer held: written nowhere.
    pub stale: HashSet<Uuid>,
    /// Subscriptions the results deactivated.
    pub deactivated: Vec<Uuid>,
}

/// The rows a settlement writes besides the deliveries, from the results that count.
struct SettleEffects {
    tries: Vec<serde_json::Value>,
    healthy: Vec<String>,
    unhealthy_since: Vec<serde_json::Value>,
    deactivations: [(Vec<String>, DeactivationReason, Option<DateTime<Utc>>); 2],
}

impl SettleEffects {
    fn of(counted: &[&Settlement], failing_before: DateTime<Utc>) -> SettleEffects {
        let mut tries = Vec::new();
        let mut gone = Vec::new();
        for settled in counted {
            tries.push(serde_json::json!([
                settled.id.simple().to_string(),
                time_text(settled.attempted_at),
                settled.error,
                settled.status_code,
                i64::try_from(settled.duration.as_millis()).unwrap_or(i64::MAX),
            ]));
            if settled.gone {
                gone.push(settled.subscription_id.simple().to_string());
            }
        }
        let health = delivery::health(counted.iter().map(|settled| {
            (
                settled.subscription_id,
                settled.status == DeliveryStatus::Delivered,
                settled.attempted_at,
            )
        }));
        let mut healthy = Vec::new();
        let mut unhealthy = Vec::new();
        let mut unhealthy_since = Vec::new();
        for (subscription, health) in health {
            let id = subscription.simple().to_string();
            match health {
                Health::Delivering => healthy.push(id),
                Health::FailingSince(since) => {
                    unhealthy_since.push(serde_json::json!([id, time_text(since)]));
                    unhealthy.push(id);
                }
            }
        }
        SettleEffects {
            tries,
            healthy,
            unhealthy_since,
            deactivations: [
                (gone, DeactivationReason::Gone, None),
                (unhealthy, DeactivationReason::Failing, Some(failing_before)),
            ],
        }
    }
}

/// Fails the pending deliveries of inactive subscriptions (of those in the JSON list `$2`
/// when `scoped`), with why in `last_error`; `$1` is now. Their claims stay: an attempt in
/// flight still writes back what it got.
pub(super) fn fail_waiting_sql(sql: super::dialect::Dialect, scoped: bool) -> String {
    let scope = if scoped {
        format!("AND {}", sql.in_json_uuids("id", 2))
    } else {
        String::new()
    };
    format!(
        "UPDATE deliveries SET status = 'failed', updated_at = $1, \
             last_error = 'subscription inactive' || COALESCE(' (' || \
                 (SELECT s.deactivated_reason FROM subscriptions s \
                  WHERE s.id = deliveries.subscription_id) || ')', '') \
         WHERE status = 'pending' \
           AND subscription_id IN (SELECT id FROM subscriptions WHERE NOT active {scope})"
    )
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
                                               WHERE e.subscription_id = d.subscription_id \
                                                 AND e.shipment_id = d.shipment_id \
                                                 AND e.status = 'pending' \
                                               ORDER BY e.subscription_id, e.shipment_id, \
                                                        e.seq \
                                               LIMIT 1) \
                                ORDER BY d.next_attempt_at LIMIT ${room} {}) AS c{n}",
                dialect.skip_locked("d")
            )
        })
        .collect();
    format!(
        "SELECT c.id, c.attempts, o.id AS event_id, o.body, s.url, s.secret, \
                s.id AS subscription_id \
         FROM ({}) AS c \
         JOIN subscriptions s ON s.id = c.subscription_id \
         JOIN outbox_events o ON o.id = c.event_id \
         ORDER BY c.next_attempt_at LIMIT $2",
        members.join(" UNION ALL ")
    )
}
