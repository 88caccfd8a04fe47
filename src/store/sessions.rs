//! The console's sessions: in the database, so that any instance behind a load balancer knows
//! them. Only a hash of a session's id is stored.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, Write};

/// A signed-in operator's session.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    /// Every form of the session carries it; one without it changes nothing.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

fn hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl Store {
    /// Opens a session under `id` (the cookie's value) until `expires_at`; sessions past their
    /// expiry go at the same time.
    pub async fn open_session(
        &self,
        id: &str,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = super::now();
        with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
                .bind(now)
                .execute(tx.conn())
                .await?;
            sqlx::query(
                "INSERT INTO console_sessions (id_hash, csrf_token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(hash(id))
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
            .execute(tx.conn())
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The session of the cookie's value `id`, while it has not expired.
    pub async fn session(&self, id: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let row: Option<(String, DateTime<Utc>)> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(
                "SELECT csrf_token, expires_at FROM console_sessions \
                 WHERE id_hash = $1 AND expires_at > $2",
            )
            .bind(hash(id))
            .bind(super::now())
            .fetch_optional(&mut *conn)
            .await?
        });
        Ok(row.map(|(csrf_token, expires_at)| ConsoleSession {
            csrf_token,
            expires_at,
        }))
    }

    pub async fn close_session(&self, id: &str) -> Result<(), StoreError> {
        with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
                .bind(hash(id))
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
