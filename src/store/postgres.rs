//! PostgreSQL: deliveries go through the group-committing writer (`batch.rs`), which applies
//! a whole batch with one call of the `apply_events` function (see the migrations): one round
//! trip and one commit for the batch. A concurrent twin in another instance's transaction
//! blocks on the unique index until that commit, then sees its row.

use std::str::FromStr;

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::batch::{Batcher, Writer};
use super::{Applied, StoreError, ACQUIRE_TIMEOUT};
use crate::domain::{Delivery, Event};

/// Enough to keep two cores busy with reads beside the writer; more only adds contention.
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    batcher: Batcher,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<PgStore, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("shipping-service");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A ping per acquire would double the round trips of every event; a dead
            // connection shows up as a failed query instead, answered 503 and retried.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let batcher = Batcher::spawn(Writer::Postgres(pool.clone()));
        Ok(PgStore { pool, batcher })
    }

    pub async fn apply(&self, delivery: Delivery) -> Result<Applied, StoreError> {
        self.batcher.apply(delivery).await
    }
}

/// The columns of a batch, one array per parameter of `apply_events`.
#[derive(Default)]
struct Columns {
    event_ids: Vec<String>,
    event_types: Vec<String>,
    order_ids: Vec<Option<String>>,
    shipment_ids: Vec<Option<Uuid>>,
    customer_ids: Vec<Option<String>>,
    items: Vec<Option<String>>,
    addresses: Vec<Option<String>>,
    ordered_ats: Vec<Option<chrono::DateTime<Utc>>>,
}

/// Applies the deliveries in order in one transaction.
pub(super) async fn commit(
    pool: &PgPool,
    deliveries: &[&Delivery],
) -> Result<Vec<Applied>, StoreError> {
    let mut columns = Columns::default();
    for delivery in deliveries {
        let order = match &delivery.event {
            Event::OrderCreated(order) => Some(order),
            Event::Other { .. } => None,
        };
        columns.event_ids.push(delivery.event_id.clone());
        columns
            .event_types
            .push(delivery.event.event_type().to_owned());
        columns
            .order_ids
            .push(delivery.event.order_id().map(str::to_owned));
        columns.shipment_ids.push(order.map(|_| Uuid::now_v7()));
        columns
            .customer_ids
            .push(order.map(|order| order.customer_id.clone()));
        columns.items.push(order.map(|order| to_json(&order.items)));
        columns
            .addresses
            .push(order.map(|order| to_json(&order.shipping_address)));
        columns
            .ordered_ats
            .push(order.map(|order| order.ordered_at));
    }
    let mut conn = pool.acquire().await.map_err(StoreError::unavailable)?;
    let rows: Vec<(bool, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT is_first, outcome, shipment_id FROM apply_events($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(columns.event_ids)
    .bind(columns.event_types)
    .bind(columns.order_ids)
    .bind(columns.shipment_ids)
    .bind(columns.customer_ids)
    .bind(columns.items)
    .bind(columns.addresses)
    .bind(columns.ordered_ats)
    .bind(Utc::now())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|(is_first, outcome, shipment_id)| Applied::from_row(*is_first, outcome, *shipment_id))
        .collect()
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain data always serialises")
}
