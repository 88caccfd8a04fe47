//! The console's sessions: in the database, so that any instance behind a load balancer knows
//! them. Only a hash of a session's id is stored.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, Write};

/// A signed-in operator's session. `Debug` shows neither token.
#[derive(Clone)]
pub struct ConsoleSession {
    /// Every form of the session carries it; one without it changes nothing.
    pub csrf_token: String,
    /// Of the API token that opened it (none: opened before sessions kept one).
    pub token_fingerprint: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("expires_at", &self.expires_at)
            .field("last_used_at", &self.last_used_at)
            .finish_non_exhaustive()
    }
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
        token_fingerprint: &str,
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
                "INSERT INTO console_sessions (id_hash, csrf_token, created_at, expires_at, \
                                               token_fingerprint, last_used_at) \
                 VALUES ($1, $2, $3, $4, $5, $3)",
            )
            .bind(hash(id))
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
            .bind(token_fingerprint)
            .execute(tx.conn())
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The session of the cookie's value `id`, while it has not expired.
    pub async fn session(&self, id: &str) -> Result<Option<ConsoleSession>, StoreError> {
        type Row = (String, Option<String>, DateTime<Utc>, Option<DateTime<Utc>>);
        let row: Option<Row> = with_backend!(self, |db| {
            let mut conn = db.reader().await?;
            sqlx::query_as(
                "SELECT csrf_token, token_fingerprint, expires_at, last_used_at \
                 FROM console_sessions WHERE id_hash = $1 AND expires_at > $2",
            )
            .bind(hash(id))
            .bind(super::now())
            .fetch_optional(&mut *conn)
            .await?
        });
        Ok(row.map(
            |(csrf_token, token_fingerprint, expires_at, last_used_at)| ConsoleSession {
                csrf_token,
                token_fingerprint,
                expires_at,
                last_used_at,
            },
        ))
    }

    /// Records that the session of `id` was used now.
    pub async fn touch_session(&self, id: &str) -> Result<(), StoreError> {
        with_backend!(self, |db| {
            let mut tx = db.begin(Write::Plain).await?;
            sqlx::query("UPDATE console_sessions SET last_used_at = $2 WHERE id_hash = $1")
                .bind(hash(id))
                .bind(super::now())
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
        });
        Ok(())
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
