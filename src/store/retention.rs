//! Removing what retention lets go (the rules: `domain::retention`), in small transactions so
//! that the webhook writer never waits long behind a pass: records that are not part of an
//! order's history, the histories of closed orders (their events and operators' moves), settled outbound events with their
//! deliveries and attempts, quarantined events an operator replayed or discarded. A dry run
//! counts the same rows the pass would remove.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dialect::Dialect;
use super::{json_text, Store, StoreError, Write};
use crate::domain::{DeliveryStatus, ShipmentStatus};

/// Rows one transaction removes at most: each pass's lock on them is short.
const CHUNK_ROWS: i64 = 500;
/// Closed orders whose history one transaction removes (a few events each).
const CHUNK_ORDERS: i64 = 100;
/// Outbound events one transaction removes, each with its deliveries and their attempts.
const CHUNK_EVENTS: i64 = 100;

/// What a pass removed, or would remove, table by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub processed_events: u64,
    pub shipment_moves: u64,
    pub outbox_events: u64,
    pub deliveries: u64,
    pub delivery_attempts: u64,
    pub quarantine: u64,
    /// Closed orders whose history went (their shipments stay).
    pub closed_orders: u64,
}

impl Removed {
    /// Rows by table, in the order a pass removes them.
    pub fn by_table(&self) -> [(&'static str, u64); 6] {
        [
            ("processed_events", self.processed_events),
            ("shipment_moves", self.shipment_moves),
            ("outbox_events", self.outbox_events),
            ("deliveries", self.deliveries),
            ("delivery_attempts", self.delivery_attempts),
            ("quarantine", self.quarantine),
        ]
    }

    /// The tables the pass changed: those it removed rows from, and the shipments of the
    /// closed orders it marked.
    pub fn changed_tables(&self) -> Vec<&'static str> {
        let mut tables: Vec<&'static str> = self
            .by_table()
            .into_iter()
            .filter_map(|(table, rows)| (rows > 0).then_some(table))
            .collect();
        if self.closed_orders > 0 {
            tables.push("shipments");
        }
        tables
    }

    pub fn total(&self) -> u64 {
        self.by_table().iter().map(|(_, rows)| rows).sum()
    }
}

/// This instance's turn to prune. SQLite serves one instance, whose passes take turns by
/// themselves; on PostgreSQL, the connection that holds the pass's lock.
enum PruneTurn {
    Sqlite,
    Postgres(sqlx::PgConnection),
}

/// Whether a pass removes, or only counts what it would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Remove,
    DryRun,
}

impl Store {
    /// One pass over everything older than `horizon`. `None` when another instance is
    /// running one (PostgreSQL runs one at a time across instances).
    #[tracing::instrument(skip_all)]
    pub async fn prune(
        &self,
        horizon: DateTime<Utc>,
        pass: Pass,
    ) -> Result<Option<Removed>, StoreError> {
        let Some(mut turn) = self.prune_turn().await? else {
            return Ok(None);
        };
        if pass == Pass::DryRun {
            return self.count_removable(horizon).await.map(Some);
        }
        let mut removed = Removed::default();
        loop {
            let rows = self.remove_records(horizon).await?;
            removed.processed_events += rows;
            if rows < CHUNK_ROWS as u64 {
                break;
            }
        }
        loop {
            let orders = self.closed_orders(horizon).await?;
            if orders.is_empty() {
                break;
            }
            let (closed, events, moves) = self.remove_histories(horizon, &orders).await?;
            removed.closed_orders += closed;
            removed.processed_events += events;
            removed.shipment_moves += moves;
            if (orders.len() as i64) < CHUNK_ORDERS {
                break;
            }
        }
        loop {
            let events = self.settled_outbound(horizon).await?;
            if events.is_empty() {
                break;
            }
            let (outbox, deliveries, attempts) = self.remove_outbound(horizon, &events).await?;
            removed.outbox_events += outbox;
            removed.deliveries += deliveries;
            removed.delivery_attempts += attempts;
            if (events.len() as i64) < CHUNK_EVENTS {
                break;
            }
        }
        loop {
            let rows = self.remove_resolved_quarantine(horizon).await?;
            removed.quarantine += rows;
            if rows < CHUNK_ROWS as u64 {
                break;
            }
        }
        if let PruneTurn::Postgres(conn) = &mut turn {
            super::postgres::vacuum_unless_autovacuum(conn, &removed.changed_tables()).await?;
        }
        Ok(Some(removed))
    }

    /// Quarantined events replayed or discarded before the horizon: one chunk, oldest first.
    async fn remove_resolved_quarantine(&self, horizon: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let rows = sqlx::query(&format!(
                "DELETE FROM quarantine WHERE seq IN ( \
                   SELECT seq FROM quarantine WHERE {RESOLVED} ORDER BY resolved_at LIMIT $2)"
            ))
            .bind(horizon)
            .bind(CHUNK_ROWS)
            .execute(tx.conn())
            .await?
            .rows_affected();
            tx.commit().await?;
            rows
        }))
    }

    /// This instance's turn to prune, held until dropped; `None` while another has it.
    async fn prune_turn(&self) -> Result<Option<PruneTurn>, StoreError> {
        Ok(match self {
            Store::Sqlite(_) => Some(PruneTurn::Sqlite),
            Store::Postgres(db) => db.prune_turn().await?.map(PruneTurn::Postgres),
        })
    }

    /// Records (duplicates, events that came too late, events of types not handled) older
    /// than the horizon: one chunk, oldest first.
    async fn remove_records(&self, horizon: DateTime<Utc>) -> Result<u64, StoreError> {
        let delete = format!(
            "DELETE FROM processed_events WHERE seq IN ( \
               SELECT seq FROM processed_events WHERE {RECORD} \
               ORDER BY received_at LIMIT $2)"
        );
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let rows = sqlx::query(&delete)
                .bind(horizon)
                .bind(CHUNK_ROWS)
                .execute(tx.conn())
                .await?
                .rows_affected();
            tx.commit().await?;
            rows
        }))
    }

    /// Closed orders that have seen no event and no move since the horizon and still have
    /// their history, with their heads as read: up to a chunk of them, longest untouched
    /// first.
    async fn closed_orders(
        &self,
        horizon: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = closed_orders_sql(self.dialect());
        Ok(with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(&sql)
                .bind(horizon)
                .bind(closed_statuses())
                .bind(CHUNK_ORDERS)
                .fetch_all(&mut *conn)
                .await?
        }))
    }

    /// Removes the histories of `orders` that are still closed and inactive, and whose heads
    /// are still as read; returns how many orders closed, and how many event and move rows
    /// went. Each
    /// order is marked first, its head advanced: a writer that read the order before fails
    /// its write and reads it again (too late now). A writer that recorded an event first
    /// advanced the head, so the mark passes the order by, even where it waited for that
    /// writer's row and its subquery cannot see the event.
    async fn remove_histories(
        &self,
        horizon: DateTime<Utc>,
        orders: &[(String, i64)],
    ) -> Result<(u64, u64, u64), StoreError> {
        let dialect = self.dialect();
        let mark = mark_closed_sql(dialect);
        let delete = format!(
            "DELETE FROM processed_events WHERE order_id IN ({})",
            dialect.json_texts(1)
        );
        let delete_moves = format!(
            "DELETE FROM shipment_moves WHERE shipment_id IN ( \
               SELECT id FROM shipments WHERE order_id IN ({}))",
            dialect.json_texts(1)
        );
        let orders_json = json_text(&orders);
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let marked: Vec<String> = sqlx::query_scalar(&mark)
                .bind(horizon)
                .bind(closed_statuses())
                .bind(&orders_json)
                .bind(super::now())
                .fetch_all(tx.conn())
                .await?;
            let closed = marked.len() as u64;
            let marked = json_text(&marked);
            let mut rows = [0; 2];
            for (index, sql) in [&delete, &delete_moves].into_iter().enumerate() {
                rows[index] = sqlx::query(sql)
                    .bind(&marked)
                    .execute(tx.conn())
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            (closed, rows[0], rows[1])
        }))
    }

    /// Outbound events whose deliveries are all settled, the last attempt before the
    /// horizon: up to a chunk of them, oldest first.
    async fn settled_outbound(&self, horizon: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
        let sql =
            format!("SELECT o.id FROM outbox_events o WHERE {SETTLED} ORDER BY o.seq LIMIT $3");
        Ok(with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_scalar(&sql)
                .bind(horizon)
                .bind(DeliveryStatus::Pending.as_str())
                .bind(CHUNK_EVENTS)
                .fetch_all(&mut *conn)
                .await?
        }))
    }

    /// Removes `events` with their settled deliveries and attempts; an event keeps any
    /// delivery queued again meanwhile, and then stays too. Returns the rows removed from
    /// `outbox_events`, `deliveries` and `delivery_attempts`.
    async fn remove_outbound(
        &self,
        horizon: DateTime<Utc>,
        events: &[Uuid],
    ) -> Result<(u64, u64, u64), StoreError> {
        let dialect = self.dialect();
        let settled = format!(
            "SELECT id FROM deliveries WHERE {} AND status <> $2 AND updated_at < $3",
            dialect.in_json_uuids("event_id", 1)
        );
        let attempts = format!("DELETE FROM delivery_attempts WHERE delivery_id IN ({settled})");
        let deliveries = format!("DELETE FROM deliveries WHERE id IN ({settled})");
        let outbox = format!(
            "DELETE FROM outbox_events WHERE {} AND NOT EXISTS ( \
               SELECT 1 FROM deliveries d WHERE d.event_id = outbox_events.id)",
            dialect.in_json_uuids("id", 1)
        );
        let ids: Vec<String> = events.iter().map(|id| id.simple().to_string()).collect();
        let ids = json_text(&ids);
        let pending = DeliveryStatus::Pending.as_str();
        Ok(with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let mut removed = [0; 3];
            for (index, sql) in [&attempts, &deliveries].into_iter().enumerate() {
                removed[index + 1] = sqlx::query(sql)
                    .bind(&ids)
                    .bind(pending)
                    .bind(horizon)
                    .execute(tx.conn())
                    .await?
                    .rows_affected();
            }
            removed[0] = sqlx::query(&outbox)
                .bind(&ids)
                .execute(tx.conn())
                .await?
                .rows_affected();
            tx.commit().await?;
            (removed[0], removed[2], removed[1])
        }))
    }

    /// What a pass would remove now.
    async fn count_removable(&self, horizon: DateTime<Utc>) -> Result<Removed, StoreError> {
        let dialect = self.dialect();
        let records = format!("SELECT COUNT(*) FROM processed_events WHERE {RECORD}");
        let closed = format!("SELECT COUNT(*) FROM shipments s WHERE {CLOSED_INACTIVE}")
            .replace("{closed}", &dialect.json_texts(2));
        let histories = format!(
            "SELECT COUNT(*) FROM processed_events WHERE in_history AND order_id IN ( \
               SELECT s.order_id FROM shipments s WHERE {CLOSED_INACTIVE})"
        )
        .replace("{closed}", &dialect.json_texts(2));
        let moves = format!(
            "SELECT COUNT(*) FROM shipment_moves WHERE shipment_id IN ( \
               SELECT s.id FROM shipments s WHERE {CLOSED_INACTIVE})"
        )
        .replace("{closed}", &dialect.json_texts(2));
        let outbox = format!("SELECT COUNT(*) FROM outbox_events o WHERE {SETTLED}");
        let deliveries = format!(
            "SELECT COUNT(*) FROM deliveries WHERE event_id IN ( \
               SELECT o.id FROM outbox_events o WHERE {SETTLED})"
        );
        let attempts = format!(
            "SELECT COUNT(*) FROM delivery_attempts WHERE delivery_id IN ( \
               SELECT id FROM deliveries WHERE event_id IN ( \
                 SELECT o.id FROM outbox_events o WHERE {SETTLED}))"
        );
        let pending = DeliveryStatus::Pending.as_str();
        let resolved = format!("SELECT COUNT(*) FROM quarantine WHERE {RESOLVED}");
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Ok(with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            let records: i64 = sqlx::query_scalar(&records)
                .bind(horizon)
                .fetch_one(&mut *conn)
                .await?;
            let mut closed_counts = [0_i64; 3];
            for (index, sql) in [&closed, &histories, &moves].into_iter().enumerate() {
                closed_counts[index] = sqlx::query_scalar(sql)
                    .bind(horizon)
                    .bind(closed_statuses())
                    .fetch_one(&mut *conn)
                    .await?;
            }
            let mut outbound = [0_i64; 3];
            for (index, sql) in [&outbox, &deliveries, &attempts].into_iter().enumerate() {
                outbound[index] = sqlx::query_scalar(sql)
                    .bind(horizon)
                    .bind(pending)
                    .fetch_one(&mut *conn)
                    .await?;
            }
            let quarantine: i64 = sqlx::query_scalar(&resolved)
                .bind(horizon)
                .fetch_one(&mut *conn)
                .await?;
            Removed {
                quarantine: count(quarantine),
                processed_events: count(records) + count(closed_counts[1]),
                shipment_moves: count(closed_counts[2]),
                outbox_events: count(outbound[0]),
                deliveries: count(outbound[1]),
                delivery_attempts: count(outbound[2]),
                closed_orders: count(closed_counts[0]),
            }
        }))
    }
}

/// Up to `$3` shipments that [`CLOSED_INACTIVE`] accepts, the longest untouched first, with
/// their heads. Read along the index of the shipments that still have their history: every
/// closed shipment stays forever, and SQLite, which has no statistics, would otherwise read
/// all of them by status for each chunk.
fn closed_orders_sql(dialect: Dialect) -> String {
    format!(
        "SELECT s.order_id, s.head_seq FROM shipments AS s {} WHERE {CLOSED_INACTIVE} \
         ORDER BY s.updated_at LIMIT $3",
        dialect.indexed_by("shipments_history_kept_idx"),
    )
    .replace("{closed}", &dialect.json_texts(2))
}

/// Marks the orders of the JSON rows `$3` (order id, head as read) whose shipments
/// [`CLOSED_INACTIVE`] still accepts with their heads unchanged; `$4` is now. Each found by
/// its order id, under the write lock: never a read of every closed shipment.
fn mark_closed_sql(dialect: Dialect) -> String {
    format!(
        "UPDATE shipments AS s SET history_removed_at = $4, head_seq = s.head_seq + 1 \
         WHERE {} AND {CLOSED_INACTIVE} \
           AND EXISTS (SELECT 1 FROM {} WHERE value ->> 0 = s.order_id \
                                        AND {} = s.head_seq) \
         RETURNING order_id",
        dialect.in_json_field("s.order_id", 3, 0),
        dialect.json_rows(3),
        dialect.cast("value ->> 1", "bigint"),
    )
    .replace("{closed}", &dialect.json_texts(2))
}

/// [`domain::retention::forgets_record`](crate::domain::retention::forgets_record) in SQL: a
/// recorded event outside its order's history, received before the horizon `$1`.
const RECORD: &str = "NOT in_history AND received_at < $1";

/// [`domain::retention::forgets_history`](crate::domain::retention::forgets_history) in SQL:
/// a shipment `s` that is closed (its status among the JSON list `{closed}`, bound as `$2`),
/// still has its order's history, and has seen no change since the horizon `$1`, nor its
/// order any event.
const CLOSED_INACTIVE: &str = "s.history_removed_at IS NULL AND s.updated_at < $1 \
     AND s.status IN ({closed}) \
     AND NOT EXISTS (SELECT 1 FROM processed_events e \
                     WHERE e.order_id = s.order_id AND e.received_at >= $1)";

/// [`domain::retention::forgets_announcement`](crate::domain::retention::forgets_announcement)
/// in SQL: an outbound event `o` that was fanned out before the horizon `$1` and whose
/// deliveries are all settled (none `$2`, pending), the last attempt before the horizon.
const SETTLED: &str = "o.fanned_out AND o.created_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = o.id \
                     AND (d.status = $2 OR d.updated_at >= $1))";

/// [`domain::retention::forgets_quarantined`](crate::domain::retention::forgets_quarantined)
/// in SQL: a quarantined event an operator replayed or discarded before the horizon `$1`
/// (only those are ever resolved).
const RESOLVED: &str = "resolved_at IS NOT NULL AND resolved_at < $1";

/// The statuses of a closed shipment, as the JSON list the statements take.
fn closed_statuses() -> String {
    json_text(&ShipmentStatus::CLOSED.map(ShipmentStatus::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite_plan;

    #[test]
    fn sqlite_finds_closed_orders_among_the_shipments_that_keep_their_history() {
        assert_eq!(
            sqlite_plan(&closed_orders_sql(Dialect::Sqlite))[0],
            "SEARCH s USING INDEX shipments_history_kept_idx (updated_at<?)"
        );
    }

    #[test]
    fn sqlite_marks_each_closed_order_by_its_id() {
        assert_eq!(
            sqlite_plan(&mark_closed_sql(Dialect::Sqlite))[0],
            "SEARCH s USING INDEX sqlite_autoindex_shipments_2 (order_id=?)"
        );
    }
}
