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
//! A failed flush cannot say which operation's write it was, so the batch then runs again
//! writing after each operation ([`Unit::eager`]), where a failure belongs to one operation.

use std::collections::{HashMap, HashSet};

use sqlx::SqliteConnection;
use tokenbudget_core::rules::Changes;
use tokenbudget_core::{
    Budget, BudgetId, IdempotencyKey, NewEvent, Reservation, ReservationId, ReservationState,
    Timestamp,
};

use crate::error::Result;
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
        self.budgets.is_empty() && self.reservations.is_empty() && self.events.is_empty()
    }

    /// Takes an operation's changes; they count as written for every later read.
    pub(crate) fn record(&mut self, changes: &Changes) {
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
        sql::flush(
            conn,
            sql::Flush {
                new_budgets: &new_budgets,
                budgets: &budgets,
                new_reservations: &new_reservations,
                reservations: &reservations,
                events: &self.events,
            },
        )
        .await?;
        *self = Self::new(self.eager);
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

    /// The reservations a command needs, as this batch left them: the held ones on `chain`
    /// due at `now` (earliest first), and the one with id `id`, else the one holding `key`.
    ///
    /// `from_db` must hold what the database returned for the same question; the unit's
    /// versions replace those rows, and its own rows are asked the question too.
    pub(crate) fn reservations(
        &self,
        from_db: Vec<Reservation>,
        chain: &HashSet<&BudgetId>,
        id: ReservationId,
        key: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> (Vec<Reservation>, Option<Reservation>) {
        let mut rows: Vec<Reservation> = from_db
            .into_iter()
            .filter(|r| !self.reservation_index.contains_key(&r.id))
            .collect();
        rows.extend(self.reservations.iter().cloned());
        let mut due: Vec<Reservation> = rows
            .iter()
            .filter(|r| {
                r.state == ReservationState::Held
                    && r.expires_at <= now
                    && chain.contains(&r.budget_id)
            })
            .cloned()
            .collect();
        due.sort_by_key(|r| (r.expires_at, r.id));
        let target = rows.iter().find(|r| r.id == id).or_else(|| {
            key.and_then(|key| {
                rows.iter()
                    .find(|r| r.idempotency_key.as_ref() == Some(key))
            })
        });
        (due, target.cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(n: u128) -> ReservationId {
        ReservationId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn held(n: u128, budget: &str, expires: i64, key: Option<&str>) -> Reservation {
        Reservation {
            id: rid(n),
            budget_id: BudgetId::new(budget).unwrap(),
            tokens: 10,
            state: ReservationState::Held,
            created_at: Timestamp::from_micros(0),
            expires_at: Timestamp::from_micros(expires),
            idempotency_key: key.map(|k| IdempotencyKey::new(k).unwrap()),
            actual: None,
            settled_at: None,
        }
    }

    fn written(new: Option<Reservation>, updated: Vec<Reservation>) -> Unit {
        let mut unit = Unit::new(false);
        unit.record(&Changes {
            new_reservation: new,
            reservations: updated,
            ..Changes::default()
        });
        unit
    }

    #[test]
    fn the_units_rows_replace_the_databases_and_answer_the_same_question() {
        let b = BudgetId::new("b").unwrap();
        let chain: HashSet<&BudgetId> = [&b].into_iter().collect();
        let now = Timestamp::from_micros(100);
        let mut settled = held(1, "b", 50, None);
        settled.state = ReservationState::Committed;
        // The database still has r1 held and due; the batch committed it, and created r2
        // (due, holding key "k").
        let unit = written(Some(held(2, "b", 60, Some("k"))), vec![settled.clone()]);
        let from_db = vec![held(1, "b", 50, None)];

        let (due, target) = unit.reservations(from_db.clone(), &chain, rid(9), None, now);
        assert_eq!(
            due,
            vec![held(2, "b", 60, Some("k"))],
            "r1 is settled, r2 is due"
        );
        assert_eq!(target, None);

        let (_, target) = unit.reservations(from_db.clone(), &chain, rid(1), None, now);
        assert_eq!(target, Some(settled), "by id: the batch's version");

        let key = IdempotencyKey::new("k").unwrap();
        let (_, target) = unit.reservations(from_db, &chain, rid(9), Some(&key), now);
        assert_eq!(
            target.map(|r| r.id),
            Some(rid(2)),
            "by key: found in the batch"
        );
    }

    #[test]
    fn holds_off_the_chain_or_not_yet_due_are_left_out() {
        let b = BudgetId::new("b").unwrap();
        let chain: HashSet<&BudgetId> = [&b].into_iter().collect();
        let unit = written(
            Some(held(2, "other", 10, None)),
            vec![held(3, "b", 500, None)],
        );
        let (due, _) = unit.reservations(
            vec![held(4, "b", 20, None), held(5, "b", 10, None)],
            &chain,
            rid(9),
            None,
            Timestamp::from_micros(100),
        );
        let ids: Vec<_> = due.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![rid(5), rid(4)], "earliest first");
    }
}
