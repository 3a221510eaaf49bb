//! Group commit: queued writes, on one budget tree or several, decided and written in one
//! transaction.
//!
//! A [`Batch`] locks the union of its operations' chains once, with the locks of every tree
//! they touch taken in one statement in key order (see [`sql`](crate::sql) on the lock
//! order), reads every reservation, idempotency key and charge key they name and those trees'
//! due holds, then calls the core's rule for each operation in queue order, each on the state
//! the ones before it left, of its own tree only ([`Working`]). One operation's rejection (bad input, a
//! conflict) is its own answer and changes nothing; the others go on. The changes of all of
//! them are written in one statement pipelined with one `COMMIT`: one lock acquisition per tree
//! and one WAL flush for the batch. Nothing is answered before the `COMMIT` returns.
//!
//! A batch whose `COMMIT` outcome is unknown is retried whole: every operation in it is then a
//! replay (a reserve finds its reservation id, a charge its key; commit, rollback and extend
//! are idempotent in the rules), so nothing happens twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use tokenbudget_core::rules::{
    self, Changes, ChargeCommand, CommitCommand, ExtendCommand, ReserveCommand, RollbackCommand,
    Snapshot,
};
use tokenbudget_core::{
    Budget, BudgetId, Charge, ChargeOutcome, CommitOutcome, ExtendOutcome, IdempotencyKey,
    Reservation, ReservationId, ReservationState, ReserveOutcome, RollbackOutcome, Timestamp,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::PgError;
use crate::tx::{Op, Retry, Tx};
use crate::{rows, sql};

/// One write a batch can hold.
#[derive(Debug, Clone)]
pub(crate) enum Cmd {
    Reserve(ReserveCommand),
    Commit(CommitCommand),
    Rollback(RollbackCommand),
    Extend(ExtendCommand),
    Charge(ChargeCommand),
}

/// The answer to one [`Cmd`].
#[derive(Debug)]
pub(crate) enum Answer {
    Reserve(ReserveOutcome),
    Commit(CommitOutcome),
    Rollback(RollbackOutcome),
    Extend(ExtendOutcome),
    Charge(ChargeOutcome),
}

impl Cmd {
    /// Whether the caller may run it again when its outcome is unknown.
    pub(crate) fn safe_to_repeat(&self) -> bool {
        match self {
            // A repeat by the caller may come with a new reservation id: only a key makes it
            // a replay for sure.
            Self::Reserve(cmd) => cmd.idempotency_key.is_some(),
            Self::Commit(_) | Self::Rollback(_) | Self::Extend(_) | Self::Charge(_) => true,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Reserve(_) => "reserve",
            Self::Commit(_) => "commit",
            Self::Rollback(_) => "rollback",
            Self::Extend(_) => "extend",
            Self::Charge(_) => "charge",
        }
    }

    /// The reservation the command is about (a reserve's own id: a retry finds it).
    fn reservation_id(&self) -> Option<ReservationId> {
        match self {
            Self::Reserve(cmd) => Some(cmd.reservation_id),
            Self::Commit(cmd) => Some(cmd.reservation_id),
            Self::Rollback(cmd) => Some(cmd.reservation_id),
            Self::Extend(cmd) => Some(cmd.reservation_id),
            Self::Charge(_) => None,
        }
    }

    /// The budget a reserve or charge is made on.
    fn budget_id(&self) -> Option<&BudgetId> {
        match self {
            Self::Reserve(cmd) => Some(&cmd.budget_id),
            Self::Charge(cmd) => Some(&cmd.budget_id),
            _ => None,
        }
    }
}

/// Writes on one tree or several, run as one transaction; see the module docs.
pub(crate) struct Batch {
    /// The commands, in queue order, each with the time its caller gave (used with
    /// `ClockSource::Caller`).
    pub(crate) cmds: Vec<(Cmd, Timestamp)>,
}

/// The answers, in command order.
pub(crate) type Answers = Vec<tokenbudget_core::Result<Answer>>;

#[async_trait]
impl Op for Batch {
    type Output = Answers;

    fn name(&self) -> &'static str {
        match self.cmds.as_slice() {
            [(one, _)] => one.name(),
            _ => "batch",
        }
    }

    fn safe_to_repeat(&self) -> bool {
        self.cmds.iter().all(|(cmd, _)| cmd.safe_to_repeat())
    }

    async fn attempt(&self, tx: &mut Tx<'_>, _retry: Retry) -> Result<Answers, PgError> {
        let (mut working, db_now) = self.lock_and_load(tx).await?;
        let mut changes = Merged::default();
        let answers = self
            .cmds
            .iter()
            .map(|(cmd, now)| {
                // The caller's time, or the database's (read once for the batch).
                let now = tx.caller_now(*now).map_or(db_now, Timestamp::from_micros);
                let decided = working.decide(cmd, now)?;
                working.apply(&decided.0);
                changes.add(decided.0);
                Ok(decided.1)
            })
            .collect();
        tx.commit(&changes.finish()).await?;
        Ok(answers)
    }
}

impl Batch {
    /// Begins, locks the chains of every command (and of their trees' due holds outside them),
    /// and loads what the rules need; returns it with the time to decide at.
    async fn lock_and_load(&self, tx: &mut Tx<'_>) -> Result<(Working, Timestamp), PgError> {
        let cmds = || self.cmds.iter().map(|(cmd, _)| cmd);
        let budgets: Vec<&str> = cmds()
            .filter_map(Cmd::budget_id)
            .map(BudgetId::as_str)
            .collect();
        let ids: Vec<Uuid> = cmds()
            .filter_map(Cmd::reservation_id)
            .map(|id| *id.as_uuid())
            .collect();
        let keys: Vec<&str> = cmds()
            .filter_map(|cmd| match cmd {
                Cmd::Reserve(cmd) => cmd.idempotency_key.as_ref().map(IdempotencyKey::as_str),
                _ => None,
            })
            .collect();
        // The latest of the callers' times: the due holds read are those of every command.
        let latest = self.cmds.iter().map(|(_, now)| *now).max();
        let caller_now = latest.and_then(|now| tx.caller_now(now));
        let (locked, read) = tx
            .begin(
                (sql::LOCK_BATCH, &[&budgets, &ids]),
                Some((sql::READ_BATCH, &[&budgets, &ids, &keys, &caller_now])),
            )
            .await?;
        let mut locked = locked_budgets(&locked)?;
        let (Loaded { reservations, due }, now) = read_reservations(&read, &locked)?;
        // The chains of the trees' due holds outside the locked chains: each tree's lock is
        // held, so these row locks never wait.
        let more: BTreeSet<&str> = due
            .iter()
            .filter_map(|id| reservations.get(id))
            .filter(|r| !locked.contains_key(&r.budget_id))
            .map(|r| r.budget_id.as_str())
            .collect();
        if !more.is_empty() {
            let more: Vec<&str> = more.into_iter().collect();
            let rows = tx.query(sql::LOCK_MORE, &[&more]).await?;
            locked.extend(locked_budgets(&rows)?);
        }
        tx.gate().learn(locked.values());
        let charge_keys: Vec<&str> = cmds()
            .filter_map(|cmd| match cmd {
                Cmd::Charge(cmd) => Some(cmd.key.as_str()),
                _ => None,
            })
            .collect();
        // Under the tree's lock: a charge with one of these keys on this tree has committed or
        // not started. (On another tree, the key's uniqueness makes one of two concurrent
        // inserts fail, and its retry replays.)
        let charges = if charge_keys.is_empty() {
            HashMap::new()
        } else {
            tx.query(sql::CHARGES, &[&charge_keys])
                .await?
                .iter()
                .map(|row| rows::charge(row).map(|c| (c.key.clone(), c)))
                .collect::<Result<_, _>>()?
        };
        Ok((Working::new(locked, reservations, charges), now))
    }
}

fn locked_budgets(rows: &[Row]) -> Result<BTreeMap<BudgetId, Budget>, PgError> {
    rows.iter()
        .map(|row| rows::budget(row).map(|b| (b.id.clone(), b)))
        .collect()
}

/// The reservations of [`sql::READ_BATCH`] by id, and the decision's time from its last
/// column (a row with no reservation only carries the time).
fn read_reservations(
    rows: &[Row],
    locked: &BTreeMap<BudgetId, Budget>,
) -> Result<(Loaded, Timestamp), PgError> {
    let first = rows
        .first()
        .ok_or_else(|| PgError::corrupt("read", "no row with the decision's time"))?;
    let now = Timestamp::from_micros(first.try_get(13)?);
    let mut reservations = BTreeMap::new();
    let mut due = BTreeSet::new();
    for row in rows {
        if row.try_get::<_, Option<Uuid>>(0)?.is_none() {
            continue;
        }
        let reservation = rows::reservation(row)?;
        let (target, is_due): (bool, bool) = (row.try_get(10)?, row.try_get(12)?);
        if is_due {
            due.insert(reservation.id);
        }
        // A reservation named by a command must be on a locked chain: one on another chain
        // committed between the lock and the read (its budget was not seen by the lock).
        // (One holding a key may be anywhere: the rule only compares it.)
        if target && !locked.contains_key(&reservation.budget_id) {
            return Err(PgError::Raced(format!(
                "reservation {} appeared after its chain was locked",
                reservation.id
            )));
        }
        reservations.insert(reservation.id, reservation);
    }
    Ok((Loaded { reservations, due }, now))
}

/// The reservations read after the lock, and which of them are the tree's due holds.
struct Loaded {
    reservations: BTreeMap<ReservationId, Reservation>,
    due: BTreeSet<ReservationId>,
}

/// The state the batch's commands decide on, changed by each in turn. A batch may span trees;
/// each command sees only its own tree, as the rules' snapshot asks.
struct Working {
    /// The locked budgets, by the root of their tree.
    trees: HashMap<BudgetId, BTreeMap<BudgetId, Budget>>,
    /// The root of every locked budget.
    root_of: HashMap<BudgetId, BudgetId>,
    reservations: BTreeMap<ReservationId, Reservation>,
    by_key: HashMap<IdempotencyKey, ReservationId>,
    charges: HashMap<IdempotencyKey, Charge>,
}

impl Working {
    fn new(
        budgets: BTreeMap<BudgetId, Budget>,
        reservations: BTreeMap<ReservationId, Reservation>,
        charges: HashMap<IdempotencyKey, Charge>,
    ) -> Self {
        let by_key = reservations
            .values()
            .filter_map(|r| r.idempotency_key.clone().map(|k| (k, r.id)))
            .collect();
        // Every chain is locked whole, so each budget's ancestors are all here.
        let root_of: HashMap<BudgetId, BudgetId> = budgets
            .values()
            .map(|b| {
                let mut top = b;
                while let Some(parent) = top.parent.as_ref().and_then(|p| budgets.get(p)) {
                    top = parent;
                }
                (b.id.clone(), top.id.clone())
            })
            .collect();
        let mut trees: HashMap<BudgetId, BTreeMap<BudgetId, Budget>> = HashMap::new();
        for (id, budget) in budgets {
            trees
                .entry(root_of[&id].clone())
                .or_default()
                .insert(id, budget);
        }
        Self {
            trees,
            root_of,
            reservations,
            by_key,
            charges,
        }
    }

    /// The root of the tree of `budget`, when it is locked.
    fn tree_of(&self, budget: &BudgetId) -> Option<&BudgetId> {
        self.root_of.get(budget)
    }

    /// The tree of the reservation `id`, when it was read and its budget is locked.
    fn tree_of_reservation(&self, id: ReservationId) -> Option<&BudgetId> {
        self.tree_of(&self.reservations.get(&id)?.budget_id)
    }

    /// The snapshot for one command on `tree`: the tree's locked budgets, the reservation it
    /// names, and the tree's held reservations due at `now` (an earlier command of the batch
    /// may have released some). No budget at all when the command's tree is not locked (its
    /// budget or reservation does not exist): the rule then answers "not found".
    fn snapshot(
        &self,
        tree: Option<&BudgetId>,
        reservation: Option<ReservationId>,
        now: Timestamp,
    ) -> Snapshot {
        let budgets = tree
            .and_then(|t| self.trees.get(t))
            .cloned()
            .unwrap_or_default();
        let mut expired: Vec<Reservation> = self
            .reservations
            .values()
            // Only on the tree's budgets: a reservation read for its key, or due on another
            // tree of the batch, is not this command's to release.
            .filter(|r| r.state == ReservationState::Held && r.expires_at <= now)
            .filter(|r| tree.is_some() && self.tree_of(&r.budget_id) == tree)
            .cloned()
            .collect();
        expired.sort_by_key(|r| (r.expires_at, r.id));
        Snapshot {
            budgets,
            reservation: reservation.and_then(|id| self.reservations.get(&id).cloned()),
            expired,
            charge: None,
        }
    }

    /// Calls the command's rule on the current state.
    fn decide(&self, cmd: &Cmd, now: Timestamp) -> tokenbudget_core::Result<(Changes, Answer)> {
        Ok(match cmd {
            Cmd::Reserve(cmd) => {
                // The reservation with this id (a retry), else the one holding the key.
                let id = Some(cmd.reservation_id)
                    .filter(|id| self.reservations.contains_key(id))
                    .or_else(|| {
                        let key = cmd.idempotency_key.as_ref()?;
                        self.by_key.get(key).copied()
                    });
                let tree = self.tree_of(&cmd.budget_id);
                let d = rules::reserve(&self.snapshot(tree, id, now), cmd, now)?;
                (d.changes, Answer::Reserve(d.outcome))
            }
            Cmd::Commit(cmd) => {
                let id = cmd.reservation_id;
                let snapshot = self.snapshot(self.tree_of_reservation(id), Some(id), now);
                let d = rules::commit(&snapshot, cmd, now)?;
                (d.changes, Answer::Commit(d.outcome))
            }
            Cmd::Rollback(cmd) => {
                let id = cmd.reservation_id;
                let snapshot = self.snapshot(self.tree_of_reservation(id), Some(id), now);
                let d = rules::rollback(&snapshot, cmd, now)?;
                (d.changes, Answer::Rollback(d.outcome))
            }
            Cmd::Extend(cmd) => {
                let id = cmd.reservation_id;
                let snapshot = self.snapshot(self.tree_of_reservation(id), Some(id), now);
                let d = rules::extend(&snapshot, cmd, now)?;
                (d.changes, Answer::Extend(d.outcome))
            }
            Cmd::Charge(cmd) => {
                let mut snapshot = self.snapshot(self.tree_of(&cmd.budget_id), None, now);
                snapshot.charge = self.charges.get(&cmd.key).cloned();
                let d = rules::charge(&snapshot, cmd, now)?;
                (d.changes, Answer::Charge(d.outcome))
            }
        })
    }

    /// Applies an accepted command's changes, for the commands after it.
    fn apply(&mut self, changes: &Changes) {
        for budget in &changes.budgets {
            // The rules change only budgets of the command's snapshot: all locked.
            if let Some(tree) = self
                .root_of
                .get(&budget.id)
                .and_then(|r| self.trees.get_mut(r))
            {
                tree.insert(budget.id.clone(), budget.clone());
            }
        }
        for reservation in changes.new_reservation.iter().chain(&changes.reservations) {
            if let Some(key) = &reservation.idempotency_key {
                self.by_key.insert(key.clone(), reservation.id);
            }
            self.reservations
                .insert(reservation.id, reservation.clone());
        }
        if let Some(charge) = &changes.new_charge {
            self.charges.insert(charge.key.clone(), charge.clone());
        }
    }
}

/// The changes of every accepted command, merged into what one write statement takes: each
/// budget's and reservation's last state once, new rows as inserts (with any later change of
/// them folded in), events in order.
#[derive(Default)]
struct Merged {
    budgets: BTreeMap<BudgetId, Budget>,
    new_reservations: BTreeMap<ReservationId, Reservation>,
    reservations: BTreeMap<ReservationId, Reservation>,
    charges: Vec<Charge>,
    events: Vec<tokenbudget_core::NewEvent>,
}

impl Merged {
    fn add(&mut self, changes: Changes) {
        for budget in changes.budgets {
            self.budgets.insert(budget.id.clone(), budget);
        }
        if let Some(reservation) = changes.new_reservation {
            self.new_reservations.insert(reservation.id, reservation);
        }
        for reservation in changes.reservations {
            match self.new_reservations.get_mut(&reservation.id) {
                Some(inserted) => *inserted = reservation,
                None => {
                    self.reservations.insert(reservation.id, reservation);
                }
            }
        }
        self.charges.extend(changes.new_charge);
        self.events.extend(changes.events);
    }

    fn finish(self) -> crate::rows::BatchChanges {
        crate::rows::BatchChanges {
            new_budget: None,
            budgets: self.budgets.into_values().collect(),
            new_reservations: self.new_reservations.into_values().collect(),
            reservations: self.reservations.into_values().collect(),
            new_charges: self.charges,
            events: self.events,
        }
    }
}

/// Shares one batch-wide failure among its commands, each with its own `retryable`.
pub(crate) fn fail_all(err: PgError, cmds: &[Cmd]) -> Answers {
    if let [one] = cmds {
        return vec![Err(err.into_core(one.safe_to_repeat()))];
    }
    let err = Arc::new(err);
    cmds.iter()
        .map(|cmd| Err(PgError::shared_into_core(&err, cmd.safe_to_repeat())))
        .collect()
}
