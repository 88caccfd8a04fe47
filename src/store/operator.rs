//! An operator's change of a shipment: in one transaction, under the same per-order lock as
//! the order's events, with its announcement written to the outbox beside it.

use uuid::Uuid;

use super::plan::OutboxRow;
use super::postgres::begin_and_lock;
use super::rows::{ShipmentRow, SHIPMENT_COLUMNS, WHILE_SUBSCRIBED};
use super::{Store, StoreError};
use crate::domain::{IllegalMove, Shipment, ShipmentPatch};

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

impl Store {
    #[tracing::instrument(skip_all, fields(shipment_id = %id))]
    pub async fn patch_shipment(
        &self,
        id: Uuid,
        patch: &ShipmentPatch,
        if_match: Option<i64>,
    ) -> Result<Patched, StoreError> {
        // The order id never changes, so it can be read before the order is locked.
        let order_id: Option<String> = on_pool!(self, |pool| {
            let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
            sqlx::query_scalar("SELECT order_id FROM shipments WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        });
        let Some(order_id) = order_id else {
            return Ok(Patched::NotFound);
        };
        let select = format!("SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE id = $1");
        let changed = in_transaction!(self, begin_and_lock(&[order_id]), |tx| {
            let row: ShipmentRow = sqlx::query_as(&select).bind(id).fetch_one(&mut *tx).await?;
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
            let outbox = OutboxRow::announce(Some(&current), &next, now);
            sqlx::query(
                "UPDATE shipments SET status = $2, \
                     operator_status = COALESCE($3, operator_status), carrier = $4, \
                     tracking_number = $5, revision = $6, updated_at = $7 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(next.status.as_str())
            .bind(operator_status.map(|status| status.as_str()))
            .bind(next.carrier.as_deref())
            .bind(next.tracking_number.as_deref())
            .bind(next.revision)
            .bind(next.updated_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "INSERT INTO outbox_events (id, shipment_id, event_type, body, created_at) \
                 SELECT $1, $2, $3, $4, $5 WHERE {WHILE_SUBSCRIBED}"
            ))
            .bind(outbox.id)
            .bind(outbox.shipment_id)
            .bind(outbox.change.as_str())
            .bind(&outbox.body)
            .bind(outbox.created_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            next
        });
        self.announced().notify_one();
        Ok(Patched::Done(Box::new(changed)))
    }
}
