//! The core's error type: bad input, conflicts with earlier requests, and storage failures.
//!
//! Not having enough budget is not an error: it is a [`Refusal`](crate::Refusal) inside
//! [`ReserveOutcome`](crate::ReserveOutcome).

use std::time::Duration;

use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::model::ReservationState;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, with the ids and numbers needed to act on it.
///
/// Every variant except [`Error::Storage`] means the request was rejected and nothing changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A budget id is empty, longer than 128 characters, or has a character outside
    /// `[A-Za-z0-9_.:-]`.
    #[error("invalid budget id {id:?}: expected 1-128 characters of [A-Za-z0-9_.:-]")]
    InvalidBudgetId {
        /// The rejected text.
        id: String,
    },
    /// A reservation id is not a UUID.
    #[error("invalid reservation id {id:?}: expected a UUID")]
    InvalidReservationId {
        /// The rejected text.
        id: String,
    },
    /// An idempotency key is empty, too long, or not printable ASCII.
    #[error("invalid idempotency key {key:?}: expected 1-255 printable ASCII characters")]
    InvalidIdempotencyKey {
        /// The rejected key.
        key: String,
    },
    /// A token amount is outside its allowed range.
    #[error("invalid {field}: {value} is outside {min}..={max}")]
    InvalidAmount {
        /// Which amount (`"tokens"`, `"limit"`, `"actual"`).
        field: &'static str,
        /// The rejected value.
        value: i128,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value (`i64::MAX`: SQL stores amounts as 64-bit integers).
        max: u64,
    },
    /// A reservation timeout is zero or so large the expiry time overflows.
    #[error("invalid reservation timeout {timeout:?}: must be between 1ms and 366 days")]
    InvalidTimeout {
        /// The rejected timeout.
        timeout: Duration,
    },
    /// No budget has this id.
    #[error("budget {id} not found")]
    BudgetNotFound {
        /// The unknown id.
        id: BudgetId,
    },
    /// A budget with this id already exists.
    #[error("budget {id} already exists")]
    BudgetExists {
        /// The duplicate id.
        id: BudgetId,
    },
    /// The parent named when creating a budget does not exist.
    #[error("parent budget {parent} of {id} not found")]
    ParentNotFound {
        /// The budget being created.
        id: BudgetId,
        /// The unknown parent.
        parent: BudgetId,
    },
    /// Creating this budget would make its chain deeper than allowed.
    #[error("budget {id} would be {depth} levels deep; at most {max} are allowed")]
    HierarchyTooDeep {
        /// The budget being created.
        id: BudgetId,
        /// Its depth (a workflow budget is depth 1).
        depth: usize,
        /// The allowed maximum.
        max: usize,
    },
    /// No reservation has this id.
    #[error("reservation {id} not found")]
    ReservationNotFound {
        /// The unknown id.
        id: ReservationId,
    },
    /// The request contradicts what already happened to the reservation (commit with a
    /// different amount, commit after rollback, rollback after commit).
    #[error("reservation {id} is {state}: {reason}")]
    ReservationConflict {
        /// The reservation.
        id: ReservationId,
        /// Its current state.
        state: ReservationState,
        /// What contradicts it.
        reason: String,
    },
    /// An idempotency key was reused with different parameters.
    #[error("idempotency key {key} was first used for reservation {existing} with different parameters: {reason}")]
    IdempotencyConflict {
        /// The key.
        key: IdempotencyKey,
        /// The reservation the key belongs to.
        existing: ReservationId,
        /// What differs.
        reason: String,
    },
    /// A charge's idempotency key was reused with different numbers.
    #[error("charge key {key} was first used with different parameters: {reason}")]
    ChargeConflict {
        /// The key.
        key: IdempotencyKey,
        /// What differs.
        reason: String,
    },
    /// A note is longer than [`MAX_NOTE_LEN`](crate::model::MAX_NOTE_LEN) bytes.
    #[error("invalid note: {len} bytes; at most {max} are allowed")]
    InvalidNote {
        /// Its length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// An amount typed as text (a CLI argument, a config value) does not parse in its unit.
    #[error("invalid {field} {text:?}: {reason}")]
    InvalidAmountText {
        /// Which amount.
        field: &'static str,
        /// The text.
        text: String,
        /// Why.
        reason: String,
    },
    /// A model name is empty, too long or has control characters.
    #[error("invalid model name {model:?}")]
    InvalidModel {
        /// The name (its first 80 characters).
        model: String,
    },
    /// A budget period is malformed (an unknown name or time zone, a length under a second).
    #[error("invalid period: {message}")]
    InvalidPeriod {
        /// What is wrong.
        message: String,
    },
    /// A budget's unit differs from its parent's: a chain counts in one unit.
    #[error("budget {id} would count in {unit} under {parent}, which counts in {parent_unit}")]
    UnitMismatch {
        /// The budget being created.
        id: BudgetId,
        /// The unit asked for.
        unit: crate::model::Unit,
        /// The parent.
        parent: BudgetId,
        /// The parent's unit.
        parent_unit: crate::model::Unit,
    },
    /// A total would exceed `i64::MAX`.
    #[error("{field} of budget {budget_id} would exceed {max}", max = i64::MAX)]
    Overflow {
        /// The budget.
        budget_id: BudgetId,
        /// Which total (`"used"`, `"reserved"`).
        field: &'static str,
    },
    /// A configuration value (URL, option) is invalid.
    #[error("invalid configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The store failed. [`Error::is_retryable`] says whether trying again may succeed.
    #[error("{backend} store error: {message}")]
    Storage {
        /// Which backend (`"memory"`, `"sqlite"`, `"postgres"`, …).
        backend: &'static str,
        /// What failed.
        message: String,
        /// Whether the whole operation may be retried (lock contention, serialization
        /// failure, deadlock, a connection lost before commit).
        retryable: bool,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// True when trying the same operation again may succeed (storage contention or a
    /// transient connection failure). Input and conflict errors are never retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Storage {
                retryable: true,
                ..
            }
        )
    }

    /// A storage error from `backend`.
    pub fn storage(
        backend: &'static str,
        retryable: bool,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        let source = source.into();
        Self::Storage {
            backend,
            message: source.to_string(),
            retryable,
            source: Some(source),
        }
    }

    /// True when the error is bad input or a conflict with earlier requests, as opposed
    /// to a storage failure.
    pub fn is_rejection(&self) -> bool {
        !matches!(self, Self::Storage { .. } | Self::Config { .. })
    }
}
