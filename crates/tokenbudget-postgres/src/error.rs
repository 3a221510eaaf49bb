//! This crate's private error type, converted into [`tokenbudget_core::Error`] at the API.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// What can go wrong inside the Postgres store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    /// The rule refused the command (bad input, conflict): passed through unchanged.
    #[error(transparent)]
    Rejected(#[from] tokenbudget_core::Error),
    /// A statement failed or the connection broke.
    #[error("{}", describe(.source, *.while_committing))]
    Postgres {
        #[source]
        source: tokio_postgres::Error,
        /// The failure came after COMMIT was sent: the transaction may have committed.
        while_committing: bool,
    },
    /// No connection could be had from the pool.
    #[error("connection pool: {0}")]
    Pool(#[from] PoolError),
    /// The chain changed between locking and reading (a budget or reservation appeared in
    /// between): the attempt is discarded and retried.
    #[error("the budget chain changed while it was being locked: {0}")]
    Raced(String),
    /// The database was migrated by a newer version of this crate.
    #[error(
        "database schema version {found} is newer than the newest this build knows ({supported}): \
         upgrade tokenbudget-postgres, or use another schema"
    )]
    SchemaTooNew { found: i32, supported: i32 },
    /// A stored value does not fit the model (a negative amount, an unknown state, bad JSON).
    #[error("corrupt {what} in the database: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// Every attempt failed; `last` is the last failure. When `outcome_unknown`, an earlier
    /// attempt lost its connection after sending COMMIT, so it may have committed.
    #[error("{}", gave_up(*.attempts, *.outcome_unknown, .last))]
    GaveUp {
        attempts: u32,
        outcome_unknown: bool,
        #[source]
        last: Box<PgError>,
    },
    /// The task running the transaction panicked.
    #[error("the task running the transaction panicked: {0}")]
    Panicked(String),
}

fn describe(source: &tokio_postgres::Error, while_committing: bool) -> String {
    let detail = match source.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => source.to_string(),
    };
    if while_committing && is_connection_failure(source) {
        format!("the connection failed while committing, so the outcome is unknown: {detail}")
    } else {
        detail
    }
}

fn gave_up(attempts: u32, outcome_unknown: bool, last: &PgError) -> String {
    let unknown = if outcome_unknown {
        "; an earlier attempt's COMMIT outcome is unknown (it may have committed)"
    } else {
        ""
    };
    format!("gave up after {attempts} attempts{unknown}: {last}")
}

impl PgError {
    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }

    /// A failure of a statement or connection before COMMIT was sent.
    pub(crate) fn pg(source: tokio_postgres::Error) -> Self {
        Self::Postgres {
            source,
            while_committing: false,
        }
    }

    /// True when running the whole transaction again may succeed: deadlock, serialization
    /// failure, lock timeout, a unique key taken by a concurrent transaction, a lost
    /// connection, a pool timeout.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Postgres { source, .. } => {
                is_connection_failure(source)
                    || source.code().is_some_and(|code| {
                        [
                            SqlState::T_R_SERIALIZATION_FAILURE,
                            SqlState::T_R_DEADLOCK_DETECTED,
                            SqlState::LOCK_NOT_AVAILABLE,
                            SqlState::UNIQUE_VIOLATION,
                            SqlState::QUERY_CANCELED,
                        ]
                        .contains(code)
                    })
            }
            Self::Pool(e) => match e {
                PoolError::Timeout(_) => true,
                PoolError::Backend(e) => is_connection_failure(e),
                _ => false,
            },
            Self::Raced(_) => true,
            Self::GaveUp { last, .. } => last.is_transient(),
            Self::Rejected(_)
            | Self::SchemaTooNew { .. }
            | Self::Corrupt { .. }
            | Self::Panicked(_) => false,
        }
    }

    /// True when the transaction may have committed although the attempt failed: the
    /// connection broke after COMMIT was sent.
    pub(crate) fn outcome_unknown(&self) -> bool {
        match self {
            Self::Postgres {
                source,
                while_committing: true,
            } => is_connection_failure(source),
            Self::GaveUp {
                outcome_unknown,
                last,
                ..
            } => *outcome_unknown || last.outcome_unknown(),
            _ => false,
        }
    }

    /// The public error. `safe_to_repeat` says whether the operation may be run again by the
    /// caller even when its outcome is unknown (commit, rollback, sweep, and reserve with an
    /// idempotency key are; reserve without a key and create are not). The outcome is unknown
    /// when any attempt, not only the last, lost its connection after sending COMMIT.
    pub(crate) fn into_core(self, safe_to_repeat: bool) -> tokenbudget_core::Error {
        match self {
            Self::Rejected(e) => e,
            other => {
                let retryable =
                    other.is_transient() && (safe_to_repeat || !other.outcome_unknown());
                tokenbudget_core::Error::storage("postgres", retryable, other)
            }
        }
    }
}

impl PgError {
    /// [`PgError::into_core`] for a failure shared by several operations (a batch's): each
    /// gets its own `retryable`, all the same source.
    pub(crate) fn shared_into_core(
        err: &std::sync::Arc<PgError>,
        safe_to_repeat: bool,
    ) -> tokenbudget_core::Error {
        let retryable = err.is_transient() && (safe_to_repeat || !err.outcome_unknown());
        tokenbudget_core::Error::storage("postgres", retryable, err.clone())
    }
}

/// For operations that may not be repeated blindly: see [`PgError::into_core`].
impl From<PgError> for tokenbudget_core::Error {
    fn from(e: PgError) -> Self {
        e.into_core(false)
    }
}

/// The connection is gone or going: closed, an I/O error, or the server ending the session
/// (`pg_terminate_backend`, shutdown, idle-in-transaction timeout, class 08 errors).
pub(crate) fn is_connection_failure(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08")
            || code.starts_with("57P")
            || code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT.code()
            || code == SqlState::TOO_MANY_CONNECTIONS.code();
    }
    // Not a server error: I/O (including a connect timeout, reported as `TimedOut`).
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::pg(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_pass_through_and_storage_errors_carry_the_backend() {
        let rejected = PgError::Rejected(tokenbudget_core::Error::Config {
            message: "x".into(),
        });
        assert!(matches!(
            rejected.into_core(true),
            tokenbudget_core::Error::Config { .. }
        ));
        let raced = PgError::Raced("budget appeared".into()).into_core(false);
        assert!(raced.is_retryable());
        assert!(matches!(
            raced,
            tokenbudget_core::Error::Storage {
                backend: "postgres",
                ..
            }
        ));
        let corrupt = PgError::corrupt("budget", "negative used").into_core(true);
        assert!(!corrupt.is_retryable());
        assert!(corrupt.to_string().contains("negative used"));
    }

    #[test]
    fn pool_timeouts_are_retryable() {
        let e = PgError::Pool(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait));
        assert!(e.is_transient());
        assert!(!e.outcome_unknown());
        assert!(e.into_core(false).is_retryable());
        assert!(!PgError::Pool(PoolError::Closed).is_transient());
    }
}
