//! The working copy a rule mutates, and the chain and expiry helpers every rule shares.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::event::{EventKind, NewEvent, ReleaseReason};
use crate::id::{BudgetId, ReservationId};
use crate::model::{Budget, Charge, Reservation, ReservationState, MAX_DEPTH, MAX_TOKENS};
use crate::rules::snapshot::{Changes, Snapshot};
use crate::time::Timestamp;

/// The snapshot being changed, with a record of what changed.
pub(crate) struct Work {
    pub now: Timestamp,
    budgets: BTreeMap<BudgetId, Budget>,
    touched: BTreeSet<BudgetId>,
    reservations: BTreeMap<ReservationId, Reservation>,
    new_budget: Option<Budget>,
    new_reservation: Option<Reservation>,
    new_charge: Option<Charge>,
    events: Vec<NewEvent>,
}

impl Work {
    /// The working copy of `snapshot` at `now`, with every loaded periodic budget whose
    /// window has ended rolled over first ([`Work::roll_over`]).
    pub fn new(snapshot: &Snapshot, now: Timestamp) -> Self {
        let mut work = Self {
            now,
            budgets: snapshot.budgets.clone(),
            touched: BTreeSet::new(),
            reservations: BTreeMap::new(),
            new_budget: None,
            new_reservation: None,
            new_charge: None,
            events: Vec::new(),
        };
        work.roll_over();
        work
    }

    /// The lazy period rollover: each loaded budget whose stored window ended at or before
    /// `now` starts counting again at 0 in the window holding `now`, with one `BUDGET_RESET`
    /// recording the window that closed and what was used in it, however many windows passed
    /// without traffic. Reserved tokens and held counts are untouched: a hold made in the
    /// closed window still holds until it is committed (counting in the window of its
    /// commit), rolled back or expires.
    fn roll_over(&mut self) {
        let now = self.now;
        for (id, budget) in &mut self.budgets {
            let (Some(closed), Some(current)) = (budget.window(), budget.window_at(now)) else {
                continue;
            };
            if closed.end > now {
                continue;
            }
            self.events.push(NewEvent {
                budget_id: id.clone(),
                at: now,
                kind: EventKind::BudgetReset {
                    window_start: closed.start,
                    window_end: closed.end,
                    used: budget.used,
                    next_start: current.start,
                },
            });
            budget.used = 0;
            budget.window_start = Some(current.start);
            self.touched.insert(id.clone());
        }
    }

    pub fn budget(&self, id: &BudgetId) -> Option<&Budget> {
        self.budgets.get(id)
    }

    /// The ids from `leaf` up to its root. Every ancestor must be loaded.
    pub fn chain(&self, leaf: &BudgetId) -> Result<Vec<BudgetId>> {
        let mut chain = Vec::new();
        let mut next = Some(leaf.clone());
        while let Some(id) = next {
            let budget = self.budgets.get(&id).ok_or_else(|| snapshot_bug(&id))?;
            if chain.len() >= MAX_DEPTH {
                return Err(snapshot_bug(&id));
            }
            next = budget.parent.clone();
            chain.push(id);
        }
        Ok(chain)
    }

    /// Applies `f` to every budget of `chain`, emitting the event it returns for each.
    pub fn update_chain(
        &mut self,
        chain: &[BudgetId],
        mut f: impl FnMut(&mut Budget) -> Result<Vec<EventKind>>,
    ) -> Result<()> {
        for id in chain {
            let budget = self.budgets.get_mut(id).ok_or_else(|| snapshot_bug(id))?;
            let kinds = f(budget)?;
            self.touched.insert(id.clone());
            for kind in kinds {
                self.events.push(NewEvent {
                    budget_id: id.clone(),
                    at: self.now,
                    kind,
                });
            }
        }
        Ok(())
    }

    /// Appends an event that changes no state (a refusal, a clamp) on budget `id`.
    pub fn note(&mut self, id: &BudgetId, kind: EventKind) {
        self.events.push(NewEvent {
            budget_id: id.clone(),
            at: self.now,
            kind,
        });
    }

    pub fn insert_budget(&mut self, budget: Budget, kind: EventKind) {
        self.events.push(NewEvent {
            budget_id: budget.id.clone(),
            at: self.now,
            kind,
        });
        self.new_budget = Some(budget);
    }

    pub fn insert_reservation(&mut self, reservation: Reservation) {
        self.new_reservation = Some(reservation);
    }

    pub fn insert_charge(&mut self, charge: Charge) {
        self.new_charge = Some(charge);
    }

    /// Adds `tokens` to `used` on every budget of `chain`. For each budget, `record` runs
    /// first (it may change the budget, and returns the event that records the usage), then
    /// `BUDGET_EXHAUSTED` follows when this usage makes `used` reach the limit (once per
    /// budget: `used` never decreases).
    pub fn add_used(
        &mut self,
        chain: &[BudgetId],
        tokens: u64,
        mut record: impl FnMut(&mut Budget) -> Result<EventKind>,
    ) -> Result<()> {
        self.update_chain(chain, |budget| {
            let used = budget
                .used
                .checked_add(tokens)
                .filter(|&u| u <= MAX_TOKENS)
                .ok_or_else(|| Error::Overflow {
                    budget_id: budget.id.clone(),
                    field: "used",
                })?;
            let was_exhausted = budget.is_exhausted();
            let mut events = vec![record(budget)?];
            budget.used = used;
            if !was_exhausted && budget.is_exhausted() {
                events.push(EventKind::BudgetExhausted {
                    used: budget.used,
                    limit: budget.limit,
                });
            }
            Ok(events)
        })
    }

    pub fn put_reservation(&mut self, reservation: Reservation) {
        self.reservations.insert(reservation.id, reservation);
    }

    /// The latest state of a reservation: as changed in this decision, else as loaded.
    pub fn current(&self, loaded: &Reservation) -> Reservation {
        self.reservations
            .get(&loaded.id)
            .cloned()
            .unwrap_or_else(|| loaded.clone())
    }

    /// Releases every reservation of `expired` that is still held and due, exactly once.
    pub fn release_expired(&mut self, expired: &[Reservation]) -> Result<Vec<ReservationId>> {
        let mut released = Vec::new();
        for loaded in expired {
            let mut reservation = self.current(loaded);
            if reservation.state != ReservationState::Held || reservation.expires_at > self.now {
                continue;
            }
            self.release(&mut reservation, ReleaseReason::Expired)?;
            released.push(reservation.id);
            self.put_reservation(reservation);
        }
        Ok(released)
    }

    /// Moves a held reservation to released or expired, releasing its tokens up its chain.
    pub fn release(&mut self, reservation: &mut Reservation, reason: ReleaseReason) -> Result<()> {
        let chain = self.chain(&reservation.budget_id)?;
        let (id, origin, tokens) = (
            reservation.id,
            reservation.budget_id.clone(),
            reservation.tokens,
        );
        self.update_chain(&chain, |budget| {
            budget.reserved = budget
                .reserved
                .checked_sub(tokens)
                .ok_or_else(|| snapshot_bug(&budget.id))?;
            budget.held = budget
                .held
                .checked_sub(1)
                .ok_or_else(|| snapshot_bug(&budget.id))?;
            Ok(vec![EventKind::TokensReleased {
                reservation_id: id,
                origin: origin.clone(),
                tokens,
                reason,
            }])
        })?;
        reservation.state = match reason {
            ReleaseReason::Rollback => ReservationState::Released,
            ReleaseReason::Expired => ReservationState::Expired,
        };
        reservation.settled_at = Some(self.now);
        Ok(())
    }

    pub fn finish(self) -> Changes {
        let budgets = self
            .touched
            .iter()
            .filter(|id| self.new_budget.as_ref().map(|b| &b.id) != Some(*id))
            .filter_map(|id| self.budgets.get(id).cloned())
            .collect();
        Changes {
            new_budget: self.new_budget,
            budgets,
            new_reservation: self.new_reservation,
            reservations: self.reservations.into_values().collect(),
            new_charge: self.new_charge,
            events: self.events,
        }
    }
}

/// What differs between a keyed command's first use (`then`: budget and tokens) and its
/// repeat (`now`), or `None` when the repeat asks for the same: the reason of an idempotency
/// conflict, shared by reserve and charge.
pub(crate) fn repeat_differs(then: (&BudgetId, u64), now: (&BudgetId, u64)) -> Option<String> {
    if then.0 != now.0 {
        Some(format!("budget {} then, {} now", then.0, now.0))
    } else if then.1 != now.1 {
        Some(format!("{} tokens then, {} now", then.1, now.1))
    } else {
        None
    }
}

/// The store handed the rules a snapshot that breaks its contract (a missing ancestor,
/// totals that do not add up). Not retryable: it is a bug or a corrupt database.
pub(crate) fn snapshot_bug(id: &BudgetId) -> Error {
    Error::Storage {
        backend: "core",
        message: format!(
            "inconsistent snapshot at budget {id}: an ancestor was not loaded or totals do not add up"
        ),
        retryable: false,
        source: None,
    }
}
