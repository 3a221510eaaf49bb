//! The storage trait every backend implements.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::Event;
use crate::id::IdempotencyKey;
use crate::id::{BudgetId, ReservationId};
use crate::model::{Budget, Charge, NewBudget, Reservation, ReservationState, Status};
use crate::outcome::{
    ChargeOutcome, CommitOutcome, ExtendOutcome, ReserveOutcome, RollbackOutcome, SweepOutcome,
};
use crate::rules::{
    ChargeCommand, CommitCommand, ExtendCommand, ReserveCommand, RollbackCommand, UpdateCommand,
};
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

/// Which events to read newest first ([`BudgetStore::recent_events`]): events of some
/// types across every budget, such as the log's refusals and clamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentQuery {
    /// Only events with one of these `type` tags (`RESERVE_REFUSED`, …); none matches nothing.
    pub types: Vec<String>,
    /// Only events with `seq < before` (the last `seq` of the previous page); `None` from the
    /// newest.
    pub before: Option<u64>,
    /// At most this many, in descending `seq` order.
    pub limit: usize,
}

impl RecentQuery {
    /// The newest `limit` events of `types`.
    pub fn of(types: &[&str], limit: usize) -> Self {
        Self {
            types: types.iter().map(|t| (*t).to_owned()).collect(),
            before: None,
            limit,
        }
    }

    /// The refusals and clamps: `RESERVE_REFUSED` and `RESERVE_CLAMPED`.
    pub fn refusals_and_clamps(limit: usize) -> Self {
        Self::of(&["RESERVE_REFUSED", "RESERVE_CLAMPED"], limit)
    }

    /// The page after the one ending at `before`.
    pub fn before(mut self, before: u64) -> Self {
        self.before = Some(before);
        self
    }
}

/// Which reservations to read ([`BudgetStore::reservations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationQuery {
    /// Only reservations made on this budget or any budget below it; `None` for all.
    pub budget_id: Option<BudgetId>,
    /// Only those in this state as seen at `now` ([`Reservation::state_at`]: a hold past its
    /// expiry is `expired` even before a write releases it); `None` for every state.
    pub state: Option<ReservationState>,
    /// The instant states are seen at.
    pub now: Timestamp,
    /// Only reservations with an id greater than this one (the last of the previous page).
    pub after: Option<ReservationId>,
    /// At most this many, ordered by id (ids made by the tracker sort by creation time).
    pub limit: usize,
}

impl ReservationQuery {
    /// Every reservation, seen at `now`.
    pub fn all(now: Timestamp) -> Self {
        Self {
            budget_id: None,
            state: None,
            now,
            after: None,
            limit: usize::MAX,
        }
    }

    /// True when `reservation` answers the query's state and page filters (not the budget
    /// filter, which needs the tree).
    pub fn admits(&self, reservation: &Reservation) -> bool {
        self.state
            .is_none_or(|state| reservation.state_at(self.now) == state)
            && self.after.is_none_or(|after| reservation.id > after)
    }
}

/// A position in the whole event log, for tailing it ([`BudgetStore::log_after`]).
///
/// Ordered by `commit`, then `seq`. In a store whose writes are serialized (memory, SQLite)
/// `commit` is always 0 and the log's order is `seq`. In Postgres, where transactions commit
/// in another order than they take sequence numbers, `commit` is the writing transaction's id,
/// and a page holds only events of transactions that have finished, so nothing can later
/// appear behind a cursor.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogCursor {
    /// The writing transaction's place in commit order (0 where writes are serialized).
    pub commit: u64,
    /// The event's sequence number.
    pub seq: u64,
}

impl LogCursor {
    /// Before the first event.
    pub const START: Self = Self { commit: 0, seq: 0 };
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.commit, self.seq)
    }
}

impl std::str::FromStr for LogCursor {
    type Err = crate::error::Error;

    /// Parses [`LogCursor`]'s `commit.seq` form; a bare number is a `seq` with `commit` 0.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || crate::error::Error::Config {
            message: format!("invalid log cursor {s:?}: expected COMMIT.SEQ or SEQ"),
        };
        let (commit, seq) = match s.split_once('.') {
            Some((commit, seq)) => (commit.parse().map_err(|_| bad())?, seq),
            None => (0, s),
        };
        Ok(Self {
            commit,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// One page of the whole log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// Events after the cursor asked for, in log order.
    pub events: Vec<Event>,
    /// The cursor to ask with next: the last event's position, or the cursor asked with when
    /// the page is empty.
    pub next: LogCursor,
}

/// A shared store.
pub type DynBudgetStore = std::sync::Arc<dyn BudgetStore>;

/// Durable, atomic storage of budgets, reservations and their event log.
///
/// Each writing method is one transaction: load what the command touches under a write lock
/// (see [`Snapshot`](crate::rules::Snapshot) for exactly what), call the rule of the same name
/// in [`rules`](crate::rules), write its [`Changes`](crate::rules::Changes) and events, commit.
/// The budget rules themselves live only in [`rules`](crate::rules). Time is passed in, so a
/// store needs no clock of its own; a store that shares its database across hosts may decide
/// with one authoritative clock instead (Postgres: the database's, read in the transaction),
/// so that hosts whose clocks disagree never expire each other's holds early.
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
    /// - Releases every expired hold of the target's tree first, in the same transaction, so
    ///   an expired hold anywhere (a sibling phase's, say) never causes a refusal.
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

    /// Pushes a held reservation's expiry later.
    ///
    /// # Behavior
    /// - The new expiry is `now + timeout`, or the current one when that is later, with
    ///   `RESERVATION_EXTENDED` on every budget of the chain.
    /// - A reservation past its expiry, committed or rolled back is `ReservationConflict`;
    ///   an unknown one `ReservationNotFound`; nothing is written.
    async fn extend(&self, cmd: ExtendCommand, now: Timestamp) -> Result<ExtendOutcome>;

    /// Records usage that had no reservation on a budget and all its ancestors.
    ///
    /// # Behavior
    /// - Adds the tokens to `used` on every budget of the chain, even past the limit, with
    ///   `TOKENS_CHARGED` (its overrun) and `BUDGET_EXHAUSTED` as for a commit.
    /// - The same key with the same budget and tokens records once; with other numbers it is
    ///   `ChargeConflict`. Keys of charges and of reservations are separate.
    /// - Releases the tree's expired holds first, as reserve does.
    async fn charge(&self, cmd: ChargeCommand, now: Timestamp) -> Result<ChargeOutcome>;

    /// Changes a budget's limit, or closes or reopens it.
    ///
    /// # Behavior
    /// - Appends `BUDGET_UPDATED` when the limit changes and `BUDGET_CLOSED` /
    ///   `BUDGET_REOPENED` when the open state does, in the same transaction; a command that
    ///   changes nothing appends nothing. Returns the budget as stored after it.
    /// - A lowered limit takes nothing back: new reservations are refused until there is room.
    /// - A closed budget refuses every new reservation on it or below it; held ones still
    ///   commit and roll back, charges are still recorded.
    /// - An unknown budget is `BudgetNotFound`; nothing is written.
    async fn update_budget(&self, cmd: UpdateCommand, now: Timestamp) -> Result<Budget>;

    /// Reads reservations, ordered by id.
    ///
    /// # Behavior
    /// - With a budget: those made on it or on any budget below it.
    /// - With a state: those in that state at the query's `now` (a due hold is `expired`).
    /// - Pages by `after`/`limit` without skipping or repeating any.
    async fn reservations(&self, query: ReservationQuery) -> Result<Vec<Reservation>>;

    /// Reads the charge recorded with `key`.
    async fn charge_by_key(&self, key: &IdempotencyKey) -> Result<Option<Charge>>;

    /// Releases up to `max` held reservations whose expiry is at or before `now`.
    ///
    /// # Behavior
    /// - Each expired reservation is released exactly once, however many sweepers run.
    async fn sweep_expired(&self, now: Timestamp, max: usize) -> Result<SweepOutcome>;

    /// A budget's live status at `now`, read without writing.
    ///
    /// # Behavior
    /// - The stored totals less every held reservation due at `now` made on the budget or a
    ///   descendant ([`Status::live`]), from one consistent read: an expired hold is never
    ///   reported as open or reserved, even before a write releases it.
    /// - `None` for an unknown budget.
    async fn status(&self, id: &BudgetId, now: Timestamp) -> Result<Option<Status>>;

    /// Every budget's live status at `now` ([`live_statuses`](crate::model::live_statuses)),
    /// ordered by id, from one consistent read.
    async fn statuses(&self, now: Timestamp) -> Result<Vec<Status>>;

    /// Reads one budget as stored.
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

    /// Reads the newest events of some types across every budget, newest first.
    ///
    /// # Behavior
    /// - Only events whose `type` is one of `query.types`, of any budget, in descending `seq`.
    /// - Pages by `before`/`limit` (passing each page's last `seq` as the next `before`)
    ///   without skipping or repeating any event committed before the first page was read.
    ///
    /// # Note
    /// Where transactions commit out of `seq` order (Postgres), an event committed after a
    /// page was read may sort behind it: this read is for looking back, not for tailing the
    /// log ([`BudgetStore::log_after`] is).
    async fn recent_events(&self, query: RecentQuery) -> Result<Vec<Event>>;

    /// Reads up to `limit` events of the whole log after `after`, in log order.
    ///
    /// # Behavior
    /// - A reader that passes each page's `next` back sees every event exactly once, however
    ///   writers interleave: no event can appear behind a cursor already handed out.
    async fn log_after(&self, after: LogCursor, limit: usize) -> Result<LogPage>;
}
