//! Deliveries as operators see them: listed, inspected with every attempt, and a failed one
//! queued again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::page::{filter, paginate};
use super::{Page, PageRequest, Store, StoreError, Write};
use crate::domain::DeliveryStatus;

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub subscription_id: Option<Uuid>,
    pub shipment_id: Option<Uuid>,
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

impl Store {
    pub async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        page: PageRequest,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let sql = deliveries_sql(filter, page);
        let rows: Vec<DeliveryRow> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(&sql)
                .bind(filter.subscription_id)
                .bind(filter.status.map(DeliveryStatus::as_str))
                .bind(page.before_seq())
                .bind(page.fetch())
                .bind(filter.shipment_id)
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
        let (row, attempts): (Option<DeliveryRow>, Vec<AttemptRecord>) =
            with_backend!(self, |db| {
                let mut conn = db.reader().await?;
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

    /// Queues deliveries that may be queued again ([`DeliveryStatus::REQUEUEABLE`]) of active
    /// subscriptions with a fresh count of retries: one by id, or every one of a subscription
    /// made since a time. Returns how many were queued. An attempt still in flight for one of
    /// them holds a claim no longer: its result changes nothing.
    pub async fn requeue(
        &self,
        delivery: Option<Uuid>,
        subscription: Option<(Uuid, DateTime<Utc>)>,
    ) -> Result<u64, StoreError> {
        let now = super::now();
        let (subscription_id, since) = subscription.unzip();
        let queued = with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let queued = sqlx::query(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                     leased_until = NULL, claim = NULL, updated_at = $1 \
                 WHERE status = $5 AND ($2 IS NULL OR id = $2) \
                   AND ($3 IS NULL OR subscription_id = $3) AND ($4 IS NULL OR created_at >= $4) \
                   AND subscription_id IN (SELECT id FROM subscriptions WHERE active)",
            )
            .bind(now)
            .bind(delivery)
            .bind(subscription_id)
            .bind(since)
            .bind(DeliveryStatus::REQUEUEABLE.as_str())
            .execute(tx.conn())
            .await?
            .rows_affected();
            tx.commit().await?;
            queued
        });
        if queued > 0 {
            self.dispatch_wakeup().notify_one();
        }
        Ok(queued)
    }

    pub async fn delivery_stats(&self) -> Result<DeliveryStats, StoreError> {
        let (pending, oldest): (i64, Option<DateTime<Utc>>) = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
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

/// A page of deliveries, newest first: `$1` subscription, `$2` status, `$3` the cursor's
/// position, `$4` how many, `$5` shipment.
fn deliveries_sql(given: &DeliveryFilter, page: PageRequest) -> String {
    format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN outbox_events o ON o.id = d.event_id \
         WHERE {} AND {} AND {} AND {} \
         ORDER BY d.seq DESC LIMIT $4",
        filter(given.subscription_id.is_some(), "d.subscription_id = $1", 1),
        // The status written out, so that the planner may take the index of failed ones.
        given.status.map_or("$2 IS NULL".to_owned(), |status| {
            format!("d.status = '{}' AND $2 IS NOT NULL", status.as_str())
        }),
        page.before("d.seq", 3),
        filter(given.shipment_id.is_some(), "d.shipment_id = $5", 5),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite_plan;

    #[test]
    fn sqlite_reads_a_shipments_and_the_failed_deliveries_along_their_indexes() {
        let shipment = DeliveryFilter {
            shipment_id: Some(Uuid::nil()),
            ..DeliveryFilter::default()
        };
        let page = PageRequest {
            limit: 200,
            after: None,
        };
        assert_eq!(
            sqlite_plan(&deliveries_sql(&shipment, page))[0],
            "SEARCH d USING INDEX deliveries_shipment_idx (shipment_id=?)"
        );
        let failed = DeliveryFilter {
            status: Some(DeliveryStatus::Failed),
            ..DeliveryFilter::default()
        };
        assert_eq!(
            sqlite_plan(&deliveries_sql(&failed, page))[0],
            "SCAN d USING INDEX deliveries_failed_idx"
        );
    }
}
