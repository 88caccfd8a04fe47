//! What can go wrong in the database, classified once for both backends and both SQLite
//! drivers, so that every caller answers the same failure the same way.

use std::sync::Arc;

/// The error beneath a [`StoreError`]: from sqlx, or from SQLite's writer connection.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot take the request now (down, restarting, locked, pool exhausted):
    /// nothing was recorded and the sender should retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] Cause),
    /// Another writer got there first: it recorded one of the same event ids, or changed a
    /// shipment after this transaction read it. Nothing was recorded; applying the same work
    /// again reads what the other writer did.
    #[error("another writer changed the same rows first")]
    Conflict(#[source] Cause),
    /// The database refuses a value of the request itself (too long for an index, not valid
    /// in its encoding): the same request would fail again, and it is the sender's to fix.
    #[error("the database cannot store a value of this request")]
    Refused(#[source] Cause),
    #[error("the database failed")]
    Internal(#[source] Cause),
}

/// A guarded write that found its row changed since it was read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StaleWrite(pub String);

impl StoreError {
    pub(super) fn corrupt(message: String) -> StoreError {
        StoreError::Internal(Arc::new(sqlx::Error::Decode(message.into())))
    }

    pub(super) fn stale(message: String) -> StoreError {
        StoreError::Conflict(Arc::new(StaleWrite(message)))
    }

    /// Errors while getting a connection all mean the database is out of reach.
    pub(super) fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Unavailable(Arc::new(error))
    }

    fn classify(class: ErrorClass, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        let cause: Cause = Arc::new(error);
        match class {
            ErrorClass::Transient => StoreError::Unavailable(cause),
            ErrorClass::Conflict => StoreError::Conflict(cause),
            ErrorClass::RefusedValue => StoreError::Refused(cause),
            ErrorClass::Other => StoreError::Internal(cause),
        }
    }
}

enum ErrorClass {
    /// The same request can succeed later.
    Transient,
    /// A race with another writer, lost: the same work applied again sees the winner's rows.
    Conflict,
    /// A value the request carried. The limits of `domain` keep every known case from
    /// reaching the database; this is the net under them.
    RefusedValue,
    Other,
}

/// SQLite's result codes, classified once for both of its drivers.
fn sqlite_class(extended_code: i32) -> ErrorClass {
    // SQLITE_CONSTRAINT_PRIMARYKEY and SQLITE_CONSTRAINT_UNIQUE: an event id or an order's
    // shipment already recorded.
    if matches!(extended_code, 1555 | 2067) {
        return ErrorClass::Conflict;
    }
    match extended_code & 0xff {
        // BUSY, LOCKED, IOERR, FULL, CANTOPEN.
        5 | 6 | 10 | 13 | 14 => ErrorClass::Transient,
        // TOOBIG: a string or blob over the library's limit.
        18 => ErrorClass::RefusedValue,
        _ => ErrorClass::Other,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        StoreError::classify(sqlx_class(&error), error)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        let class = match &error {
            rusqlite::Error::SqliteFailure(failure, _) => sqlite_class(failure.extended_code),
            _ => ErrorClass::Other,
        };
        StoreError::classify(class, error)
    }
}

fn sqlx_class(error: &sqlx::Error) -> ErrorClass {
    use sqlx::Error;
    match error {
        Error::PoolTimedOut
        | Error::PoolClosed
        | Error::Io(_)
        | Error::Tls(_)
        | Error::WorkerCrashed => ErrorClass::Transient,
        Error::Database(db) if db.is_unique_violation() => ErrorClass::Conflict,
        Error::Database(db) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            sqlite_class(db.code().and_then(|c| c.parse().ok()).unwrap_or_default())
        }
        Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // Serialization failures (a guarded write that found its row changed raises one
            // too, see migration 0005) and deadlocks: PostgreSQL asks for the transaction
            // to be run again.
            if matches!(&*code, "40001" | "40P01") {
                ErrorClass::Conflict
            // Connection failures, resource limits, statement timeouts, admin shutdown, lock
            // timeouts.
            } else if code.starts_with("08")
                || code.starts_with("53")
                || matches!(&*code, "57014" | "57P01" | "57P02" | "57P03" | "55P03")
            {
                ErrorClass::Transient
            // Class 22, data exception (a value too long or not valid); class 54, program
            // limit exceeded (an index row too large).
            } else if code.starts_with("22") || code.starts_with("54") {
                ErrorClass::RefusedValue
            } else {
                ErrorClass::Other
            }
        }
        _ => ErrorClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One classification for both SQLite drivers: the same failure is the same answer
    /// whether sqlx's connection or the batch writer's met it.
    #[test]
    fn sqlite_result_codes_classify_the_same_through_both_drivers() {
        let through_rusqlite = |code: i32| {
            StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT (extended), SQLITE_LOCKED, SQLITE_IOERR_FSYNC,
        // SQLITE_FULL, SQLITE_CANTOPEN: the sender retries.
        for code in [5, 517, 6, 1034, 13, 14] {
            assert!(
                matches!(sqlite_class(code), ErrorClass::Transient),
                "{code}"
            );
            assert!(
                matches!(through_rusqlite(code), StoreError::Unavailable(_)),
                "{code}"
            );
        }
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY: a race lost.
        for code in [2067, 1555] {
            assert!(matches!(through_rusqlite(code), StoreError::Conflict(_)));
        }
        // SQLITE_TOOBIG: the request's own value.
        assert!(matches!(through_rusqlite(18), StoreError::Refused(_)));
        // SQLITE_CONSTRAINT (a CHECK), SQLITE_CORRUPT: a failure of ours.
        for code in [19, 275, 11] {
            assert!(
                matches!(through_rusqlite(code), StoreError::Internal(_)),
                "{code}"
            );
        }
    }
}
