//! Writing back what delivery attempts decided (settle), fenced by each attempt's claim, and
//! what their results say of each subscription; and the rule that an inactive subscription
//! leaves nothing pending.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{json_text, time_text, Store, StoreError, Write};
use crate::domain::delivery;
use crate::domain::{DeactivationReason, DeliveryStatus, Health};

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
        let update = record_results_sql(sql);
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
        let mut updates = Vec::new();
        let mut subscriptions = Vec::new();
        for settled in settlements {
            updates.push(serde_json::json!([
                settled.id.simple().to_string(),
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

/// Writes each result (the JSON rows `$1`: id, status, attempts, error, next attempt, claim)
/// over its delivery while the result's claim holds it, and returns the ids written; `$2` is
/// now. Each result finds its delivery by id, once.
fn record_results_sql(sql: super::dialect::Dialect) -> String {
    format!(
        "UPDATE deliveries SET status = r.status, attempts = r.attempts, \
             next_attempt_at = r.next_attempt_at, leased_until = NULL, claim = NULL, \
             last_error = r.error, updated_at = $2 \
         FROM (SELECT {} AS rid, {} AS rclaim, value ->> 1 AS status, {} AS attempts, \
                      {} AS next_attempt_at, value ->> 3 AS error FROM {}) AS r \
         WHERE deliveries.id = r.rid AND deliveries.claim = r.rclaim {} \
         RETURNING id",
        sql.uuid("value ->> 0"),
        sql.uuid("value ->> 5"),
        sql.cast("value ->> 2", "int"),
        sql.time("value ->> 4"),
        sql.json_rows(1),
        sql.probe_json_rows("deliveries.id", 1, 0),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dialect::Dialect;
    use crate::store::sqlite_plan;

    #[test]
    fn sqlite_reads_a_settlements_results_once_and_finds_each_delivery_by_id() {
        // Not the deliveries of the round first with a scan of the results for each, which
        // would make a settlement's cost grow with the square of its size.
        assert_eq!(
            sqlite_plan(&record_results_sql(Dialect::Sqlite)),
            [
                "SCAN json_each VIRTUAL TABLE INDEX 1:",
                "SEARCH deliveries USING INDEX sqlite_autoindex_deliveries_1 (id=?)",
            ]
        );
    }
}
