//! The writing operations: load the [`Snapshot`] the rule needs (see its table), call the rule.
//!
//! Each runs inside the `BEGIN IMMEDIATE` transaction the store opened, so everything read
//! here is read under SQLite's write lock, merged with the batch's earlier writes still in the
//! [`Unit`].

use std::collections::{BTreeSet, HashSet};
use std::future::Future;

use sqlx::SqliteConnection;
use tokenbudget_core::rules::{
    self, CommitCommand, Decision, ReserveCommand, RollbackCommand, Snapshot,
};
use tokenbudget_core::{
    Budget, BudgetId, CommitOutcome, IdempotencyKey, NewBudget, ReservationId, ReserveOutcome,
    RollbackOutcome, SweepOutcome, Timestamp,
};

use crate::error::Result;
use crate::sql::{self, Leaf};
use crate::unit::Unit;

/// A command the store runs as one write transaction.
pub(crate) trait Operation: Send + Sync + 'static {
    /// What the caller gets back.
    type Outcome: Send + 'static;

    /// Loads the snapshot under the write lock, as `unit` has left it, and asks the rule.
    fn decide(
        &self,
        conn: &mut SqliteConnection,
        unit: &mut Unit,
    ) -> impl Future<Output = Result<Decision<Self::Outcome>>> + Send;
}

/// Create a budget.
pub(crate) struct Create {
    pub new: NewBudget,
    pub now: Timestamp,
}

impl Operation for Create {
    type Outcome = Budget;

    async fn decide(
        &self,
        conn: &mut SqliteConnection,
        unit: &mut Unit,
    ) -> Result<Decision<Budget>> {
        unit.flush(conn).await?;
        let mut snapshot = Snapshot::default();
        if let Some(existing) = sql::budget_by_id(conn, &self.new.id).await? {
            snapshot.budgets.insert(existing.id.clone(), existing);
        }
        if let Some(parent) = &self.new.parent {
            add_budgets(&mut snapshot, sql::chain(conn, Leaf::Budget(parent)).await?);
        }
        Ok(rules::create_budget(&snapshot, &self.new, self.now)?)
    }
}

/// Reserve tokens on a chain.
pub(crate) struct Reserve {
    pub cmd: ReserveCommand,
    pub now: Timestamp,
}

impl Operation for Reserve {
    type Outcome = ReserveOutcome;

    async fn decide(
        &self,
        conn: &mut SqliteConnection,
        unit: &mut Unit,
    ) -> Result<Decision<ReserveOutcome>> {
        let cmd = &self.cmd;
        unit.flush_if_new(conn, Some(&cmd.budget_id), None).await?;
        let snapshot = load(
            conn,
            unit,
            Leaf::Budget(&cmd.budget_id),
            cmd.reservation_id,
            cmd.idempotency_key.as_ref(),
            self.now,
        )
        .await?;
        Ok(rules::reserve(&snapshot, cmd, self.now)?)
    }
}

/// Commit a reservation's usage.
pub(crate) struct Commit {
    pub cmd: CommitCommand,
    pub now: Timestamp,
}

impl Operation for Commit {
    type Outcome = CommitOutcome;

    async fn decide(
        &self,
        conn: &mut SqliteConnection,
        unit: &mut Unit,
    ) -> Result<Decision<CommitOutcome>> {
        let snapshot = settle_snapshot(conn, unit, self.cmd.reservation_id, self.now).await?;
        Ok(rules::commit(&snapshot, &self.cmd, self.now)?)
    }
}

/// Roll a reservation back.
pub(crate) struct Rollback {
    pub cmd: RollbackCommand,
    pub now: Timestamp,
}

impl Operation for Rollback {
    type Outcome = RollbackOutcome;

    async fn decide(
        &self,
        conn: &mut SqliteConnection,
        unit: &mut Unit,
    ) -> Result<Decision<RollbackOutcome>> {
        let snapshot = settle_snapshot(conn, unit, self.cmd.reservation_id, self.now).await?;
        Ok(rules::rollback(&snapshot, &self.cmd, self.now)?)
    }
}

/// Release expired holds.
pub(crate) struct Sweep {
    pub now: Timestamp,
    pub max: usize,
}

impl Operation for Sweep {
    type Outcome = SweepOutcome;

    async fn decide(
        &self,
        conn: &mut SqliteConnection,
        unit: &mut Unit,
    ) -> Result<Decision<SweepOutcome>> {
        unit.flush(conn).await?;
        let mut snapshot = Snapshot {
            expired: sql::due(conn, self.now, self.max).await?,
            ..Snapshot::default()
        };
        let origins: BTreeSet<_> = snapshot
            .expired
            .iter()
            .map(|r| r.budget_id.clone())
            .collect();
        for origin in &origins {
            if !snapshot.budgets.contains_key(origin) {
                add_budgets(&mut snapshot, sql::chain(conn, Leaf::Budget(origin)).await?);
            }
        }
        Ok(rules::sweep(&snapshot, self.now)?)
    }
}

/// For commit and rollback: the reservation, its budget's chain and the expired holds on it.
/// An unknown reservation leaves the snapshot empty; the rule answers `ReservationNotFound`.
async fn settle_snapshot(
    conn: &mut SqliteConnection,
    unit: &mut Unit,
    id: ReservationId,
    now: Timestamp,
) -> Result<Snapshot> {
    unit.flush_if_new(conn, None, Some(id)).await?;
    load(conn, unit, Leaf::ReservationOf(id), id, None, now).await
}

/// Reads the chain from `leaf` with the reservations reserve, commit and rollback need, in
/// one statement, and merges the batch's earlier writes into it.
async fn load(
    conn: &mut SqliteConnection,
    unit: &Unit,
    leaf: Leaf<'_>,
    id: ReservationId,
    key: Option<&IdempotencyKey>,
    now: Timestamp,
) -> Result<Snapshot> {
    let (budgets, reservations) = sql::load(conn, leaf, id, key, now).await?;
    let budgets: Vec<Budget> = budgets.into_iter().map(|b| unit.budget(b)).collect();
    let chain: HashSet<&BudgetId> = budgets.iter().map(|b| &b.id).collect();
    let (expired, reservation) = unit.reservations(reservations, &chain, id, key, now);
    Ok(Snapshot {
        expired,
        reservation,
        ..Snapshot::with_budgets(budgets)
    })
}

fn add_budgets(snapshot: &mut Snapshot, budgets: Vec<Budget>) {
    snapshot
        .budgets
        .extend(budgets.into_iter().map(|b| (b.id.clone(), b)));
}
