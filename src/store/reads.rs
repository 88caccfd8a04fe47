//! What operators read: shipments and recorded events, page by page.

use uuid::Uuid;

use super::page::paginate;
use super::rows::{EventRecordRow, ShipmentRow, EVENT_COLUMNS, SHIPMENT_COLUMNS};
use super::{EventRecord, Page, PageRequest, Store, StoreError};
use crate::domain::{Outcome, Shipment, ShipmentStatus};

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub order_id: Option<String>,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, Default)]
pub struct ShipmentFilter {
    pub status: Option<ShipmentStatus>,
    pub customer_id: Option<String>,
    pub order_id: Option<String>,
}

impl Store {
    pub async fn shipments(
        &self,
        filter: &ShipmentFilter,
        page: PageRequest,
    ) -> Result<Page<Shipment>, StoreError> {
        let sql = format!(
            "SELECT {SHIPMENT_COLUMNS} FROM shipments \
             WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR customer_id = $2) \
               AND ($3 IS NULL OR order_id = $3) AND ($4 IS NULL OR seq < $4) \
             ORDER BY seq DESC LIMIT $5"
        );
        let rows: Vec<ShipmentRow> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(&sql)
                .bind(filter.status.map(ShipmentStatus::as_str))
                .bind(filter.customer_id.as_deref())
                .bind(filter.order_id.as_deref())
                .bind(page.before_seq())
                .bind(page.fetch())
                .fetch_all(&mut *conn)
                .await?
        });
        paginate(rows, page.limit, |row| row.seq).try_map(Shipment::try_from)
    }

    pub async fn shipment(&self, id: Uuid) -> Result<Option<Shipment>, StoreError> {
        let sql = format!("SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE id = $1");
        let row: Option<ShipmentRow> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(Shipment::try_from).transpose()
    }

    pub async fn events(
        &self,
        filter: &EventFilter,
        page: PageRequest,
    ) -> Result<Page<EventRecord>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM processed_events \
             WHERE ($1 IS NULL OR order_id = $1) AND ($2 IS NULL OR outcome = $2) \
               AND ($3 IS NULL OR seq < $3) \
             ORDER BY seq DESC LIMIT $4"
        );
        let rows: Vec<EventRecordRow> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(&sql)
                .bind(filter.order_id.as_deref())
                .bind(filter.outcome.map(Outcome::as_str))
                .bind(page.before_seq())
                .bind(page.fetch())
                .fetch_all(&mut *conn)
                .await?
        });
        paginate(rows, page.limit, |row| row.seq).try_map(EventRecord::try_from)
    }
}
