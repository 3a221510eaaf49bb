//! The store's operations. Each writing one follows the table in
//! [`Snapshot`](tokenbudget_core::rules::Snapshot): lock the chain (see [`sql`](crate::sql)),
//! read the reservations after the lock, call the rule of the same name in [`rules`], and write
//! the [`Changes`](tokenbudget_core::rules::Changes) it returns. No budget rule lives here.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use async_trait::async_trait;
use tokenbudget_core::model::live_statuses;
use tokenbudget_core::rules::{self, Snapshot, UpdateCommand};
use tokenbudget_core::{
    Budget, BudgetId, Event, EventQuery, IdempotencyKey, NewBudget, RecentQuery, Reservation,
    ReservationId, ReservationQuery, Status, SweepOutcome, Timestamp,
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
        let no_reservations: Vec<Uuid> = Vec::new();
        let (locked, time) = tx
            .begin(
                (sql::LOCK_BATCH, &[&seeds, &no_reservations]),
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
        let created = tx
            .apply(rules::create_budget(&snapshot, &self.new, now))
            .await?;
        // A budget's parent never changes: its first write can be batched already.
        tx.gate()
            .learn(snapshot.budgets.values().chain(std::iter::once(&created)));
        Ok(created)
    }
}

pub(crate) struct Update {
    pub(crate) cmd: UpdateCommand,
    pub(crate) now: Timestamp,
}

#[async_trait]
impl Op for Update {
    type Output = Budget;

    fn name(&self) -> &'static str {
        "update_budget"
    }

    /// A repeat finds the budget as the first attempt left it and changes nothing more.
    fn safe_to_repeat(&self) -> bool {
        true
    }

    async fn attempt(&self, tx: &mut Tx<'_>, _retry: Retry) -> Result<Budget, PgError> {
        let seeds = vec![self.cmd.budget_id.as_str()];
        let caller_now = tx.caller_now(self.now);
        let no_reservations: Vec<Uuid> = Vec::new();
        let (locked, time) = tx
            .begin(
                (sql::LOCK_BATCH, &[&seeds, &no_reservations]),
                Some((sql::CLOCK, &[&caller_now])),
            )
            .await?;
        let now = clock(&time)?;
        let mut budgets = locked_budgets(&locked)?;
        let snapshot = Snapshot::with_budgets(budgets.remove(&self.cmd.budget_id));
        tx.apply(rules::update_budget(&snapshot, &self.cmd, now))
            .await
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
    /// The newest events of some types.
    Recent(RecentQuery),
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
    /// Reservations as the query asks.
    Reservations(ReservationQuery),
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
    pub(crate) reservations: Vec<Reservation>,
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
            Self::Recent(_) => "recent_events",
            Self::Log { .. } => "log_after",
            Self::Status(..) => "status",
            Self::Statuses(_) => "statuses",
            Self::Charge(_) => "charge_by_key",
            Self::Reservations(_) => "reservations",
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
            Self::Recent(query) => {
                let before = query
                    .before
                    .map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
                let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
                let rows = tx
                    .query(sql::RECENT_EVENTS, &[&query.types, &before, &limit])
                    .await?;
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
                if let (Some(budget), Some(row)) = (budgets.first(), rows.first()) {
                    let now = rows::status_clock(row)?;
                    result.statuses.push(Status::live(budget, &due, now));
                }
            }
            Self::Statuses(now) => {
                let now = tx.caller_now(*now);
                let rows = tx.query(sql::STATUSES, &[&now]).await?;
                let (budgets, due) = budgets_and_due(&rows)?;
                // The database's clock when the store decides by it (one value per statement).
                let now = match rows.first() {
                    Some(row) => rows::status_clock(row)?,
                    None => Timestamp::EPOCH,
                };
                result.statuses = live_statuses(budgets, &due, now);
            }
            Self::Reservations(query) => {
                let now = tx.caller_now(query.now);
                let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
                let rows = tx
                    .query(
                        sql::RESERVATIONS,
                        &[
                            &query.budget_id.as_ref().map(BudgetId::as_str),
                            &query.state.map(|s| s.as_str()),
                            &now,
                            &query.after.map(|id| *id.as_uuid()),
                            &limit,
                        ],
                    )
                    .await?;
                result.reservations = rows
                    .iter()
                    .map(rows::reservation)
                    .collect::<Result<_, _>>()?;
            }
            Self::Charge(key) => {
                let rows = tx.query(sql::CHARGE, &[&key.as_str()]).await?;
                result.charge = rows.first().map(rows::charge).transpose()?;
            }
        }
        Ok(result)
    }
}
