//! The store's operations. Each writing one follows the table in
//! [`Snapshot`](tokenbudget_core::rules::Snapshot): lock the chain (see [`sql`](crate::sql)),
//! read the reservations after the lock, call the rule of the same name in [`rules`], and write
//! the [`Changes`](tokenbudget_core::rules::Changes) it returns. No budget rule lives here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use async_trait::async_trait;
use tokenbudget_core::model::live_statuses;
use tokenbudget_core::rules::{
    self, ChargeCommand, CommitCommand, ExtendCommand, ReserveCommand, RollbackCommand, Snapshot,
};
use tokenbudget_core::{
    Budget, BudgetId, ChargeOutcome, CommitOutcome, Event, EventQuery, ExtendOutcome,
    IdempotencyKey, NewBudget, Reservation, ReservationId, ReserveOutcome, RollbackOutcome, Status,
    SweepOutcome, Timestamp,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::PgError;
use crate::tx::{Op, Retry, Tx};
use crate::{rows, sql};

/// The locked budgets, by id.
fn locked_budgets(rows: &[Row]) -> Result<BTreeMap<BudgetId, Budget>, PgError> {
    rows.iter()
        .map(|row| rows::budget(row).map(|b| (b.id.clone(), b)))
        .collect()
}

/// The rows of [`sql::READ_RESERVATIONS`], sorted by why each was read.
#[derive(Default)]
struct Loaded {
    /// The reservation with the command's id.
    target: Option<Reservation>,
    /// The reservation holding the command's idempotency key.
    by_key: Option<Reservation>,
    /// Held reservations due on the locked budgets.
    due: Vec<Reservation>,
}

impl Loaded {
    /// The reservations, and the decision's time from the last column (every row has it; a
    /// row with no reservation only carries it).
    fn new(
        rows: &[Row],
        locked: &BTreeMap<BudgetId, Budget>,
    ) -> Result<(Self, Timestamp), PgError> {
        let mut loaded = Self::default();
        let first = rows
            .first()
            .ok_or_else(|| PgError::corrupt("read", "no row with the decision's time"))?;
        let now = Timestamp::from_micros(first.try_get(12)?);
        for row in rows {
            if row.try_get::<_, Option<Uuid>>(0)?.is_none() {
                continue;
            }
            let reservation = rows::reservation(row)?;
            let (target, by_key, due): (bool, bool, bool) =
                (row.try_get(9)?, row.try_get(10)?, row.try_get(11)?);
            // Due anywhere in the tree: the ones outside the locked chain get their chains
            // locked next (see `lock_and_load`).
            if due {
                loaded.due.push(reservation.clone());
            }
            if by_key {
                loaded.by_key = Some(reservation.clone());
            }
            if target {
                if !locked.contains_key(&reservation.budget_id) {
                    return Err(PgError::Raced(format!(
                        "reservation {} appeared after its chain was locked",
                        reservation.id
                    )));
                }
                loaded.target = Some(reservation);
            }
        }
        Ok((loaded, now))
    }
}

/// Begins, locks the chain of `budgets` and of reservation `id` (root first), reads the
/// reservations that reserve, commit and rollback need with the decision's time, and then
/// locks the chains of the tree's due holds that lie outside the chain (the root is held, so
/// this never waits: see [`sql`](crate::sql) on the lock order).
///
/// Returns the locked budgets, the reservations, and the time to decide at.
async fn lock_and_load(
    tx: &mut Tx<'_>,
    budgets: &[&str],
    id: ReservationId,
    key: Option<&str>,
    now: Timestamp,
) -> Result<(BTreeMap<BudgetId, Budget>, Loaded, Timestamp), PgError> {
    let id = *id.as_uuid();
    let caller_now = tx.caller_now(now);
    let (locked, read) = tx
        .begin(
            (sql::LOCK_CHAIN, &[&budgets, &id]),
            Some((sql::READ_RESERVATIONS, &[&budgets, &id, &key, &caller_now])),
        )
        .await?;
    let mut locked = locked_budgets(&locked)?;
    let (loaded, now) = Loaded::new(&read, &locked)?;
    let more: BTreeSet<&str> = loaded
        .due
        .iter()
        .filter(|r| !locked.contains_key(&r.budget_id))
        .map(|r| r.budget_id.as_str())
        .collect();
    if !more.is_empty() {
        let more: Vec<&str> = more.into_iter().collect();
        let rows = tx.query(sql::LOCK_MORE, &[&more]).await?;
        locked.extend(locked_budgets(&rows)?);
    }
    tx.gate().learn(locked.values());
    Ok((locked, loaded, now))
}

/// The decision's time from the first row of [`sql::CLOCK`].
fn clock(rows: &[Row]) -> Result<Timestamp, PgError> {
    let row = rows
        .first()
        .ok_or_else(|| PgError::corrupt("clock", "no row"))?;
    Ok(Timestamp::from_micros(row.try_get(0)?))
}

pub(crate) struct Create {
    new: NewBudget,
    now: Timestamp,
    /// The time of the first attempt that read one, kept for the retries: a retry after an
    /// unknown outcome recognises the row it may have written by it.
    decided_at: OnceLock<i64>,
}

impl Create {
    pub(crate) fn new(new: NewBudget, now: Timestamp) -> Self {
        Self {
            new,
            now,
            decided_at: OnceLock::new(),
        }
    }
}

#[async_trait]
impl Op for Create {
    type Output = Budget;

    fn name(&self) -> &'static str {
        "create_budget"
    }

    fn safe_to_repeat(&self) -> bool {
        false
    }

    async fn attempt(&self, tx: &mut Tx<'_>, retry: Retry) -> Result<Budget, PgError> {
        let mut seeds = vec![self.new.id.as_str()];
        seeds.extend(self.new.parent.as_ref().map(BudgetId::as_str));
        let caller_now = self
            .decided_at
            .get()
            .copied()
            .or_else(|| tx.caller_now(self.now));
        let (locked, time) = tx
            .begin(
                (sql::LOCK_CHAIN, &[&seeds, &Uuid::nil()]),
                Some((sql::CLOCK, &[&caller_now])),
            )
            .await?;
        let now = clock(&time)?;
        let now = Timestamp::from_micros(*self.decided_at.get_or_init(|| now.as_micros()));
        let snapshot = Snapshot::with_budgets(locked_budgets(&locked)?.into_values());
        if retry.after_unknown_outcome {
            // The earlier attempt may have committed: its row, stamped with this command's
            // time, is this command's own write and not a duplicate.
            if let Some(existing) = snapshot.budgets.get(&self.new.id) {
                if existing.parent == self.new.parent
                    && existing.limit == self.new.limit
                    && existing.created_at == now
                {
                    let existing = existing.clone();
                    tx.finish().await?;
                    return Ok(existing);
                }
            }
        }
        tx.apply(rules::create_budget(&snapshot, &self.new, now))
            .await
    }
}

pub(crate) struct Reserve {
    pub(crate) cmd: ReserveCommand,
    pub(crate) now: Timestamp,
}

#[async_trait]
impl Op for Reserve {
    type Output = ReserveOutcome;

    fn name(&self) -> &'static str {
        "reserve"
    }

    fn safe_to_repeat(&self) -> bool {
        self.cmd.idempotency_key.is_some()
    }

    async fn attempt(&self, tx: &mut Tx<'_>, _retry: Retry) -> Result<ReserveOutcome, PgError> {
        let cmd = &self.cmd;
        let key = cmd.idempotency_key.as_ref().map(|k| k.as_str());
        let (budgets, loaded, now) = lock_and_load(
            tx,
            &[cmd.budget_id.as_str()],
            cmd.reservation_id,
            key,
            self.now,
        )
        .await?;
        // The reservation with this command's id, if it exists (a retry whose earlier attempt
        // committed although its reply was lost: the rule answers it as a replay), else the
        // one holding the idempotency key.
        let snapshot = Snapshot {
            budgets,
            reservation: loaded.target.or(loaded.by_key),
            expired: loaded.due,
            charge: None,
        };
        tx.apply(rules::reserve(&snapshot, cmd, now)).await
    }
}

/// Locks the reservation's chain and loads it with the reservation, as commit and rollback
/// need; returns the snapshot and the time to decide at.
async fn settle_snapshot(
    tx: &mut Tx<'_>,
    id: ReservationId,
    now: Timestamp,
) -> Result<(Snapshot, Timestamp), PgError> {
    let (budgets, loaded, now) = lock_and_load(tx, &[], id, None, now).await?;
    let snapshot = Snapshot {
        budgets,
        reservation: loaded.target,
        expired: loaded.due,
        charge: None,
    };
    Ok((snapshot, now))
}

pub(crate) struct Commit {
    pub(crate) cmd: CommitCommand,
    pub(crate) now: Timestamp,
}

#[async_trait]
impl Op for Commit {
    type Output = CommitOutcome;

    fn name(&self) -> &'static str {
        "commit"
    }

    /// The rule answers an identical repeat as a replay.
    fn safe_to_repeat(&self) -> bool {
        true
    }

    async fn attempt(&self, tx: &mut Tx<'_>, _retry: Retry) -> Result<CommitOutcome, PgError> {
        let (snapshot, now) = settle_snapshot(tx, self.cmd.reservation_id, self.now).await?;
        tx.apply(rules::commit(&snapshot, &self.cmd, now)).await
    }
}

pub(crate) struct Rollback {
    pub(crate) cmd: RollbackCommand,
    pub(crate) now: Timestamp,
}

#[async_trait]
impl Op for Rollback {
    type Output = RollbackOutcome;

    fn name(&self) -> &'static str {
        "rollback"
    }

    /// The rule releases a hold once; a repeat releases nothing more.
    fn safe_to_repeat(&self) -> bool {
        true
    }

    async fn attempt(&self, tx: &mut Tx<'_>, _retry: Retry) -> Result<RollbackOutcome, PgError> {
        let (snapshot, now) = settle_snapshot(tx, self.cmd.reservation_id, self.now).await?;
        tx.apply(rules::rollback(&snapshot, &self.cmd, now)).await
    }
}

pub(crate) struct Extend {
    pub(crate) cmd: ExtendCommand,
    pub(crate) now: Timestamp,
}

#[async_trait]
impl Op for Extend {
    type Output = ExtendOutcome;

    fn name(&self) -> &'static str {
        "extend"
    }

    /// A repeat moves the expiry to the later of the two: never shorter than asked.
    fn safe_to_repeat(&self) -> bool {
        true
    }

    async fn attempt(&self, tx: &mut Tx<'_>, _retry: Retry) -> Result<ExtendOutcome, PgError> {
        let (snapshot, now) = settle_snapshot(tx, self.cmd.reservation_id, self.now).await?;
        tx.apply(rules::extend(&snapshot, &self.cmd, now)).await
    }
}

pub(crate) struct Charge {
    pub(crate) cmd: ChargeCommand,
    pub(crate) now: Timestamp,
}

#[async_trait]
impl Op for Charge {
    type Output = ChargeOutcome;

    fn name(&self) -> &'static str {
        "charge"
    }

    /// The key makes a repeat a replay.
    fn safe_to_repeat(&self) -> bool {
        true
    }

    async fn attempt(&self, tx: &mut Tx<'_>, _retry: Retry) -> Result<ChargeOutcome, PgError> {
        let cmd = &self.cmd;
        let (budgets, loaded, now) = lock_and_load(
            tx,
            &[cmd.budget_id.as_str()],
            ReservationId::from_uuid(Uuid::nil()),
            None,
            self.now,
        )
        .await?;
        // Read under the lock of the budget's tree: a charge with this key on the same tree
        // has committed or not started. (On another tree, the key's uniqueness makes one of
        // two concurrent inserts fail and its retry replay.)
        let charge = tx
            .query(sql::CHARGE, &[&cmd.key.as_str()])
            .await?
            .first()
            .map(rows::charge)
            .transpose()?;
        let snapshot = Snapshot {
            budgets,
            reservation: None,
            expired: loaded.due,
            charge,
        };
        tx.apply(rules::charge(&snapshot, cmd, now)).await
    }
}

pub(crate) struct Sweep {
    pub(crate) now: Timestamp,
    pub(crate) max: usize,
}

#[async_trait]
impl Op for Sweep {
    type Output = SweepOutcome;

    fn name(&self) -> &'static str {
        "sweep_expired"
    }

    fn safe_to_repeat(&self) -> bool {
        true
    }

    async fn attempt(&self, tx: &mut Tx<'_>, _retry: Retry) -> Result<SweepOutcome, PgError> {
        let caller_now = tx.caller_now(self.now);
        let max = i64::try_from(self.max).unwrap_or(i64::MAX);
        let (locked, time) = tx
            .begin(
                (sql::LOCK_DUE_CHAINS, &[&caller_now, &max]),
                Some((sql::CLOCK, &[&caller_now])),
            )
            .await?;
        // Read after the lock: at least the time the candidates were chosen by.
        let now = clock(&time)?;
        if locked.is_empty() {
            tx.finish().await?;
            return Ok(SweepOutcome::default());
        }
        let budgets = locked_budgets(&locked)?;
        let ids: Vec<&str> = budgets.keys().map(BudgetId::as_str).collect();
        let expired = tx
            .query(sql::READ_DUE, &[&ids, &now.as_micros(), &max])
            .await?
            .iter()
            .map(rows::reservation)
            .collect::<Result<Vec<_>, _>>()?;
        let snapshot = Snapshot {
            budgets,
            reservation: None,
            expired,
            charge: None,
        };
        tx.apply(rules::sweep(&snapshot, now)).await
    }
}

/// The budgets of [`sql::STATUS`] or [`sql::STATUSES`] rows (each once, in row order) and the
/// due reservations.
fn budgets_and_due(rows: &[Row]) -> Result<(Vec<Budget>, Vec<Reservation>), PgError> {
    let (mut budgets, mut due) = (Vec::<Budget>::new(), Vec::new());
    for row in rows {
        let (budget, hold) = rows::budget_and_due(row)?;
        if budgets.last().map(|b| &b.id) != Some(&budget.id) {
            budgets.push(budget);
        }
        due.extend(hold);
    }
    Ok((budgets, due))
}

/// The reads: one statement each, outside any transaction.
pub(crate) enum Read {
    Budget(BudgetId),
    Budgets,
    Reservation(ReservationId),
    Events(EventQuery),
    /// The whole log after (transaction id, seq), at most `limit` events.
    Log {
        after: (u64, u64),
        limit: usize,
    },
    /// A budget's live status at `now`.
    Status(BudgetId, Timestamp),
    /// Every budget's live status at `now`.
    Statuses(Timestamp),
    /// The charge with this key.
    Charge(IdempotencyKey),
}

#[derive(Default)]
pub(crate) struct ReadResult {
    pub(crate) budgets: Vec<Budget>,
    pub(crate) reservation: Option<Reservation>,
    pub(crate) events: Vec<Event>,
    /// With [`Read::Log`]: the cursor after the last event read, or the one given.
    pub(crate) next: (u64, u64),
    pub(crate) statuses: Vec<Status>,
    pub(crate) charge: Option<tokenbudget_core::Charge>,
}

#[async_trait]
impl Op for Read {
    type Output = ReadResult;

    fn name(&self) -> &'static str {
        match self {
            Self::Budget(_) => "budget",
            Self::Budgets => "list_budgets",
            Self::Reservation(_) => "reservation",
            Self::Events(_) => "events",
            Self::Log { .. } => "log_after",
            Self::Status(..) => "status",
            Self::Statuses(_) => "statuses",
            Self::Charge(_) => "charge_by_key",
        }
    }

    fn safe_to_repeat(&self) -> bool {
        true
    }

    async fn attempt(&self, tx: &mut Tx<'_>, _retry: Retry) -> Result<ReadResult, PgError> {
        let mut result = ReadResult::default();
        match self {
            Self::Budget(id) => {
                let rows = tx.query(sql::BUDGET, &[&id.as_str()]).await?;
                result.budgets = rows.iter().map(rows::budget).collect::<Result<_, _>>()?;
            }
            Self::Budgets => {
                let rows = tx.query(sql::LIST_BUDGETS, &[]).await?;
                result.budgets = rows.iter().map(rows::budget).collect::<Result<_, _>>()?;
            }
            Self::Reservation(id) => {
                let rows = tx.query(sql::RESERVATION, &[id.as_uuid()]).await?;
                result.reservation = rows.first().map(rows::reservation).transpose()?;
            }
            Self::Events(query) => {
                // `seq` is a BIGINT: nothing lies beyond i64::MAX.
                let Ok(after) = i64::try_from(query.after_seq) else {
                    return Ok(result);
                };
                let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
                let rows = match &query.budget_id {
                    None => tx.query(sql::EVENTS, &[&after, &limit]).await?,
                    Some(id) => {
                        tx.query(sql::EVENTS_OF_BUDGET, &[&after, &limit, &id.as_str()])
                            .await?
                    }
                };
                result.events = rows.iter().map(rows::event).collect::<Result<_, _>>()?;
            }
            Self::Log { after, limit } => {
                result.next = *after;
                // Both are BIGINT: nothing lies beyond i64::MAX.
                let (Ok(xid), Ok(seq)) = (i64::try_from(after.0), i64::try_from(after.1)) else {
                    return Ok(result);
                };
                let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
                let rows = tx.query(sql::LOG_AFTER, &[&xid, &seq, &limit]).await?;
                for row in &rows {
                    let (event, xid) = rows::log_event(row)?;
                    result.next = (xid, event.seq);
                    result.events.push(event);
                }
            }
            Self::Status(id, now) => {
                let now = tx.caller_now(*now);
                let rows = tx.query(sql::STATUS, &[&id.as_str(), &now]).await?;
                let (budgets, due) = budgets_and_due(&rows)?;
                if let Some(budget) = budgets.first() {
                    result.statuses.push(Status::live(budget, &due));
                }
            }
            Self::Statuses(now) => {
                let now = tx.caller_now(*now);
                let rows = tx.query(sql::STATUSES, &[&now]).await?;
                let (budgets, due) = budgets_and_due(&rows)?;
                result.statuses = live_statuses(budgets, &due);
            }
            Self::Charge(key) => {
                let rows = tx.query(sql::CHARGE, &[&key.as_str()]).await?;
                result.charge = rows.first().map(rows::charge).transpose()?;
            }
        }
        Ok(result)
    }
}
