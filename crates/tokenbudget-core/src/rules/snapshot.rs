//! What a store loads before calling a rule, the commands, and what a rule returns.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::event::NewEvent;
use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::model::{Budget, Reservation};

/// The locked state a rule decides on.
///
/// What a store loads, inside the transaction and under its write lock, for each command:
///
/// | command | `budgets` | `reservation` | `expired` |
/// |---|---|---|---|
/// | create | the new id if it exists, and the parent with all its ancestors | — | — |
/// | reserve | the target budget and all its ancestors | the reservation with the command's id if it exists (a retry), else the one holding the idempotency key, if any | held reservations made on any budget in `budgets` with `expires_at <= now` |
/// | commit, rollback | the reservation's budget and all its ancestors | the reservation | as for reserve |
/// | sweep | every budget in the chains of the reservations in `expired` | — | held reservations with `expires_at <= now` (any number; a store may cap the batch) |
///
/// A budget's chain is derived from `parent` links, which never change, so a store may find
/// the chain's ids without a lock and then lock all of them at once (in one fixed order).
/// Reservations must be read after the lock is taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The budgets loaded under lock.
    pub budgets: BTreeMap<BudgetId, Budget>,
    /// The reservation the command is about (commit, rollback) or the one that already holds
    /// the idempotency key (reserve).
    pub reservation: Option<Reservation>,
    /// Held reservations past their expiry, to release in the same transaction.
    pub expired: Vec<Reservation>,
}

impl Snapshot {
    /// A snapshot of `budgets`.
    pub fn with_budgets(budgets: impl IntoIterator<Item = Budget>) -> Self {
        Self {
            budgets: budgets.into_iter().map(|b| (b.id.clone(), b)).collect(),
            ..Self::default()
        }
    }
}

/// Reserve `tokens` on `budget_id` and every ancestor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveCommand {
    /// The id the new reservation gets (made by the tracker's id generator).
    pub reservation_id: ReservationId,
    /// The budget to reserve on.
    pub budget_id: BudgetId,
    /// Tokens to hold, 1 to `i64::MAX`.
    pub tokens: u64,
    /// How long the hold lasts before expiry releases it.
    pub timeout: Duration,
    /// Makes a retry return the first answer.
    pub idempotency_key: Option<IdempotencyKey>,
}

/// Record `actual` tokens used by a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitCommand {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// Tokens actually used, 0 to `i64::MAX`.
    pub actual: u64,
}

/// Release a reservation's held tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackCommand {
    /// The reservation.
    pub reservation_id: ReservationId,
}

/// What a store writes, in the same transaction, when a rule accepts a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// A budget to insert.
    pub new_budget: Option<Budget>,
    /// Existing budgets' new state (full rows).
    pub budgets: Vec<Budget>,
    /// A reservation to insert.
    pub new_reservation: Option<Reservation>,
    /// Existing reservations' new state (full rows).
    pub reservations: Vec<Reservation>,
    /// Events to append, in this order, each taking the next sequence number.
    pub events: Vec<NewEvent>,
}

impl Changes {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.new_budget.is_none()
            && self.budgets.is_empty()
            && self.new_reservation.is_none()
            && self.reservations.is_empty()
            && self.events.is_empty()
    }
}

/// A rule's answer: what to write, and what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    /// What to write.
    pub changes: Changes,
    /// What to return.
    pub outcome: T,
}
