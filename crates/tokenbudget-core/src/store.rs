//! The storage trait every backend implements.

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::event::Event;
use crate::id::{BudgetId, ReservationId};
use crate::model::{Budget, NewBudget, Reservation};
use crate::outcome::{CommitOutcome, ReserveOutcome, RollbackOutcome, SweepOutcome};
use crate::rules::{CommitCommand, ReserveCommand, RollbackCommand};
use crate::time::Timestamp;

/// Which events to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this budget's events; `None` for the whole log.
    pub budget_id: Option<BudgetId>,
    /// Only events with `seq > after_seq`.
    pub after_seq: u64,
    /// At most this many, in `seq` order.
    pub limit: usize,
}

impl EventQuery {
    /// The whole log, from the start.
    pub fn all() -> Self {
        Self {
            budget_id: None,
            after_seq: 0,
            limit: usize::MAX,
        }
    }

    /// One budget's events after `after_seq`.
    pub fn budget(budget_id: BudgetId, after_seq: u64) -> Self {
        Self {
            budget_id: Some(budget_id),
            after_seq,
            limit: usize::MAX,
        }
    }
}

/// A shared store.
pub type DynBudgetStore = std::sync::Arc<dyn BudgetStore>;

/// Durable, atomic storage of budgets, reservations and their event log.
///
/// Each writing method is one transaction: load what the command touches under a write lock
/// (see [`Snapshot`](crate::rules::Snapshot) for exactly what), call the rule of the same name
/// in [`rules`](crate::rules), write its [`Changes`](crate::rules::Changes) and events, commit.
/// The budget rules themselves live only in [`rules`](crate::rules). Time is passed in, so the
/// store never reads a clock of its own.
///
/// The shared conformance suite (`testkit` feature) checks every `# Behavior` bullet below
/// against each backend.
#[async_trait]
pub trait BudgetStore: Send + Sync + fmt::Debug {
    /// The backend's name: `"memory"`, `"sqlite"`, `"postgres"`, …
    fn backend(&self) -> &'static str;

    /// Creates a budget.
    ///
    /// # Behavior
    /// - Appends `BUDGET_CREATED` in the same transaction.
    /// - A duplicate id is `BudgetExists`, an unknown parent `ParentNotFound`; nothing is written.
    async fn create_budget(&self, new: NewBudget, now: Timestamp) -> Result<Budget>;

    /// Reserves tokens on a budget and all its ancestors, atomically.
    ///
    /// # Behavior
    /// - Grants only if every budget in the chain has room (`used + reserved + tokens <= limit`);
    ///   otherwise answers `Refused` naming the budget nearest the target that lacked room.
    /// - Releases expired holds on the chain's budgets first, in the same transaction.
    /// - A repeated idempotency key answers the first reservation and holds nothing more.
    /// - Never overdraws under any concurrency, within or across processes.
    async fn reserve(&self, cmd: ReserveCommand, now: Timestamp) -> Result<ReserveOutcome>;

    /// Commits a reservation's actual usage.
    ///
    /// # Behavior
    /// - Releases the hold and adds the actual usage on every budget of the chain.
    /// - Records a late commit (after expiry) as usage all the same.
    /// - An identical repeat is a replay; a different amount, or a commit after rollback, is
    ///   `ReservationConflict`.
    async fn commit(&self, cmd: CommitCommand, now: Timestamp) -> Result<CommitOutcome>;

    /// Rolls a reservation back.
    ///
    /// # Behavior
    /// - Releases the hold on every budget of the chain, once; repeats change nothing.
    /// - After a commit: `ReservationConflict`.
    async fn rollback(&self, cmd: RollbackCommand, now: Timestamp) -> Result<RollbackOutcome>;

    /// Releases up to `max` held reservations whose expiry is at or before `now`.
    ///
    /// # Behavior
    /// - Each expired reservation is released exactly once, however many sweepers run.
    async fn sweep_expired(&self, now: Timestamp, max: usize) -> Result<SweepOutcome>;

    /// Reads one budget.
    async fn budget(&self, id: &BudgetId) -> Result<Option<Budget>>;

    /// Reads every budget, ordered by id.
    async fn list_budgets(&self) -> Result<Vec<Budget>>;

    /// Reads one reservation.
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>>;

    /// Reads events in `seq` order.
    ///
    /// # Behavior
    /// - A budget's events have strictly increasing `seq` in the order they were committed.
    async fn events(&self, query: EventQuery) -> Result<Vec<Event>>;
}
