//! What the tracker answers: grants, refusals, and the results of settling a reservation.

use serde::{Deserialize, Serialize};

use crate::id::{BudgetId, ReservationId};
use crate::model::{Charge, Reservation, Unit};

/// The answer to a reserve: granted, or refused for lack of budget.
///
/// A refusal is an answer, not an error: it says which budget in the chain lacked room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReserveOutcome {
    /// The tokens are held on the budget and every ancestor.
    Granted(Grant),
    /// Some budget in the chain lacked room; nothing is held.
    Refused(Refusal),
}

impl ReserveOutcome {
    /// The grant, if granted.
    pub fn granted(&self) -> Option<&Grant> {
        match self {
            Self::Granted(grant) => Some(grant),
            Self::Refused(_) => None,
        }
    }

    /// The refusal, if refused.
    pub fn refused(&self) -> Option<&Refusal> {
        match self {
            Self::Granted(_) => None,
            Self::Refused(refusal) => Some(refusal),
        }
    }

    /// `Ok(grant)` or `Err(refusal)`, for `?`.
    pub fn into_result(self) -> Result<Grant, Refusal> {
        match self {
            Self::Granted(grant) => Ok(grant),
            Self::Refused(refusal) => Err(refusal),
        }
    }
}

/// A granted reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The reservation (for a replay, its current state).
    pub reservation: Reservation,
    /// True when this answers a retry with an idempotency key already used: nothing more is
    /// held.
    pub replayed: bool,
}

/// Why a reserve was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Refusal {
    /// The budget in the chain that lacked room or is closed (the one nearest the target).
    pub budget_id: BudgetId,
    /// The amount asked for, in the budget's unit.
    pub requested: u64,
    /// What that budget had available.
    pub available: u64,
    /// Why: no room (the default), or the budget is closed.
    #[serde(default)]
    pub reason: RefusalReason,
    /// The unit of `requested` and `available`.
    #[serde(default)]
    pub unit: Unit,
}

/// Why a budget refused a reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// Not enough available in its current window (or in total).
    #[default]
    NoRoom,
    /// The budget is closed to new reservations.
    Closed,
}

impl Refusal {
    fn describe(&self) -> String {
        match self.reason {
            RefusalReason::NoRoom => format!(
                "budget {} has {} available; {} were requested",
                self.budget_id,
                self.unit.format(self.available),
                self.unit.format(self.requested)
            ),
            RefusalReason::Closed => format!(
                "budget {} is closed to new reservations ({} were requested)",
                self.budget_id,
                self.unit.format(self.requested)
            ),
        }
    }
}

/// The result of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOutcome {
    /// The reservation, now committed.
    pub reservation: Reservation,
    /// Tokens used beyond the reservation (recorded in full all the same).
    pub overrun: u64,
    /// True when the commit arrived after the reservation expired: its usage is recorded, but
    /// its hold had already been released.
    pub late: bool,
    /// True when this repeats an earlier identical commit: nothing changed.
    pub replayed: bool,
}

/// The result of a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackOutcome {
    /// The reservation: released, or expired when its timeout had already released it.
    pub reservation: Reservation,
    /// Tokens this rollback released (zero when already released or expired).
    pub released: u64,
}

/// The result of a sweep of expired reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepOutcome {
    /// The reservations released, each exactly once.
    pub released: Vec<ReservationId>,
}

/// The result of an extend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendOutcome {
    /// The reservation, still held, with its new expiry.
    pub reservation: Reservation,
}

/// The result of a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeOutcome {
    /// The charge as recorded (for a replay, as first recorded).
    pub charge: Charge,
    /// The most tokens by which the charge went past what a budget of its chain had
    /// available (zero when it fit everywhere, and for a replay).
    pub overrun: u64,
    /// True when this repeats an earlier charge with the same key: nothing changed.
    pub replayed: bool,
}
