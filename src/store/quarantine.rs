//! Quarantined events: kept as they came (one entry per distinct body, counted at each
//! delivery), listed and read by operators, and marked replayed or discarded as they decide.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::page::paginate;
use super::{Page, PageRequest, Store, StoreError, Write};
use crate::domain::quarantine::body_key;
use crate::domain::QuarantineStatus;

/// An authentic event that could not be applied, as it arrived.
#[derive(Debug)]
pub struct Arrival<'a> {
    pub body: &'a [u8],
    /// `hex` or `standard`: how its signature was made.
    pub scheme: &'static str,
    /// The signed Standard Webhooks id it came with.
    pub webhook_id: Option<&'a str>,
    /// The problem's kind (`malformed-json`, `invalid-event`).
    pub reason: &'static str,
    /// The problem it would have been answered with.
    pub problem: &'a Value,
}

/// Where an arrival went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quarantined {
    /// Kept: a new entry, or the entry of the same bytes, counted once more.
    Kept(Uuid),
    /// `QUARANTINE_MAX_HELD` entries are held already: not kept.
    Full,
}

/// A quarantined event as the API serves it; `body` only when one entry is asked for.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineEntry {
    pub id: Uuid,
    pub status: QuarantineStatus,
    pub reason: String,
    pub problem: Value,
    pub scheme: String,
    pub webhook_id: Option<String>,
    pub deliveries: i64,
    pub first_received_at: DateTime<Utc>,
    pub last_received_at: DateTime<Utc>,
    pub correction: Option<Value>,
    pub event_id: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    seq: i64,
    id: Uuid,
    status: String,
    reason: String,
    problem: Json<Value>,
    scheme: String,
    webhook_id: Option<String>,
    deliveries: i64,
    first_received_at: DateTime<Utc>,
    last_received_at: DateTime<Utc>,
    correction: Option<Json<Value>>,
    event_id: Option<String>,
    resolved_at: Option<DateTime<Utc>>,
    body: Option<Vec<u8>>,
}

impl TryFrom<EntryRow> for QuarantineEntry {
    type Error = StoreError;

    fn try_from(row: EntryRow) -> Result<QuarantineEntry, StoreError> {
        Ok(QuarantineEntry {
            id: row.id,
            status: QuarantineStatus::parse(&row.status)
                .ok_or_else(|| StoreError::corrupt(format!("unknown status {:?}", row.status)))?,
            reason: row.reason,
            problem: row.problem.0,
            scheme: row.scheme,
            webhook_id: row.webhook_id,
            deliveries: row.deliveries,
            first_received_at: row.first_received_at,
            last_received_at: row.last_received_at,
            correction: row.correction.map(|correction| correction.0),
            event_id: row.event_id,
            resolved_at: row.resolved_at,
            body: row.body,
        })
    }
}

/// Every column but the body (a list never carries bodies, which may be large).
const ENTRY_COLUMNS: &str = "seq, id, status, reason, problem, scheme, webhook_id, deliveries, \
     first_received_at, last_received_at, correction, event_id, resolved_at";

impl Store {
    /// Keeps `arrival`: counted on the entry of the same bytes, else a new entry while fewer
    /// than `max_held` are held.
    pub async fn quarantine(
        &self,
        arrival: &Arrival<'_>,
        max_held: u64,
    ) -> Result<Quarantined, StoreError> {
        let key = body_key(arrival.body);
        let now = super::now();
        let insert = "INSERT INTO quarantine (id, body_key, body, scheme, webhook_id, reason, \
                                              problem, status, deliveries, first_received_at, \
                                              last_received_at) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) \
                      ON CONFLICT (body_key) DO UPDATE \
                      SET deliveries = quarantine.deliveries + 1, \
                          last_received_at = excluded.last_received_at \
                      RETURNING id";
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let counted: Option<Uuid> = sqlx::query_scalar(
                "UPDATE quarantine SET deliveries = deliveries + 1, last_received_at = $2 \
                 WHERE body_key = $1 RETURNING id",
            )
            .bind(&key)
            .bind(now)
            .fetch_optional(tx.conn())
            .await?;
            if let Some(id) = counted {
                tx.commit().await?;
                return Ok(Quarantined::Kept(id));
            }
            let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quarantine WHERE status = $1")
                .bind(QuarantineStatus::Held.as_str())
                .fetch_one(tx.conn())
                .await?;
            if u64::try_from(held).unwrap_or_default() >= max_held {
                return Ok(Quarantined::Full);
            }
            let id: Uuid = sqlx::query_scalar(insert)
                .bind(Uuid::now_v7())
                .bind(&key)
                .bind(arrival.body)
                .bind(arrival.scheme)
                .bind(arrival.webhook_id)
                .bind(arrival.reason)
                .bind(Json(arrival.problem))
                .bind(QuarantineStatus::Held.as_str())
                .bind(now)
                .fetch_one(tx.conn())
                .await?;
            tx.commit().await?;
            Quarantined::Kept(id)
        }))
    }

    pub async fn quarantined_events(
        &self,
        status: Option<QuarantineStatus>,
        page: PageRequest,
    ) -> Result<Page<QuarantineEntry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS}, NULL AS body FROM quarantine \
             WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR seq < $2) \
             ORDER BY seq DESC LIMIT $3"
        );
        let rows: Vec<EntryRow> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(&sql)
                .bind(status.map(QuarantineStatus::as_str))
                .bind(page.before_seq())
                .bind(page.fetch())
                .fetch_all(&mut *conn)
                .await?
        });
        paginate(rows, page.limit, |row| row.seq).try_map(QuarantineEntry::try_from)
    }

    /// One entry, with its body.
    pub async fn quarantined_event(&self, id: Uuid) -> Result<Option<QuarantineEntry>, StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS}, body FROM quarantine WHERE id = $1");
        let row: Option<EntryRow> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(QuarantineEntry::try_from).transpose()
    }

    /// Marks an entry replayed, with the event id the replay applied and the correction it
    /// applied instead of the body; whether it was one that may be replayed.
    pub async fn mark_replayed(
        &self,
        id: Uuid,
        event_id: &str,
        correction: Option<&Value>,
    ) -> Result<bool, StoreError> {
        let replayable = allowed(QuarantineStatus::can_replay);
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let marked = sqlx::query(&format!(
                "UPDATE quarantine SET status = $2, event_id = $3, \
                     correction = COALESCE($4, correction), \
                     resolved_at = COALESCE(resolved_at, $5) \
                 WHERE id = $1 AND status IN ({replayable})"
            ))
            .bind(id)
            .bind(QuarantineStatus::Replayed.as_str())
            .bind(event_id)
            .bind(correction.map(Json))
            .bind(super::now())
            .execute(tx.conn())
            .await?
            .rows_affected();
            tx.commit().await?;
            marked == 1
        }))
    }

    /// Marks an entry discarded; whether it was one that may be discarded.
    pub async fn discard_quarantined(&self, id: Uuid) -> Result<bool, StoreError> {
        let discardable = allowed(QuarantineStatus::can_discard);
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let marked = sqlx::query(&format!(
                "UPDATE quarantine SET status = $2, resolved_at = COALESCE(resolved_at, $3) \
                 WHERE id = $1 AND status IN ({discardable})"
            ))
            .bind(id)
            .bind(QuarantineStatus::Discarded.as_str())
            .bind(super::now())
            .execute(tx.conn())
            .await?
            .rows_affected();
            tx.commit().await?;
            marked == 1
        }))
    }

    /// How many entries are held.
    pub async fn quarantine_held(&self) -> Result<i64, StoreError> {
        Ok(with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_scalar("SELECT COUNT(*) FROM quarantine WHERE status = $1")
                .bind(QuarantineStatus::Held.as_str())
                .fetch_one(&mut *conn)
                .await?
        }))
    }
}

/// The statuses `rule` allows, as a list for `IN (...)`: literals of the domain's own names.
fn allowed(rule: fn(QuarantineStatus) -> bool) -> String {
    QuarantineStatus::ALL
        .into_iter()
        .filter(|status| rule(*status))
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
