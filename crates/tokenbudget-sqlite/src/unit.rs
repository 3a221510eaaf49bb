//! The batch's unit of work: the rows its operations have written so far, held in memory and
//! written to the database in one flush before `COMMIT`.
//!
//! Every statement is a round trip to sqlx's SQLite worker thread, and profiling the store
//! under 16 tasks showed those thread hand-offs, not SQLite, taking most of the time. So
//! within one batch (one `BEGIN IMMEDIATE` transaction, under the write lock) an operation
//! reads with one statement, and its writes wait here: the next operation's read is merged
//! with them ([`Unit::budget`], [`Unit::reservations`]), exactly as if they had been written
//! first. At the end of the batch a handful of multi-row statements write everything
//! ([`sql::flush`]), in the order it happened, events included.
//!
//! The merge is only sound for rows the database already has: a budget's chain (its
//! ancestors) is read from the database, which knows nothing of a budget created earlier in
//! the batch, and a reservation created earlier in the batch cannot be found by its id there.
//! Operations on such rows, and creates and sweeps (which read more widely), call
//! [`Unit::flush_if_new`] or flush first and then read as usual.
//!
//! The due holds of a tree are asked of the database by the tree's root (a column of every
//! reservation). The unit answers the same question for its own rows with the parent links of
//! every budget the batch has read or written ([`Unit::learn`]): parent links never change,
//! and a rule can only change a reservation whose chain it was given, so every reservation
//! the unit holds has a known root. Should one not (a bug), the unit says so and the
//! operation flushes and reads again from the database.
//!
//! A failed flush cannot say which operation's write it was, so the batch then runs again
//! writing after each operation ([`Unit::eager`]), where a failure belongs to one operation.

use std::collections::{HashMap, HashSet};

use sqlx::SqliteConnection;
use tokenbudget_core::rules::Changes;
use tokenbudget_core::{
    Budget, BudgetId, Charge, IdempotencyKey, NewEvent, Reservation, ReservationId,
    ReservationState, Timestamp, MAX_DEPTH,
};

use crate::error::{Result, SqliteError};
use crate::sql;

/// The writes of a batch's operations not yet in the database; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Unit {
    /// Write after every operation instead of once at the end.
    eager: bool,
    /// Budgets written, in the order first written (a parent before its child).
    budgets: Vec<Budget>,
    budget_index: HashMap<BudgetId, usize>,
    /// Which of `budgets` the database does not have yet.
    new_budgets: HashSet<BudgetId>,
    /// Reservations written, in the order first written.
    reservations: Vec<Reservation>,
    reservation_index: HashMap<ReservationId, usize>,
    /// Which of `reservations` the database does not have yet.
    new_reservations: HashSet<ReservationId>,
    /// Charges written (all new: a charge is never updated), in order.
    charges: Vec<Charge>,
    /// The parent of every budget the batch has seen, written or read; kept across flushes
    /// (parent links never change).
    parents: HashMap<BudgetId, Option<BudgetId>>,
    /// Events, in order.
    events: Vec<NewEvent>,
}

impl Unit {
    /// A unit that writes once, at [`Unit::flush`], or after every operation when `eager`.
    pub(crate) fn new(eager: bool) -> Self {
        Self {
            eager,
            ..Self::default()
        }
    }

    /// True when it writes after every operation.
    pub(crate) fn is_eager(&self) -> bool {
        self.eager
    }

    /// True when nothing waits to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.budgets.is_empty()
            && self.reservations.is_empty()
            && self.charges.is_empty()
            && self.events.is_empty()
    }

    /// Remembers the parent links of `budgets` (read from the database or a snapshot).
    pub(crate) fn learn<'a>(&mut self, budgets: impl IntoIterator<Item = &'a Budget>) {
        for b in budgets {
            if !self.parents.contains_key(&b.id) {
                self.parents.insert(b.id.clone(), b.parent.clone());
            }
        }
    }

    /// The root of `budget`'s tree, if the batch has seen its whole chain.
    pub(crate) fn root_of<'a>(&'a self, budget: &'a BudgetId) -> Option<&'a BudgetId> {
        let mut at = budget;
        for _ in 0..=MAX_DEPTH {
            match self.parents.get(at)? {
                Some(parent) => at = parent,
                None => return Some(at),
            }
        }
        None
    }

    /// Takes an operation's changes; they count as written for every later read.
    pub(crate) fn record(&mut self, changes: &Changes) {
        self.learn(changes.new_budget.iter().chain(&changes.budgets));
        if let Some(c) = &changes.new_charge {
            self.charges.push(c.clone());
        }
        if let Some(b) = &changes.new_budget {
            self.new_budgets.insert(b.id.clone());
            self.put_budget(b);
        }
        for b in &changes.budgets {
            self.put_budget(b);
        }
        if let Some(r) = &changes.new_reservation {
            self.new_reservations.insert(r.id);
            self.put_reservation(r);
        }
        for r in &changes.reservations {
            self.put_reservation(r);
        }
        self.events.extend(changes.events.iter().cloned());
    }

    fn put_budget(&mut self, b: &Budget) {
        match self.budget_index.get(&b.id) {
            Some(&i) => self.budgets[i] = b.clone(),
            None => {
                self.budget_index.insert(b.id.clone(), self.budgets.len());
                self.budgets.push(b.clone());
            }
        }
    }

    fn put_reservation(&mut self, r: &Reservation) {
        match self.reservation_index.get(&r.id) {
            Some(&i) => self.reservations[i] = r.clone(),
            None => {
                self.reservation_index.insert(r.id, self.reservations.len());
                self.reservations.push(r.clone());
            }
        }
    }

    /// Writes everything waiting, in one go, and starts empty.
    pub(crate) async fn flush(&mut self, conn: &mut SqliteConnection) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let (new_budgets, budgets): (Vec<&Budget>, Vec<&Budget>) = self
            .budgets
            .iter()
            .partition(|b| self.new_budgets.contains(&b.id));
        let (new_reservations, reservations): (Vec<&Reservation>, Vec<&Reservation>) = self
            .reservations
            .iter()
            .partition(|r| self.new_reservations.contains(&r.id));
        let new_reservations = new_reservations
            .into_iter()
            .map(|r| match self.root_of(&r.budget_id) {
                Some(root) => Ok((r, root)),
                None => Err(SqliteError::corrupt(
                    "reservation root",
                    format!("the batch never saw the chain of budget {}", r.budget_id),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let charges: Vec<&Charge> = self.charges.iter().collect();
        sql::flush(
            conn,
            sql::Flush {
                new_budgets: &new_budgets,
                budgets: &budgets,
                new_reservations: &new_reservations,
                reservations: &reservations,
                charges: &charges,
                events: &self.events,
            },
        )
        .await?;
        let parents = std::mem::take(&mut self.parents);
        *self = Self::new(self.eager);
        self.parents = parents;
        Ok(())
    }

    /// Flushes when `budget` or `reservation` was created in this batch and is not in the
    /// database yet: its chain can only be read from there.
    pub(crate) async fn flush_if_new(
        &mut self,
        conn: &mut SqliteConnection,
        budget: Option<&BudgetId>,
        reservation: Option<ReservationId>,
    ) -> Result<()> {
        let new = budget.is_some_and(|b| self.new_budgets.contains(b))
            || reservation.is_some_and(|r| self.new_reservations.contains(&r));
        if new {
            self.flush(conn).await?;
        }
        Ok(())
    }

    /// The budget as this batch left it: the unit's version, else the database's.
    pub(crate) fn budget(&self, from_db: Budget) -> Budget {
        match self.budget_index.get(&from_db.id) {
            Some(&i) => self.budgets[i].clone(),
            None => from_db,
        }
    }

    /// The charge with `key` as this batch left it: the unit's, else the database's.
    pub(crate) fn charge(&self, from_db: Option<Charge>, key: &IdempotencyKey) -> Option<Charge> {
        self.charges
            .iter()
            .find(|c| &c.key == key)
            .cloned()
            .or(from_db)
    }

    /// The reservations a command needs, as this batch left them: the held ones made anywhere
    /// in the tree of `root` due at `now` (earliest first), and the one with id `id`, else the
    /// one holding `key`.
    ///
    /// `from_db` must hold what the database returned for the same question, and the batch
    /// must have [learned](Unit::learn) the chains the database returned; the unit's versions
    /// replace those rows, and its own rows are asked the question too. `None` when one of the
    /// unit's own held rows has a chain the batch never saw, so that whether it is in the tree
    /// is unknown: flush and ask the database.
    pub(crate) fn reservations(
        &self,
        from_db: Vec<Reservation>,
        root: Option<&BudgetId>,
        id: Option<ReservationId>,
        key: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Option<(Vec<Reservation>, Option<Reservation>)> {
        let mut rows: Vec<Reservation> = from_db
            .into_iter()
            .filter(|r| !self.reservation_index.contains_key(&r.id))
            .collect();
        let from_db = rows.len();
        rows.extend(self.reservations.iter().cloned());
        let mut due = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            if r.state != ReservationState::Held || r.expires_at > now {
                continue;
            }
            match self.root_of(&r.budget_id) {
                Some(at) if Some(at) == root => due.push(r.clone()),
                Some(_) => {}
                // A database row the due holds did not include (asked for by id or key), so
                // not in the tree: the database returns every due hold of the tree with its
                // chain. One of the unit's own: unknown.
                None if i < from_db => {}
                None => return None,
            }
        }
        due.sort_by_key(|r| (r.expires_at, r.id));
        let target = id
            .and_then(|id| rows.iter().find(|r| r.id == id))
            .or_else(|| {
                key.and_then(|key| {
                    rows.iter()
                        .find(|r| r.idempotency_key.as_ref() == Some(key))
                })
            });
        Some((due, target.cloned()))
    }

    /// The budgets of `chain` as this batch left them, leaf first: `None` unless the batch
    /// has written every one (the unit's own due holds' chains, which the database cannot
    /// know).
    pub(crate) fn written_chain(&self, leaf: &BudgetId) -> Option<Vec<Budget>> {
        let mut chain = Vec::new();
        let mut at = Some(leaf);
        while let Some(id) = at {
            if chain.len() > MAX_DEPTH {
                return None;
            }
            let b = &self.budgets[*self.budget_index.get(id)?];
            chain.push(b.clone());
            at = b.parent.as_ref();
        }
        Some(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(n: u128) -> ReservationId {
        ReservationId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn bid(s: &str) -> BudgetId {
        BudgetId::new(s).unwrap()
    }

    fn held(n: u128, budget: &str, expires: i64, key: Option<&str>) -> Reservation {
        Reservation {
            id: rid(n),
            budget_id: bid(budget),
            tokens: 10,
            state: ReservationState::Held,
            created_at: Timestamp::from_micros(0),
            expires_at: Timestamp::from_micros(expires),
            idempotency_key: key.map(|k| IdempotencyKey::new(k).unwrap()),
            actual: None,
            settled_at: None,
            model: None,
        }
    }

    fn budget(id: &str, parent: Option<&str>) -> Budget {
        Budget {
            id: bid(id),
            parent: parent.map(bid),
            limit: 100,
            used: 0,
            reserved: 0,
            held: 0,
            created_at: Timestamp::from_micros(0),
            unit: tokenbudget_core::Unit::Tokens,
            period: None,
            window_start: None,
            closed: false,
        }
    }

    /// Two trees: wf > {wf:a > wf:a:x, wf:b}, and other.
    fn trees() -> Vec<Budget> {
        vec![
            budget("wf", None),
            budget("wf:a", Some("wf")),
            budget("wf:a:x", Some("wf:a")),
            budget("wf:b", Some("wf")),
            budget("other", None),
        ]
    }

    /// A unit that wrote `new` and `updated`, along with every budget of `trees` (as the
    /// rules would, having changed the reservations' chains).
    fn written(new: Option<Reservation>, updated: Vec<Reservation>) -> Unit {
        let mut unit = Unit::new(false);
        unit.record(&Changes {
            budgets: trees(),
            new_reservation: new,
            reservations: updated,
            ..Changes::default()
        });
        unit
    }

    #[test]
    fn the_units_rows_replace_the_databases_and_answer_the_same_question() {
        let wf = bid("wf");
        let now = Timestamp::from_micros(100);
        let mut settled = held(1, "wf:b", 50, None);
        settled.state = ReservationState::Committed;
        // The database still has r1 held and due; the batch committed it, and created r2
        // (due, holding key "k").
        let unit = written(Some(held(2, "wf:a", 60, Some("k"))), vec![settled.clone()]);
        let from_db = vec![held(1, "wf:b", 50, None)];

        let (due, target) = unit
            .reservations(from_db.clone(), Some(&wf), Some(rid(9)), None, now)
            .unwrap();
        assert_eq!(
            due,
            vec![held(2, "wf:a", 60, Some("k"))],
            "r1 is settled, r2 is due"
        );
        assert_eq!(target, None);

        let (_, target) = unit
            .reservations(from_db.clone(), Some(&wf), Some(rid(1)), None, now)
            .unwrap();
        assert_eq!(target, Some(settled), "by id: the batch's version");

        let key = IdempotencyKey::new("k").unwrap();
        let (_, target) = unit
            .reservations(from_db, Some(&wf), None, Some(&key), now)
            .unwrap();
        assert_eq!(
            target.map(|r| r.id),
            Some(rid(2)),
            "by key: found in the batch"
        );
    }

    #[test]
    fn due_holds_anywhere_in_the_tree_count_and_other_trees_or_later_ones_do_not() {
        let wf = bid("wf");
        let unit = written(
            Some(held(2, "other", 10, None)),
            vec![held(3, "wf:b", 500, None), held(6, "wf:a:x", 30, None)],
        );
        // The database's answer for wf's tree; r7 (asked for by id) is in another tree.
        let from_db = vec![
            held(4, "wf:a", 20, None),
            held(5, "wf", 10, None),
            held(7, "other", 5, None),
        ];
        let (due, target) = unit
            .reservations(
                from_db,
                Some(&wf),
                Some(rid(7)),
                None,
                Timestamp::from_micros(100),
            )
            .unwrap();
        let ids: Vec<_> = due.iter().map(|r| r.id).collect();
        assert_eq!(
            ids,
            vec![rid(5), rid(4), rid(6)],
            "earliest first; r2 and r7 are another tree's, r3 not due"
        );
        assert_eq!(target.map(|r| r.id), Some(rid(7)));
    }

    #[test]
    fn a_held_row_of_the_unit_with_an_unknown_chain_asks_for_the_database() {
        let mut unit = Unit::new(false);
        unit.record(&Changes {
            new_reservation: Some(held(1, "stranger", 10, None)),
            ..Changes::default()
        });
        let wf = bid("wf");
        let now = Timestamp::from_micros(100);
        assert!(unit
            .reservations(Vec::new(), Some(&wf), None, None, now)
            .is_none());
        // A database row with an unknown chain was not among the tree's due holds: not in it.
        let unit = written(None, Vec::new());
        let (due, _) = unit
            .reservations(
                vec![held(2, "stranger", 10, None)],
                Some(&wf),
                Some(rid(2)),
                None,
                now,
            )
            .unwrap();
        assert!(due.is_empty());
    }

    #[test]
    fn roots_and_written_chains_come_from_what_the_batch_saw() {
        let unit = written(None, Vec::new());
        assert_eq!(unit.root_of(&bid("wf:a:x")), Some(&bid("wf")));
        assert_eq!(unit.root_of(&bid("other")), Some(&bid("other")));
        assert_eq!(unit.root_of(&bid("nope")), None);
        let chain: Vec<_> = unit
            .written_chain(&bid("wf:a:x"))
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(chain, [bid("wf:a:x"), bid("wf:a"), bid("wf")]);

        let mut partial = Unit::new(false);
        partial.record(&Changes {
            budgets: vec![budget("wf:a", Some("wf"))],
            ..Changes::default()
        });
        assert_eq!(partial.root_of(&bid("wf:a")), None, "wf never seen");
        assert!(partial.written_chain(&bid("wf:a")).is_none());
        partial.learn(&[budget("wf", None)]);
        assert_eq!(partial.root_of(&bid("wf:a")), Some(&bid("wf")));
    }

    #[test]
    fn a_charge_of_the_batch_answers_before_the_database() {
        let mut unit = Unit::new(false);
        let charge = |tokens| Charge {
            key: IdempotencyKey::new("c").unwrap(),
            budget_id: bid("wf"),
            tokens,
            note: None,
            at: Timestamp::from_micros(0),
        };
        let key = IdempotencyKey::new("c").unwrap();
        assert_eq!(unit.charge(Some(charge(1)), &key), Some(charge(1)));
        unit.record(&Changes {
            new_charge: Some(charge(2)),
            ..Changes::default()
        });
        assert!(!unit.is_empty());
        assert_eq!(unit.charge(None, &key), Some(charge(2)));
        let other = IdempotencyKey::new("d").unwrap();
        assert_eq!(unit.charge(None, &other), None);
    }
}
