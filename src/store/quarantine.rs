//! Quarantined events: kept as they came (one entry per distinct body and signed id, counted
//! at each delivery), listed and read by operators, and marked replayed or discarded as they decide.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::page::{filter, paginate};
use super::{Page, PageRequest, Store, StoreError, Write};
use crate::config::QuarantineLimits;
use crate::domain::quarantine::entry_key;
use crate::domain::QuarantineStatus;

/// An authentic event that could not be applied, as it arrived.
#[derive(Debug)]
pub struct Arrival<'a> {
    pub body: &'a [u8],
    /// `hex`, `standard` or a shop platform's name: how its signature was made.
    pub scheme: &'static str,
    /// The signed Standard Webhooks id it came with.
    pub webhook_id: Option<&'a str>,
    /// A shop platform's headers its mapping reads, as JSON.
    pub platform_headers: Option<&'a str>,
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
    /// `QUARANTINE_MAX_HELD` entries or `QUARANTINE_MAX_BYTES` bytes are held already: not
    /// kept.
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
    pub platform_headers: Option<Value>,
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
    platform_headers: Option<String>,
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
            platform_headers: row
                .platform_headers
                .map(|headers| serde_json::from_str(&headers))
                .transpose()
                .map_err(|error| StoreError::corrupt(format!("platform headers: {error}")))?,
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
const ENTRY_COLUMNS: &str =
    "seq, id, status, reason, problem, scheme, webhook_id, platform_headers, deliveries, \
     first_received_at, last_received_at, correction, event_id, resolved_at";

impl Store {
    /// Keeps `arrival`: counted on the entry of the same bytes under the same signed id, else
    /// a new entry while the held entries stay within `limits` (read and kept by one writer
    /// at a time, so concurrent arrivals on several instances never pass them).
    pub async fn quarantine(
        &self,
        arrival: &Arrival<'_>,
        limits: QuarantineLimits,
    ) -> Result<Quarantined, StoreError> {
        // A platform's headers say which event the body is, as a signed id does.
        let key = entry_key(
            arrival.body,
            arrival.platform_headers.or(arrival.webhook_id),
        );
        let now = super::now();
        let insert = "INSERT INTO quarantine (id, body_key, body, body_bytes, scheme, webhook_id, \
                                              platform_headers, reason, problem, status, \
                                              deliveries, first_received_at, last_received_at) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11) RETURNING id";
        let size = i64::try_from(arrival.body.len()).unwrap_or(i64::MAX);
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Quarantine).await?;
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
            let (held, bytes): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), CAST(COALESCE(SUM(body_bytes), 0) AS BIGINT) FROM quarantine \
                 WHERE status = $1",
            )
            .bind(QuarantineStatus::Held.as_str())
            .fetch_one(tx.conn())
            .await?;
            let after = |now: i64, more: i64| u64::try_from(now.saturating_add(more)).unwrap_or(0);
            if after(held, 1) > limits.held || after(bytes, size) > limits.bytes {
                return Ok(Quarantined::Full);
            }
            let id: Uuid = sqlx::query_scalar(insert)
                .bind(Uuid::now_v7())
                .bind(&key)
                .bind(arrival.body)
                .bind(size)
                .bind(arrival.scheme)
                .bind(arrival.webhook_id)
                .bind(arrival.platform_headers)
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
            "SELECT {ENTRY_COLUMNS}, NULL AS body FROM quarantine WHERE {} AND {} \
             ORDER BY seq DESC LIMIT $3",
            filter(status.is_some(), "status = $1", 1),
            page.before("seq", 2),
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

    /// Takes a held entry for one replay until `until`: no other replay and no discard of it
    /// meanwhile. `None` when it is not held, or another replay holds it now.
    pub async fn claim_replay(
        &self,
        id: Uuid,
        until: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        let claim = Uuid::now_v7();
        let now = super::now();
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let claimed = sqlx::query(
                "UPDATE quarantine SET replay_claim = $2, replay_until = $3 \
                 WHERE id = $1 AND status = $4 AND (replay_until IS NULL OR replay_until < $5)",
            )
            .bind(id)
            .bind(claim)
            .bind(until)
            .bind(QuarantineStatus::Held.as_str())
            .bind(now)
            .execute(tx.conn())
            .await?
            .rows_affected();
            tx.commit().await?;
            (claimed == 1).then_some(claim)
        }))
    }

    /// Ends a replay's claim: marked replayed, with the event id it applied and the
    /// correction it applied instead of the body (`applied`), or held as before (`None`: it
    /// could not be applied). Whether the claim still held.
    pub async fn end_replay(
        &self,
        id: Uuid,
        claim: Uuid,
        applied: Option<(&str, Option<&Value>)>,
    ) -> Result<bool, StoreError> {
        let (status, event_id, correction) = match applied {
            Some((event_id, correction)) => {
                (QuarantineStatus::Replayed, Some(event_id), correction)
            }
            None => (QuarantineStatus::Held, None, None),
        };
        let resolved = (status != QuarantineStatus::Held).then(super::now);
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let ended = sqlx::query(
                "UPDATE quarantine SET status = $3, event_id = COALESCE($4, event_id), \
                     correction = COALESCE($5, correction), resolved_at = $6, \
                     replay_claim = NULL, replay_until = NULL \
                 WHERE id = $1 AND replay_claim = $2",
            )
            .bind(id)
            .bind(claim)
            .bind(status.as_str())
            .bind(event_id)
            .bind(correction.map(Json))
            .bind(resolved)
            .execute(tx.conn())
            .await?
            .rows_affected();
            tx.commit().await?;
            ended == 1
        }))
    }

    /// Marks an entry discarded; whether it was one that may be discarded (and no replay
    /// holds it).
    pub async fn discard_quarantined(&self, id: Uuid) -> Result<bool, StoreError> {
        let discardable = allowed(QuarantineStatus::can_discard);
        let now = super::now();
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let marked = sqlx::query(&format!(
                "UPDATE quarantine SET status = $2, resolved_at = COALESCE(resolved_at, $3) \
                 WHERE id = $1 AND status IN ({discardable}) \
                   AND (replay_until IS NULL OR replay_until < $3)"
            ))
            .bind(id)
            .bind(QuarantineStatus::Discarded.as_str())
            .bind(now)
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
