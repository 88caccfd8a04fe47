//! An operator's change of a shipment: in one transaction, written only over the revision it
//! read (an event's write in between fails it, and the batch writer's write fails after it:
//! the revision is part of the order's head), recorded as a move, with its announcement
//! written to the outbox beside it.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::outbox::{insert_deliveries, insert_outbound};
use super::rows::{status, ShipmentRow, SHIPMENT_COLUMNS};
use super::{Store, StoreError, Write};
use crate::domain::{
    IllegalMove, OutboundEvent, Shipment, ShipmentPatch, ShipmentStatus, TraceContext,
};

/// What became of a PATCH.
#[derive(Debug)]
pub enum Patched {
    NotFound,
    /// `If-Match` named another revision than the current one.
    Stale {
        revision: i64,
    },
    Illegal(IllegalMove),
    /// The shipment after the patch (unchanged when the patch changed nothing).
    Done(Box<Shipment>),
}

/// One change an operator made to a shipment, as recorded beside its order's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentMove {
    /// The revision the change made.
    pub revision: i64,
    pub from: ShipmentStatus,
    pub to: ShipmentStatus,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub moved_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct MoveRow {
    revision: i64,
    from_status: String,
    to_status: String,
    carrier: Option<String>,
    tracking_number: Option<String>,
    moved_at: DateTime<Utc>,
}

impl TryFrom<MoveRow> for ShipmentMove {
    type Error = StoreError;

    fn try_from(row: MoveRow) -> Result<ShipmentMove, StoreError> {
        Ok(ShipmentMove {
            revision: row.revision,
            from: status(&row.from_status)?,
            to: status(&row.to_status)?,
            carrier: row.carrier,
            tracking_number: row.tracking_number,
            moved_at: row.moved_at,
        })
    }
}

/// The operator's fields, written only over the revision that was read.
const UPDATE: &str = "UPDATE shipments SET status = $2, \
         operator_status = COALESCE($3, operator_status), carrier = $4, \
         tracking_number = $5, revision = $6, updated_at = $7 \
     WHERE id = $1 AND revision = $8";

const RECORD_MOVE: &str = "INSERT INTO shipment_moves (shipment_id, revision, from_status, \
         to_status, carrier, tracking_number, moved_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

static ANNOUNCE: LazyLock<String> =
    LazyLock::new(|| insert_outbound("SELECT $1, $2, $3, $4, $5, $6, $7"));

impl Store {
    #[tracing::instrument(skip_all, fields(shipment_id = %id))]
    pub async fn patch_shipment(
        &self,
        id: Uuid,
        patch: &ShipmentPatch,
        if_match: Option<i64>,
        trace: Option<TraceContext>,
    ) -> Result<Patched, StoreError> {
        let select = format!("SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE id = $1");
        let deliver = insert_deliveries(
            self.dialect(),
            "SELECT id, shipment_id, event_type, created_at, seq FROM outbox_events WHERE id = $1",
        );
        let changed = with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let row: Option<ShipmentRow> = sqlx::query_as(&select)
                .bind(id)
                .fetch_optional(tx.conn())
                .await?;
            let Some(row) = row else {
                return Ok(Patched::NotFound);
            };
            let current = Shipment::try_from(row)?;
            if if_match.is_some_and(|revision| revision != current.revision) {
                return Ok(Patched::Stale {
                    revision: current.revision,
                });
            }
            let now = super::now();
            let (next, operator_status) = match patch.apply(&current, now) {
                Err(illegal) => return Ok(Patched::Illegal(illegal)),
                Ok(None) => return Ok(Patched::Done(Box::new(current))),
                Ok(Some(change)) => change,
            };
            let written = sqlx::query(UPDATE)
                .bind(id)
                .bind(next.status.as_str())
                .bind(operator_status.map(|status| status.as_str()))
                .bind(next.carrier.as_deref())
                .bind(next.tracking_number.as_deref())
                .bind(next.revision)
                .bind(next.updated_at)
                .bind(current.revision)
                .execute(tx.conn())
                .await?
                .rows_affected();
            if written != 1 {
                return Err(StoreError::stale(format!(
                    "shipment {id} changed after revision {} was read",
                    current.revision
                )));
            }
            sqlx::query(RECORD_MOVE)
                .bind(id)
                .bind(next.revision)
                .bind(current.status.as_str())
                .bind(next.status.as_str())
                .bind(next.carrier.as_deref())
                .bind(next.tracking_number.as_deref())
                .bind(now)
                .execute(tx.conn())
                .await?;
            let announcement = OutboundEvent::announce(Some(&current), &next, now, trace);
            sqlx::query(&ANNOUNCE)
                .bind(announcement.id)
                .bind(announcement.shipment_id)
                .bind(announcement.change.as_str())
                .bind(&announcement.body)
                .bind(announcement.created_at)
                .bind(announcement.trace.as_ref().map(|trace| &trace.parent))
                .bind(
                    announcement
                        .trace
                        .as_ref()
                        .and_then(|trace| trace.state.as_ref()),
                )
                .execute(tx.conn())
                .await?;
            sqlx::query(&deliver)
                .bind(announcement.id)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            next
        });
        self.dispatch_wakeup().notify_one();
        Ok(Patched::Done(Box::new(changed)))
    }

    /// The moves operators made to a shipment, oldest first (none once its closed order's
    /// history is gone).
    pub async fn shipment_moves(&self, id: Uuid) -> Result<Vec<ShipmentMove>, StoreError> {
        let sql = "SELECT revision, from_status, to_status, carrier, tracking_number, moved_at \
                   FROM shipment_moves WHERE shipment_id = $1 ORDER BY seq";
        let rows: Vec<MoveRow> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(sql).bind(id).fetch_all(&mut *conn).await?
        });
        rows.into_iter().map(ShipmentMove::try_from).collect()
    }
}
