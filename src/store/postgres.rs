//! PostgreSQL: each delivery is one call of the `apply_event` function (see the migration),
//! so the whole transaction costs one round trip and commits on its own. A concurrent twin of
//! the same event or order blocks on the unique index until our commit, then sees our row.

use std::str::FromStr;

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Applied, StoreError, ACQUIRE_TIMEOUT};
use crate::domain::{Delivery, Event};

/// Enough to keep two cores busy with commits in flight; more only adds lock contention.
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<PgStore, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("shipping-service");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(PgStore { pool })
    }

    pub async fn apply(&self, delivery: &Delivery) -> Result<Applied, StoreError> {
        let order = match &delivery.event {
            Event::OrderCreated(order) => Some(order),
            Event::Other { .. } => None,
        };
        let mut conn = self.pool.acquire().await.map_err(StoreError::unavailable)?;
        let (is_first, outcome, shipment_id): (bool, String, Option<Uuid>) = sqlx::query_as(
            "SELECT is_first, outcome, shipment_id FROM apply_event($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&delivery.event_id)
        .bind(delivery.event.event_type())
        .bind(delivery.event.order_id())
        .bind(order.map(|_| Uuid::now_v7()))
        .bind(order.map(|order| &order.customer_id))
        .bind(order.map(|order| Json(&order.items)))
        .bind(order.map(|order| Json(&order.shipping_address)))
        .bind(order.map(|order| order.ordered_at))
        .bind(Utc::now())
        .fetch_one(&mut *conn)
        .await?;
        Applied::from_row(is_first, &outcome, shipment_id)
    }
}
