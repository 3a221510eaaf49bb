//! This crate's private error type, converted into [`tokenbudget_core::Error`] at the API.

use std::time::Duration;

/// What can go wrong inside the SQLite store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqliteError {
    /// The rule refused the command (bad input, conflict): passed through unchanged.
    #[error(transparent)]
    Rejected(#[from] tokenbudget_core::Error),
    /// sqlx or SQLite failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// The database was locked by other processes for longer than the retry deadline.
    #[error("database stayed locked by other processes: gave up after {attempts} attempts in {elapsed:?}")]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer version of this crate.
    #[error(
        "database schema version {found} is newer than the newest this build knows ({supported}): \
         upgrade tokenbudget-sqlite, or open another database"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// The runtime shut down while the operation's transaction was running; it was rolled
    /// back unless it had committed.
    #[error("the operation's task was cancelled by the runtime: {0}")]
    Cancelled(String),
    /// A stored value does not fit the model (a negative amount, an unknown state, bad JSON).
    #[error("corrupt {what} in the database: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

impl SqliteError {
    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }

    /// SQLITE_BUSY or SQLITE_LOCKED (any extended code): another connection holds a lock.
    pub(crate) fn is_busy(&self) -> bool {
        match self {
            Self::Sqlx(e) => is_busy(e),
            _ => false,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Sqlx(e) => is_busy(e) || matches!(e, sqlx::Error::PoolTimedOut),
            Self::GaveUp { .. } => true,
            Self::Rejected(_)
            | Self::SchemaTooNew { .. }
            | Self::Corrupt { .. }
            | Self::Cancelled(_) => false,
        }
    }
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// True for SQLITE_BUSY and SQLITE_LOCKED and their extended codes (BUSY_SNAPSHOT, …).
pub(crate) fn is_busy(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    // sqlx-sqlite reports the extended result code; its low byte is the primary code.
    db.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

impl From<SqliteError> for tokenbudget_core::Error {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::Rejected(e) => e,
            other => {
                let retryable = other.is_retryable();
                tokenbudget_core::Error::storage("sqlite", retryable, other)
            }
        }
    }
}

/// `Result` with [`SqliteError`].
pub(crate) type Result<T, E = SqliteError> = std::result::Result<T, E>;
