//! The writing operations: load the [`Snapshot`] the rule needs (see its table), call the rule.
//!
//! Each runs inside the `BEGIN IMMEDIATE` transaction the store opened, so everything read
//! here is read under SQLite's write lock, merged with the batch's earlier writes still in the
//! [`Unit`].

use std::collections::BTreeSet;
use std::future::Future;

use sqlx::SqliteConnection;
use tokenbudget_core::rules::{
    self, ChargeCommand, CommitCommand, Decision, ExtendCommand, ReserveCommand, RollbackCommand,
    Snapshot, UpdateCommand,
};
use tokenbudget_core::{
    Budget, ChargeOutcome, CommitOutcome, ExtendOutcome, NewBudget, ReservationId, ReserveOutcome,
    RollbackOutcome, SweepOutcome, Timestamp,
};

use crate::error::Result;
use crate::sql::{self, Leaf, Want};
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
        unit.learn(snapshot.budgets.values());
        Ok(rules::create_budget(&snapshot, &self.new, self.now)?)
    }
}

/// Change a budget's limit or open state.
pub(crate) struct Update {
    pub cmd: UpdateCommand,
    pub now: Timestamp,
}

impl Operation for Update {
    type Outcome = Budget;

    async fn decide(
        &self,
        conn: &mut SqliteConnection,
        unit: &mut Unit,
    ) -> Result<Decision<Budget>> {
        unit.flush(conn).await?;
        let snapshot = Snapshot::with_budgets(sql::budget_by_id(conn, &self.cmd.budget_id).await?);
        unit.learn(snapshot.budgets.values());
        Ok(rules::update_budget(&snapshot, &self.cmd, self.now)?)
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
        let want = Want {
            leaf: Leaf::Budget(&cmd.budget_id),
            reservation: Some(cmd.reservation_id),
            key: cmd.idempotency_key.as_ref(),
            charge: None,
            now: self.now,
        };
        let snapshot = load(conn, unit, want).await?;
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

/// Push a held reservation's expiry later.
pub(crate) struct Extend {
    pub cmd: ExtendCommand,
    pub now: Timestamp,
}

impl Operation for Extend {
    type Outcome = ExtendOutcome;

    async fn decide(
        &self,
        conn: &mut SqliteConnection,
        unit: &mut Unit,
    ) -> Result<Decision<ExtendOutcome>> {
        let snapshot = settle_snapshot(conn, unit, self.cmd.reservation_id, self.now).await?;
        Ok(rules::extend(&snapshot, &self.cmd, self.now)?)
    }
}

/// Record usage that had no reservation.
pub(crate) struct Charge {
    pub cmd: ChargeCommand,
    pub now: Timestamp,
}

impl Operation for Charge {
    type Outcome = ChargeOutcome;

    async fn decide(
        &self,
        conn: &mut SqliteConnection,
        unit: &mut Unit,
    ) -> Result<Decision<ChargeOutcome>> {
        let cmd = &self.cmd;
        unit.flush_if_new(conn, Some(&cmd.budget_id), None).await?;
        let want = Want {
            leaf: Leaf::Budget(&cmd.budget_id),
            reservation: None,
            key: None,
            charge: Some(&cmd.key),
            now: self.now,
        };
        let snapshot = load(conn, unit, want).await?;
        Ok(rules::charge(&snapshot, cmd, self.now)?)
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
        unit.learn(snapshot.budgets.values());
        Ok(rules::sweep(&snapshot, self.now)?)
    }
}

/// For commit, rollback and extend: the reservation, its budget's chain and the tree's
/// expired holds. An unknown reservation leaves the snapshot empty; the rule answers
/// `ReservationNotFound`.
async fn settle_snapshot(
    conn: &mut SqliteConnection,
    unit: &mut Unit,
    id: ReservationId,
    now: Timestamp,
) -> Result<Snapshot> {
    unit.flush_if_new(conn, None, Some(id)).await?;
    let want = Want {
        leaf: Leaf::ReservationOf(id),
        reservation: Some(id),
        key: None,
        charge: None,
        now,
    };
    load(conn, unit, want).await
}

/// Reads what `want` asks for in one statement ([`sql::load`]) and merges the batch's earlier
/// writes into it. Should the merge need rows only the database can give (see
/// [`Unit::reservations`]), writes what is waiting and reads again.
async fn load(conn: &mut SqliteConnection, unit: &mut Unit, want: Want<'_>) -> Result<Snapshot> {
    let loaded = sql::load(conn, want).await?;
    if let Some(snapshot) = merge(unit, loaded, &want) {
        return Ok(snapshot);
    }
    unit.flush(conn).await?;
    let loaded = sql::load(conn, want).await?;
    merge(unit, loaded, &want).ok_or_else(|| {
        crate::error::SqliteError::corrupt(
            "snapshot",
            "a due hold's chain is missing from the database",
        )
    })
}

/// `loaded` as the batch left it, or `None` when the unit cannot answer for its own rows.
fn merge(unit: &mut Unit, loaded: sql::Loaded, want: &Want<'_>) -> Option<Snapshot> {
    unit.learn(&loaded.budgets);
    let root = loaded
        .budgets
        .first()
        .and_then(|leaf| unit.root_of(&leaf.id))
        .cloned();
    let (expired, reservation) = unit.reservations(
        loaded.reservations,
        root.as_ref(),
        want.reservation,
        want.key,
        want.now,
    )?;
    let mut snapshot = Snapshot {
        reservation,
        charge: want.charge.and_then(|key| unit.charge(loaded.charge, key)),
        ..Snapshot::with_budgets(loaded.budgets.into_iter().map(|b| unit.budget(b)))
    };
    // The unit's own due holds (made earlier in the batch) have chains the database did not
    // return: the batch wrote every budget of them.
    for hold in &expired {
        if !snapshot.budgets.contains_key(&hold.budget_id) {
            add_budgets(&mut snapshot, unit.written_chain(&hold.budget_id)?);
        }
    }
    snapshot.expired = expired;
    Some(snapshot)
}

fn add_budgets(snapshot: &mut Snapshot, budgets: Vec<Budget>) {
    snapshot
        .budgets
        .extend(budgets.into_iter().map(|b| (b.id.clone(), b)));
}
