//! What the service reports of itself: the counts `status` prints and the console's overview
//! shows, and the recent activity minute by minute.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::domain::QuarantineStatus;

/// What `shipping-service status` prints.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// Whether some counts are the planner's estimates ([`Counting::Estimated`]).
    pub approximate: bool,
    pub shipments: Vec<(String, i64)>,
    pub recent_events: Vec<(String, i64)>,
    pub pending_deliveries: i64,
    pub failed_deliveries: i64,
    /// `active`, or why inactive (`failing`, `gone`, `operator`), with how many.
    pub subscriptions: Vec<(String, i64)>,
    /// Quarantined events held, waiting for an operator.
    pub quarantine_held: i64,
    pub tables: Vec<TableStats>,
}

/// How much a table holds: its rows and its oldest record (what retention watches).
#[derive(Debug, Clone)]
pub struct TableStats {
    pub table: &'static str,
    pub rows: i64,
    /// Not read where the rows are estimated.
    pub oldest: Option<DateTime<Utc>>,
    /// The planner's estimate, not a count.
    pub estimated: bool,
}

/// How a status report counts a large table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Every row (`shipping-service status`: an operator at a terminal waits for it).
    Exact,
    /// On PostgreSQL, a table the planner reckons larger than [`ESTIMATE_ABOVE`] rows is not
    /// counted: its rows and the split of its statuses are the planner's estimates (a page
    /// must answer in milliseconds at millions of rows). Small tables, and SQLite, are counted.
    Estimated,
}

/// Rows past which [`Counting::Estimated`] does not count a table.
const ESTIMATE_ABOVE: f64 = 100_000.0;

/// The planner's rows of a table (-1 when it has none: never analysed or vacuumed).
const PG_ROWS: &str = "SELECT CAST(reltuples AS BIGINT) FROM pg_class \
     WHERE oid = to_regclass($1)";

/// The planner's rows of each common value of a column: its statistics' frequencies times the
/// table's rows.
const PG_SPLIT: &str = "SELECT v.value, CAST(round(v.freq * c.reltuples) AS BIGINT) \
     FROM pg_stats s JOIN pg_class c ON c.oid = to_regclass($1), \
          unnest(CAST(CAST(s.most_common_vals AS TEXT) AS TEXT[]), s.most_common_freqs) \
            AS v(value, freq) \
     WHERE s.schemaname = current_schema() AND s.tablename = $1 AND s.attname = $2 \
     ORDER BY v.value";

/// Each table with the time that dates its rows.
const TABLES: [(&str, &str); 8] = [
    ("shipments", "created_at"),
    ("processed_events", "received_at"),
    ("shipment_moves", "moved_at"),
    ("outbox_events", "created_at"),
    ("deliveries", "created_at"),
    ("delivery_attempts", "attempted_at"),
    ("subscriptions", "created_at"),
    ("quarantine", "first_received_at"),
];

/// What happened in a recent stretch of time, minute by minute (`YYYY-MM-DDTHH:MM`, UTC).
#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Webhook events recorded, by outcome.
    pub events: Vec<(String, String, i64)>,
    /// Delivery attempts, by whether they delivered.
    pub attempts: Vec<(String, bool, i64)>,
}

impl Store {
    /// Events and delivery attempts since `since`, counted by minute.
    pub async fn activity(&self, since: DateTime<Utc>) -> Result<Activity, StoreError> {
        let first = self.first_event_since(since).await?.unwrap_or(i64::MAX);
        let dialect = self.dialect();
        let events = format!(
            "SELECT {minute} AS minute, outcome, COUNT(*) FROM processed_events \
             WHERE seq >= $2 AND received_at >= $1 GROUP BY 1, 2",
            minute = dialect.minute("received_at")
        );
        let attempts = format!(
            "SELECT {minute} AS minute, \
                    (status_code IS NOT NULL AND status_code BETWEEN 200 AND 299) AS delivered, \
                    COUNT(*) \
             FROM delivery_attempts WHERE attempted_at >= $1 GROUP BY 1, 2",
            minute = dialect.minute("attempted_at")
        );
        Ok(with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            let events = sqlx::query_as(&events)
                .bind(since)
                .bind(first)
                .fetch_all(&mut *conn)
                .await?;
            let attempts = sqlx::query_as(&attempts)
                .bind(since)
                .fetch_all(&mut *conn)
                .await?;
            Activity { events, attempts }
        }))
    }

    /// The position of the first event recorded at or after `since`, found by bisecting
    /// positions (events are recorded in about the order of their time), so that the recent
    /// events are read along the position's index instead of scanning every event for its
    /// time. `None` when none is that recent.
    async fn first_event_since(&self, since: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        let next = "SELECT seq, received_at FROM processed_events WHERE seq >= $1 \
                    ORDER BY seq LIMIT 1";
        Ok(with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            let (low, high): (Option<i64>, Option<i64>) =
                sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM processed_events")
                    .fetch_one(&mut *conn)
                    .await?;
            let (Some(mut low), Some(mut high)) = (low, high) else {
                return Ok(None);
            };
            let last: DateTime<Utc> =
                sqlx::query_scalar("SELECT received_at FROM processed_events WHERE seq = $1")
                    .bind(high)
                    .fetch_one(&mut *conn)
                    .await?;
            if last < since {
                return Ok(None);
            }
            // A position at or before the first recent event, after every older one.
            while low < high {
                let middle = low + (high - low) / 2;
                let (seq, at): (i64, DateTime<Utc>) = sqlx::query_as(next)
                    .bind(middle)
                    .fetch_one(&mut *conn)
                    .await?;
                // No event sits between `middle` and `seq`: the first recent one is at or
                // before `middle` (or is `seq` itself, which `seq >= middle` still finds).
                if at >= since {
                    high = middle;
                } else {
                    low = seq + 1;
                }
            }
            Some(low)
        }))
    }

    /// What `shipping-service status` and the console's overview show, counted as `counting`
    /// says.
    pub async fn status(&self, counting: Counting) -> Result<StatusReport, StoreError> {
        let since = super::now() - chrono::Duration::hours(1);
        let first = self.first_event_since(since).await?.unwrap_or(i64::MAX);
        let estimating = counting == Counting::Estimated && self.dialect().is_postgres();
        Ok(with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            // The tables too large to count, on PostgreSQL, with their estimated rows.
            let mut estimated = std::collections::HashMap::new();
            if estimating {
                for (table, _) in TABLES {
                    let rows: Option<i64> = sqlx::query_scalar(PG_ROWS)
                        .bind(table)
                        .fetch_optional(&mut *conn)
                        .await?;
                    if let Some(rows) = rows.filter(|rows| *rows as f64 > ESTIMATE_ABOVE) {
                        estimated.insert(table, rows);
                    }
                }
            }
            let shipments = if estimated.contains_key("shipments") {
                sqlx::query_as(PG_SPLIT)
                    .bind("shipments")
                    .bind("status")
                    .fetch_all(&mut *conn)
                    .await?
            } else {
                sqlx::query_as(
                    "SELECT status, COUNT(*) FROM shipments GROUP BY status ORDER BY status",
                )
                .fetch_all(&mut *conn)
                .await?
            };
            let recent_events = sqlx::query_as(
                "SELECT outcome, COUNT(*) FROM processed_events \
                 WHERE seq >= $2 AND received_at >= $1 \
                 GROUP BY outcome ORDER BY outcome",
            )
            .bind(since)
            .bind(first)
            .fetch_all(&mut *conn)
            .await?;
            // Pending ones are few and indexed: counted always.
            let pending_deliveries =
                sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
                    .fetch_one(&mut *conn)
                    .await?;
            let failed_deliveries = if estimated.contains_key("deliveries") {
                let split: Vec<(String, i64)> = sqlx::query_as(PG_SPLIT)
                    .bind("deliveries")
                    .bind("status")
                    .fetch_all(&mut *conn)
                    .await?;
                split
                    .into_iter()
                    .find(|(status, _)| status == "failed")
                    .map_or(0, |(_, rows)| rows)
            } else {
                sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'failed'")
                    .fetch_one(&mut *conn)
                    .await?
            };
            let subscriptions = sqlx::query_as(
                "SELECT CASE WHEN active THEN 'active' \
                             ELSE COALESCE(deactivated_reason, 'inactive') END AS state, \
                        COUNT(*) FROM subscriptions GROUP BY 1 ORDER BY 1",
            )
            .fetch_all(&mut *conn)
            .await?;
            let quarantine_held =
                sqlx::query_scalar("SELECT COUNT(*) FROM quarantine WHERE status = $1")
                    .bind(QuarantineStatus::Held.as_str())
                    .fetch_one(&mut *conn)
                    .await?;
            let mut tables = Vec::with_capacity(TABLES.len());
            for (table, dated_by) in TABLES {
                if let Some(rows) = estimated.get(table) {
                    tables.push(TableStats {
                        table,
                        rows: *rows,
                        oldest: None,
                        estimated: true,
                    });
                    continue;
                }
                let (rows, oldest): (i64, Option<DateTime<Utc>>) =
                    sqlx::query_as(&format!("SELECT COUNT(*), MIN({dated_by}) FROM {table}"))
                        .fetch_one(&mut *conn)
                        .await?;
                tables.push(TableStats {
                    table,
                    rows,
                    oldest,
                    estimated: false,
                });
            }
            StatusReport {
                approximate: !estimated.is_empty(),
                shipments,
                recent_events,
                pending_deliveries,
                failed_deliveries,
                subscriptions,
                quarantine_held,
                tables,
            }
        }))
    }
}
