//! Subscriptions and the deliveries of the transactional outbox. Outbound events are written
//! with the changes they announce (`plan.rs`, `operator.rs`); from here the dispatcher fans
//! them out into one delivery per subscription that wants them, claims due deliveries under a
//! lease, and settles what each attempt decided. Operators list, inspect and replay them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use uuid::Uuid;

use super::{json_text, paginate, time_text, Page, PageRequest, Store, StoreError};
use crate::domain::{NewSubscription, ShipmentChange, Subscription, SubscriptionPatch};

/// Fan-outs take this advisory lock, one at a time across instances, so deliveries are made in
/// the order their events were written.
const FAN_OUT_LOCK: i64 = 0x5348_4950_4f55_5401;

/// Fan-outs and claims do not wait for the disk on PostgreSQL: what a crash of the database
/// loses of them is done again (events fanned out again, deliveries claimed again), which
/// at-least-once allows. Settlements do wait, and their flush makes everything written before
/// them durable too, so a later change of a shipment is never claimed while an earlier
/// delivery could still come back as pending.
const WITHOUT_FLUSH: &str = "SET LOCAL synchronous_commit = off";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// A delivery the dispatcher holds a lease on, with all it needs to attempt it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    /// Attempts made before this one.
    pub attempts: i32,
    pub event_id: Uuid,
    pub body: String,
    pub url: String,
    pub secret: String,
    pub subscription_id: Uuid,
}

/// What one attempt decided, to be written back.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// When to try again, for a delivery still pending.
    pub next_attempt_at: DateTime<Utc>,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration: Duration,
    /// The receiver said 410 Gone: stop sending it anything.
    pub deactivate: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub subscription_id: Option<Uuid>,
    pub status: Option<DeliveryStatus>,
}

/// A delivery as the API serves it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub subscription_id: Uuid,
    pub shipment_id: Uuid,
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptRecord>>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttemptRecord {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What `/metrics` reports of the outbox.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryStats {
    pub pending: i64,
    pub oldest_pending_age: Option<Duration>,
}

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    seq: i64,
    id: Uuid,
    url: String,
    event_types: Json<Vec<ShipmentChange>>,
    description: Option<String>,
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SubscriptionRow> for Subscription {
    fn from(row: SubscriptionRow) -> Subscription {
        Subscription {
            id: row.id,
            url: row.url,
            event_types: row.event_types.0,
            description: row.description,
            active: row.active,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const SUBSCRIPTION_COLUMNS: &str =
    "seq, id, url, event_types, description, active, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    seq: i64,
    id: Uuid,
    event_id: Uuid,
    event_type: String,
    subscription_id: Uuid,
    shipment_id: Uuid,
    status: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> Result<DeliveryRecord, StoreError> {
        let status = DeliveryStatus::parse(&row.status)
            .ok_or_else(|| StoreError::corrupt(format!("unknown status {:?}", row.status)))?;
        Ok(DeliveryRecord {
            id: row.id,
            event_id: row.event_id,
            event_type: row.event_type,
            subscription_id: row.subscription_id,
            shipment_id: row.shipment_id,
            status,
            attempt_count: row.attempts,
            next_attempt_at: (status == DeliveryStatus::Pending).then_some(row.next_attempt_at),
            last_error: row.last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            attempts: None,
        })
    }
}

const DELIVERY_COLUMNS: &str = "d.seq, d.id, d.event_id, o.event_type, d.subscription_id, \
     d.shipment_id, d.status, d.attempts, d.next_attempt_at, d.last_error, d.created_at, \
     d.updated_at";

/// An outbound event not yet fanned out.
#[derive(sqlx::FromRow)]
struct Unfanned {
    seq: i64,
    id: Uuid,
    shipment_id: Uuid,
    event_type: String,
}

impl Store {
    /// Woken after every commit of this instance that wrote outbound events.
    pub fn announced(&self) -> &std::sync::Arc<tokio::sync::Notify> {
        match self {
            Store::Sqlite(store) => &store.announced,
            Store::Postgres(store) => &store.announced,
        }
    }

    pub async fn create_subscription(
        &self,
        new: &NewSubscription,
        secret: &str,
    ) -> Result<Subscription, StoreError> {
        let now = super::now();
        let sql = format!(
            "INSERT INTO subscriptions (id, url, event_types, description, secret, active, \
                                        created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, true, $6, $6) RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let row: SubscriptionRow = in_transaction!(self, "BEGIN", |tx| {
            let row = sqlx::query_as(&sql)
                .bind(Uuid::now_v7())
                .bind(&new.url)
                .bind(Json(&new.event_types))
                .bind(new.description.as_deref())
                .bind(secret)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        });
        Ok(row.into())
    }

    pub async fn subscriptions(&self, page: PageRequest) -> Result<Page<Subscription>, StoreError> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
             WHERE ($1 IS NULL OR seq < $1) ORDER BY seq DESC LIMIT $2"
        );
        let rows: Vec<SubscriptionRow> = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_as(&sql)
                .bind(page.after.map(|cursor| cursor.before_seq))
                .bind(i64::from(page.limit) + 1)
                .fetch_all(&mut *conn)
                .await?
        });
        paginate(rows, page.limit, |row| row.seq).try_map(|row| Ok(row.into()))
    }

    pub async fn subscription(&self, id: Uuid) -> Result<Option<Subscription>, StoreError> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
        let row: Option<SubscriptionRow> = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        });
        Ok(row.map(Subscription::from))
    }

    pub async fn subscription_secret(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_scalar("SELECT secret FROM subscriptions WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        }))
    }

    pub async fn update_subscription(
        &self,
        id: Uuid,
        patch: &SubscriptionPatch,
    ) -> Result<Option<Subscription>, StoreError> {
        let sql = format!(
            "UPDATE subscriptions SET url = COALESCE($2, url), \
                 event_types = COALESCE($3, event_types), active = COALESCE($4, active), \
                 updated_at = $5 \
             WHERE id = $1 RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let row: Option<SubscriptionRow> = in_transaction!(self, "BEGIN", |tx| {
            let row = sqlx::query_as(&sql)
                .bind(id)
                .bind(patch.url.as_deref())
                .bind(patch.event_types.as_ref().map(Json))
                .bind(patch.active)
                .bind(super::now())
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        });
        if patch.active == Some(true) {
            // Deliveries held back while it was inactive are due now.
            self.announced().notify_one();
        }
        Ok(row.map(Subscription::from))
    }

    /// Deletes the subscription and its deliveries; whether it existed.
    pub async fn delete_subscription(&self, id: Uuid) -> Result<bool, StoreError> {
        Ok(in_transaction!(self, "BEGIN", |tx| {
            sqlx::query("DELETE FROM deliveries WHERE subscription_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            deleted == 1
        }))
    }

    /// Makes the deliveries of up to `limit` outbound events, oldest first: one per active
    /// subscription that wants the event's type. Returns how many events were fanned out.
    pub async fn fan_out(&self, limit: u32) -> Result<usize, StoreError> {
        let sql = Dialect::of(self);
        let begin = format!("BEGIN; {WITHOUT_FLUSH}; SELECT pg_advisory_xact_lock({FAN_OUT_LOCK})");
        let subscriptions_sql =
            format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE active");
        // Rows go in as one JSON array, in its order: the order of their seq.
        let insert = format!(
            "INSERT INTO deliveries (id, event_id, subscription_id, shipment_id, status, \
                                     attempts, next_attempt_at, created_at, updated_at) \
             SELECT {}, {}, {}, {}, 'pending', 0, $2, $2, $2 FROM {}",
            sql.uuid("value ->> 0"),
            sql.uuid("value ->> 1"),
            sql.uuid("value ->> 2"),
            sql.uuid("value ->> 3"),
            sql.json_rows(1),
        );
        let mark = format!(
            "UPDATE outbox_events SET fanned_out = true WHERE seq IN ({})",
            sql.json_values(1, "bigint")
        );
        Ok(in_transaction!(self, begin.clone(), |tx| {
            let events: Vec<Unfanned> = sqlx::query_as(
                "SELECT seq, id, shipment_id, event_type FROM outbox_events \
                 WHERE NOT fanned_out ORDER BY seq LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            if events.is_empty() {
                return Ok(0);
            }
            let subscriptions: Vec<Subscription> =
                sqlx::query_as::<_, SubscriptionRow>(&subscriptions_sql)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(Subscription::from)
                    .collect();
            let mut rows = Vec::new();
            for event in &events {
                let change = ShipmentChange::parse(&event.event_type).ok_or_else(|| {
                    StoreError::corrupt(format!("unknown event type {:?}", event.event_type))
                })?;
                for subscription in subscriptions.iter().filter(|s| s.wants(change)) {
                    rows.push(serde_json::json!([
                        Uuid::now_v7().simple().to_string(),
                        event.id.simple().to_string(),
                        subscription.id.simple().to_string(),
                        event.shipment_id.simple().to_string(),
                    ]));
                }
            }
            if !rows.is_empty() {
                sqlx::query(&insert)
                    .bind(json_text(&rows))
                    .bind(super::now())
                    .execute(&mut *tx)
                    .await?;
            }
            let seqs: Vec<i64> = events.iter().map(|event| event.seq).collect();
            sqlx::query(&mark)
                .bind(json_text(&seqs))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            events.len()
        }))
    }

    /// Leases up to `limit` due deliveries until `now + lease`: for each subscription and
    /// shipment only the oldest pending one, so a later change waits for an earlier one. On
    /// PostgreSQL several instances claim side by side (`SKIP LOCKED`).
    pub async fn claim_deliveries(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let sql = Dialect::of(self);
        let now = super::now();
        let until = now + lease;
        // The due deliveries in the order of the due index, stopping at `limit`; only then
        // the bodies, URLs and secrets of those few.
        let select = format!(
            "SELECT d.id, d.attempts, o.id AS event_id, o.body, s.url, s.secret, \
                    s.id AS subscription_id \
             FROM (SELECT d.id, d.attempts, d.event_id, d.subscription_id FROM deliveries d \
                   WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
                     AND (d.leased_until IS NULL OR d.leased_until < $1) \
                     AND EXISTS (SELECT 1 FROM subscriptions a \
                                 WHERE a.id = d.subscription_id AND a.active) \
                     AND NOT EXISTS (SELECT 1 FROM deliveries e \
                                     WHERE e.subscription_id = d.subscription_id \
                                       AND e.shipment_id = d.shipment_id \
                                       AND e.status = 'pending' AND e.seq < d.seq) \
                   ORDER BY d.next_attempt_at LIMIT $2 {}) AS d \
             JOIN subscriptions s ON s.id = d.subscription_id \
             JOIN outbox_events o ON o.id = d.event_id",
            sql.skip_locked("d")
        );
        let lease_sql = format!(
            "UPDATE deliveries SET leased_until = $2 WHERE id IN ({})",
            sql.json_values(1, "uuid")
        );
        // Along the due index, in its order, stopping at `limit`: whatever the backlog, never
        // a sort of every due delivery (which the planner picks while it has no statistics).
        // And planned for each claim's own time and limit: with the generic plan PostgreSQL
        // switches to after five runs, claims were seen taking ~200 ms each once thousands of
        // deliveries waited, and the dispatcher fell further behind the longer it was behind.
        let begin = format!(
            "BEGIN; {WITHOUT_FLUSH}; SET LOCAL enable_bitmapscan = off; \
             SET LOCAL enable_sort = off; SET LOCAL plan_cache_mode = force_custom_plan"
        );
        Ok(in_transaction!(self, begin, |tx| {
            let claimed: Vec<Claimed> = sqlx::query_as(&select)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            if !claimed.is_empty() {
                let ids: Vec<String> = claimed.iter().map(|c| c.id.simple().to_string()).collect();
                sqlx::query(&lease_sql)
                    .bind(json_text(&ids))
                    .bind(until)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            claimed
        }))
    }

    /// Writes back what the attempts decided, in one transaction.
    pub async fn settle(&self, settlements: &[Settlement]) -> Result<(), StoreError> {
        if settlements.is_empty() {
            return Ok(());
        }
        let sql = Dialect::of(self);
        let update = format!(
            "UPDATE deliveries SET status = r.status, attempts = r.attempts, \
                 next_attempt_at = r.next_attempt_at, leased_until = NULL, \
                 last_error = r.error, updated_at = $2 \
             FROM (SELECT {} AS id, value ->> 1 AS status, {} AS attempts, \
                          {} AS next_attempt_at, value ->> 3 AS error FROM {}) AS r \
             WHERE deliveries.id = r.id",
            sql.uuid("value ->> 0"),
            sql.cast("value ->> 2", "int"),
            sql.time("value ->> 4"),
            sql.json_rows(1),
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
        let deactivate = format!(
            "UPDATE subscriptions SET active = false, updated_at = $2 WHERE id IN ({})",
            sql.json_values(1, "uuid")
        );
        let mut updates = Vec::new();
        let mut tries = Vec::new();
        let mut gone = Vec::new();
        for settled in settlements {
            let id = settled.id.simple().to_string();
            updates.push(serde_json::json!([
                id,
                settled.status.as_str(),
                settled.attempts,
                settled.error,
                time_text(settled.next_attempt_at),
            ]));
            tries.push(serde_json::json!([
                id,
                time_text(settled.attempted_at),
                settled.error,
                settled.status_code,
                i64::try_from(settled.duration.as_millis()).unwrap_or(i64::MAX),
            ]));
            if settled.deactivate {
                gone.push(settled.subscription_id.simple().to_string());
            }
        }
        let now = super::now();
        in_transaction!(self, "BEGIN", |tx| {
            sqlx::query(&update)
                .bind(json_text(&updates))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&attempts)
                .bind(json_text(&tries))
                .execute(&mut *tx)
                .await?;
            if !gone.is_empty() {
                sqlx::query(&deactivate)
                    .bind(json_text(&gone))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        page: PageRequest,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN outbox_events o ON o.id = d.event_id \
             WHERE ($1 IS NULL OR d.subscription_id = $1) AND ($2 IS NULL OR d.status = $2) \
               AND ($3 IS NULL OR d.seq < $3) \
             ORDER BY d.seq DESC LIMIT $4"
        );
        let rows: Vec<DeliveryRow> = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_as(&sql)
                .bind(filter.subscription_id)
                .bind(filter.status.map(DeliveryStatus::as_str))
                .bind(page.after.map(|cursor| cursor.before_seq))
                .bind(i64::from(page.limit) + 1)
                .fetch_all(&mut *conn)
                .await?
        });
        paginate(rows, page.limit, |row| row.seq).try_map(DeliveryRecord::try_from)
    }

    /// One delivery with every attempt made, oldest first.
    pub async fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN outbox_events o ON o.id = d.event_id \
             WHERE d.id = $1"
        );
        let (row, attempts): (Option<DeliveryRow>, Vec<AttemptRecord>) = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            let row = sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            let attempts = sqlx::query_as(
                "SELECT attempted_at, status_code, error, duration_ms FROM delivery_attempts \
                 WHERE delivery_id = $1 ORDER BY attempted_at",
            )
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
            (row, attempts)
        });
        let Some(row) = row else {
            return Ok(None);
        };
        let mut record = DeliveryRecord::try_from(row)?;
        record.attempts = Some(attempts);
        Ok(Some(record))
    }

    /// Queues failed deliveries again, with a fresh count of retries: one by id, or every
    /// failed delivery of a subscription made since a time. Returns how many were queued.
    pub async fn requeue(
        &self,
        delivery: Option<Uuid>,
        subscription: Option<(Uuid, DateTime<Utc>)>,
    ) -> Result<u64, StoreError> {
        let now = super::now();
        let (subscription_id, since) = subscription.unzip();
        let queued = in_transaction!(self, "BEGIN", |tx| {
            let queued = sqlx::query(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                     leased_until = NULL, updated_at = $1 \
                 WHERE status = 'failed' AND ($2 IS NULL OR id = $2) \
                   AND ($3 IS NULL OR subscription_id = $3) AND ($4 IS NULL OR created_at >= $4)",
            )
            .bind(now)
            .bind(delivery)
            .bind(subscription_id)
            .bind(since)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            queued
        });
        if queued > 0 {
            self.announced().notify_one();
        }
        Ok(queued)
    }

    pub async fn delivery_stats(&self) -> Result<DeliveryStats, StoreError> {
        let (pending, oldest): (i64, Option<DateTime<Utc>>) = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_as(
                "SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE status = 'pending'",
            )
            .fetch_one(&mut *conn)
            .await?
        });
        Ok(DeliveryStats {
            pending,
            oldest_pending_age: oldest.and_then(|at| (super::now() - at).to_std().ok()),
        })
    }
}

/// The few spellings that differ between the backends, so that the statements above are
/// written once. Multi-row statements take their rows as one JSON array parameter.
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn of(store: &Store) -> Dialect {
        match store {
            Store::Sqlite(_) => Dialect::Sqlite,
            Store::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The elements of the JSON array `$n`, each as `value`.
    fn json_rows(self, n: u8) -> String {
        match self {
            Dialect::Sqlite => format!("json_each(${n})"),
            Dialect::Postgres => format!("jsonb_array_elements(${n}::jsonb) AS r(value)"),
        }
    }

    /// The elements of the JSON array `$n` as a list of `kind` ("uuid" or "bigint").
    fn json_values(self, n: u8, kind: &str) -> String {
        match (self, kind) {
            (Dialect::Sqlite, "uuid") => format!("SELECT unhex(value) FROM json_each(${n})"),
            (Dialect::Sqlite, _) => format!("SELECT value FROM json_each(${n})"),
            (Dialect::Postgres, kind) => {
                format!(
                    "SELECT value::{kind} FROM jsonb_array_elements_text(${n}::jsonb) AS v(value)"
                )
            }
        }
    }

    /// A UUID written as 32 hex digits.
    fn uuid(self, text: &str) -> String {
        match self {
            Dialect::Sqlite => format!("unhex({text})"),
            Dialect::Postgres => format!("({text})::uuid"),
        }
    }

    fn time(self, text: &str) -> String {
        match self {
            Dialect::Sqlite => text.to_owned(),
            Dialect::Postgres => format!("({text})::timestamptz"),
        }
    }

    fn cast(self, text: &str, kind: &str) -> String {
        match self {
            Dialect::Sqlite => text.to_owned(),
            Dialect::Postgres => format!("({text})::{kind}"),
        }
    }

    /// Rows claimed by one instance are skipped by the others (SQLite has one dispatcher).
    fn skip_locked(self, table: &str) -> String {
        match self {
            Dialect::Sqlite => String::new(),
            Dialect::Postgres => format!("FOR UPDATE OF {table} SKIP LOCKED"),
        }
    }
}
