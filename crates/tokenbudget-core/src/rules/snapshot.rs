//! What a store loads before calling a rule, the commands, and what a rule returns.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::event::NewEvent;
use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::model::{Budget, Charge, Reservation};

/// The locked state a rule decides on.
///
/// What a store loads, inside the transaction and under its write lock, for each command:
///
/// | command | `budgets` | `reservation` | `expired` |
/// |---|---|---|---|
/// | create | the new id if it exists, and the parent with all its ancestors | — | — |
/// | reserve | the target budget and all its ancestors, and every budget in the chains of `expired` | the reservation with the command's id if it exists (a retry), else the one holding the idempotency key, if any | every held reservation with `expires_at <= now` made on any budget of the target's tree (all budgets sharing its root) |
/// | commit, rollback, extend | the reservation's budget and all its ancestors, and the chains of `expired` | the reservation | as for reserve, in the reservation's tree |
/// | charge | the budget and all its ancestors, and the chains of `expired` | — (`charge`: the charge holding the key, if any) | as for reserve |
/// | update | the budget | — | — |
/// | sweep | every budget in the chains of the reservations in `expired` | — | held reservations with `expires_at <= now` (any number; a store may cap the batch) |
///
/// Why the whole tree: a hold made on one phase counts on the workflow above it, so a hold on
/// a sibling that expired but was never released would refuse a reserve it must grant. The
/// rules release every due hold they are given before deciding, so loading all of the tree's
/// makes an expired hold never the cause of a refusal. (This is the same state a sweep at
/// `now` would leave; a late commit of such a hold is still recorded, as after a sweep.)
///
/// A budget's chain is derived from `parent` links, which never change, so a store may find
/// the chain's ids without a lock and then lock all of them at once (in one fixed order).
/// Reservations must be read after the lock is taken. A store that locks rows must lock so
/// that holding a tree's root excludes every other writer of that tree (for example: root
/// first, then the rest in id order), so that the chains of `expired`, learned only after the
/// first lock, can be locked without deadlock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The budgets loaded under lock.
    pub budgets: BTreeMap<BudgetId, Budget>,
    /// The reservation the command is about (commit, rollback) or the one that already holds
    /// the idempotency key (reserve).
    pub reservation: Option<Reservation>,
    /// Held reservations past their expiry, to release in the same transaction.
    pub expired: Vec<Reservation>,
    /// The charge that already holds the command's key (charge only).
    pub charge: Option<Charge>,
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
    /// The model the amount was priced for, kept on the reservation (at most
    /// [`MAX_MODEL_LEN`](crate::model::MAX_MODEL_LEN) bytes).
    pub model: Option<String>,
    /// What the caller first asked to hold, when `tokens` is less (it lowered its request to
    /// fit, as the gateway clamps `max_tokens`): a grant records it as `RESERVE_CLAMPED`.
    pub asked: Option<u64>,
}

/// Change a budget's limit or open state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateCommand {
    /// The budget.
    pub budget_id: BudgetId,
    /// The new limit, 1 to `i64::MAX`, in the budget's unit; `None` keeps it.
    pub limit: Option<u64>,
    /// `Some(true)` closes it, `Some(false)` reopens it; `None` keeps it.
    pub closed: Option<bool>,
}

impl UpdateCommand {
    /// A command that changes nothing yet.
    pub fn new(budget_id: BudgetId) -> Self {
        Self {
            budget_id,
            limit: None,
            closed: None,
        }
    }

    /// Sets the new limit.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Closes (`true`) or reopens (`false`) the budget.
    pub fn closed(mut self, closed: bool) -> Self {
        self.closed = Some(closed);
        self
    }
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

/// Push a held reservation's expiry later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendCommand {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// The new expiry is `now + timeout` (never earlier than the current one).
    pub timeout: Duration,
}

/// Record usage that had no reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeCommand {
    /// Makes the charge happen once: a repeat with the same numbers changes nothing.
    pub key: IdempotencyKey,
    /// The budget to charge (its ancestors are charged too).
    pub budget_id: BudgetId,
    /// Tokens used, 0 to `i64::MAX`.
    pub tokens: u64,
    /// What the usage was, at most [`MAX_NOTE_LEN`](crate::model::MAX_NOTE_LEN) bytes.
    pub note: Option<String>,
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
    /// A charge to insert.
    pub new_charge: Option<Charge>,
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
            && self.new_charge.is_none()
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
