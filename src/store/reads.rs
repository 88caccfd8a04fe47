//! What operators read: shipments and recorded events, page by page.

use uuid::Uuid;

use super::page::{filter, paginate};
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
        let sql = shipments_sql(filter, page);
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
        let sql = events_sql(filter, page);
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

/// A page of shipments, newest first: `$1` status, `$2` customer, `$3` order, `$4` the
/// cursor's position, `$5` how many.
fn shipments_sql(given: &ShipmentFilter, page: PageRequest) -> String {
    format!(
        "SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE {} AND {} AND {} AND {} \
         ORDER BY seq DESC LIMIT $5",
        filter(given.status.is_some(), "status = $1", 1),
        filter(given.customer_id.is_some(), "customer_id = $2", 2),
        filter(given.order_id.is_some(), "order_id = $3", 3),
        page.before("seq", 4),
    )
}

/// A page of recorded events, newest first: `$1` order, `$2` outcome, `$3` the cursor's
/// position, `$4` how many.
fn events_sql(given: &EventFilter, page: PageRequest) -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM processed_events WHERE {} AND {} AND {} \
         ORDER BY seq DESC LIMIT $4",
        filter(given.order_id.is_some(), "order_id = $1", 1),
        filter(given.outcome.is_some(), "outcome = $2", 2),
        page.before("seq", 3),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{sqlite_plan, Cursor};

    fn page(after: Option<i64>) -> PageRequest {
        PageRequest {
            limit: 50,
            after: after.map(|before_seq| Cursor { before_seq }),
        }
    }

    #[test]
    fn sqlite_reads_a_filtered_page_along_the_filters_index() {
        let customer = ShipmentFilter {
            customer_id: Some("C1".into()),
            ..ShipmentFilter::default()
        };
        assert_eq!(
            sqlite_plan(&shipments_sql(&customer, page(Some(99)))),
            ["SEARCH shipments USING INDEX shipments_customer_id_seq_idx (customer_id=? AND seq<?)"]
        );
        let status = ShipmentFilter {
            status: Some(ShipmentStatus::Packed),
            ..ShipmentFilter::default()
        };
        assert_eq!(
            sqlite_plan(&shipments_sql(&status, page(None))),
            ["SEARCH shipments USING INDEX shipments_status_seq_idx (status=?)"]
        );
        let order = EventFilter {
            order_id: Some("ORD-1".into()),
            ..EventFilter::default()
        };
        assert_eq!(
            sqlite_plan(&events_sql(&order, page(None))),
            ["SEARCH processed_events USING INDEX processed_events_order_id_seq_idx (order_id=?)"]
        );
        assert_eq!(
            sqlite_plan(&shipments_sql(&ShipmentFilter::default(), page(Some(99)))),
            ["SEARCH shipments USING INTEGER PRIMARY KEY (rowid<?)"]
        );
    }
}
