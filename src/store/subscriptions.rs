//! Subscriptions: who hears of every shipment change, and with which secret.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::page::paginate;
use super::{Page, PageRequest, Store, StoreError, Write};
use crate::domain::{
    DeactivationReason, NewSubscription, ShipmentChange, Subscription, SubscriptionPatch,
};

#[derive(sqlx::FromRow)]
pub(super) struct SubscriptionRow {
    seq: i64,
    id: Uuid,
    url: String,
    event_types: Json<Vec<ShipmentChange>>,
    description: Option<String>,
    active: bool,
    deactivated_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = StoreError;

    fn try_from(row: SubscriptionRow) -> Result<Subscription, StoreError> {
        let deactivated_reason = row
            .deactivated_reason
            .map(|text| {
                DeactivationReason::parse(&text)
                    .ok_or_else(|| StoreError::corrupt(format!("unknown reason {text:?}")))
            })
            .transpose()?;
        Ok(Subscription {
            id: row.id,
            url: row.url,
            event_types: row.event_types.0,
            description: row.description,
            active: row.active,
            deactivated_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

pub(super) const SUBSCRIPTION_COLUMNS: &str =
    "seq, id, url, event_types, description, active, deactivated_reason, created_at, updated_at";

impl Store {
    pub async fn create_subscription(
        &self,
        new: &NewSubscription,
        secret: &str,
    ) -> Result<Subscription, StoreError> {
        let sql = format!(
            "INSERT INTO subscriptions (id, url, event_types, description, secret, active, \
                                        created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, true, $6, $6) RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let row: SubscriptionRow = with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let row = sqlx::query_as(&sql)
                .bind(Uuid::now_v7())
                .bind(&new.url)
                .bind(Json(&new.event_types))
                .bind(new.description.as_deref())
                .bind(secret)
                .bind(super::now())
                .fetch_one(tx.conn())
                .await?;
            tx.commit().await?;
            row
        });
        row.try_into()
    }

    pub async fn subscriptions(&self, page: PageRequest) -> Result<Page<Subscription>, StoreError> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
             WHERE ($1 IS NULL OR seq < $1) ORDER BY seq DESC LIMIT $2"
        );
        let rows: Vec<SubscriptionRow> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(&sql)
                .bind(page.before_seq())
                .bind(page.fetch())
                .fetch_all(&mut *conn)
                .await?
        });
        paginate(rows, page.limit, |row| row.seq).try_map(Subscription::try_from)
    }

    pub async fn subscription(&self, id: Uuid) -> Result<Option<Subscription>, StoreError> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
        let row: Option<SubscriptionRow> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        });
        row.map(Subscription::try_from).transpose()
    }

    /// The ids of the active subscriptions.
    pub async fn active_subscriptions(&self) -> Result<HashSet<Uuid>, StoreError> {
        let ids: Vec<Uuid> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_scalar("SELECT id FROM subscriptions WHERE active")
                .fetch_all(&mut *conn)
                .await?
        });
        Ok(ids.into_iter().collect())
    }

    pub async fn subscription_secret(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        Ok(with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_scalar("SELECT secret FROM subscriptions WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        }))
    }

    pub async fn update_subscription(
        &self,
        id: Uuid,
        patch: &SubscriptionPatch,
    ) -> Result<Option<Subscription>, StoreError> {
        let sql = format!(
            "UPDATE subscriptions SET url = COALESCE($2, url), \
                 event_types = COALESCE($3, event_types), active = COALESCE($4, active), \
                 deactivated_reason = CASE WHEN $6 THEN $7 ELSE deactivated_reason END, \
                 failing_since = CASE WHEN $4 THEN NULL ELSE failing_since END, \
                 updated_at = $5 \
             WHERE id = $1 RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        let deactivation = patch.deactivation();
        let fail_waiting = super::settle::fail_waiting_sql(self.dialect(), true);
        let now = super::now();
        let row: Option<SubscriptionRow> = with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            let row: Option<SubscriptionRow> = sqlx::query_as(&sql)
                .bind(id)
                .bind(patch.url.as_deref())
                .bind(patch.event_types.as_ref().map(Json))
                .bind(patch.active)
                .bind(now)
                .bind(deactivation.is_some())
                .bind(deactivation.flatten().map(DeactivationReason::as_str))
                .fetch_optional(tx.conn())
                .await?;
            if row.as_ref().is_some_and(|row| !row.active) {
                sqlx::query(&fail_waiting)
                    .bind(now)
                    .bind(super::json_text(&[id.simple().to_string()]))
                    .execute(tx.conn())
                    .await?;
            }
            tx.commit().await?;
            row
        });
        match &row {
            Some(row) if !row.active => self.dispatch_wakeup().revoke(id),
            // Deliveries held back while it was inactive are due now.
            Some(_) if patch.active == Some(true) => self.dispatch_wakeup().notify_one(),
            _ => {}
        }
        row.map(Subscription::try_from).transpose()
    }

    /// Deletes the subscription and its deliveries (with their attempts); whether it existed.
    /// No attempt of it starts on this instance after this returns; attempts in flight come
    /// back to deliveries that are gone, and change nothing.
    pub async fn delete_subscription(&self, id: Uuid) -> Result<bool, StoreError> {
        let lock = format!(
            "SELECT id FROM subscriptions WHERE id = $1 {}",
            self.dialect().lock_rows()
        );
        let deleted = with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            // The subscription before its deliveries, as every writer of both does.
            let found: Option<Uuid> = sqlx::query_scalar(&lock)
                .bind(id)
                .fetch_optional(tx.conn())
                .await?;
            if found.is_none() {
                return Ok(false);
            }
            sqlx::query(
                "DELETE FROM delivery_attempts WHERE delivery_id IN \
                   (SELECT id FROM deliveries WHERE subscription_id = $1)",
            )
            .bind(id)
            .execute(tx.conn())
            .await?;
            sqlx::query("DELETE FROM deliveries WHERE subscription_id = $1")
                .bind(id)
                .execute(tx.conn())
                .await?;
            sqlx::query("DELETE FROM subscriptions WHERE id = $1")
                .bind(id)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            true
        });
        self.dispatch_wakeup().revoke(id);
        Ok(deleted)
    }
}
