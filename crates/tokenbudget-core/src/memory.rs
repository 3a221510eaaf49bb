//! The in-memory store: a real concurrent store for one process, not a test double.
//!
//! All state sits behind one mutex. Every operation loads its snapshot, calls the rule and
//! applies the changes without awaiting, so the critical section is a few microseconds and an
//! operation is atomic and cancellation-safe by construction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::Result;
use crate::event::Event;
use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::model::{
    live_statuses, Budget, Charge, NewBudget, Reservation, ReservationState, Status,
};
use crate::outcome::{
    ChargeOutcome, CommitOutcome, ExtendOutcome, ReserveOutcome, RollbackOutcome, SweepOutcome,
};
use crate::rules::{
    self, Changes, ChargeCommand, CommitCommand, Decision, ExtendCommand, ReserveCommand,
    RollbackCommand, Snapshot, UpdateCommand,
};
use crate::store::{BudgetStore, EventQuery, LogCursor, LogPage, RecentQuery, ReservationQuery};
use crate::time::Timestamp;

/// Budgets, reservations and events in process memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store, ready to share.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }
}

#[derive(Debug, Default)]
struct State {
    budgets: BTreeMap<BudgetId, Budget>,
    reservations: HashMap<ReservationId, Reservation>,
    by_key: HashMap<IdempotencyKey, ReservationId>,
    charges: HashMap<IdempotencyKey, Charge>,
    /// Held reservations by the root of the budget they were made on, ordered by expiry.
    held: HashMap<BudgetId, BTreeSet<(Timestamp, ReservationId)>>,
    /// Every held reservation, ordered by expiry.
    expiry: BTreeSet<(Timestamp, ReservationId)>,
    events: Vec<Event>,
    events_by_budget: HashMap<BudgetId, Vec<usize>>,
}

impl State {
    /// The budget and its ancestors.
    fn chain(&self, leaf: &BudgetId) -> Vec<Budget> {
        let mut chain = Vec::new();
        let mut next = self.budgets.get(leaf);
        while let Some(budget) = next {
            chain.push(budget.clone());
            next = budget.parent.as_ref().and_then(|p| self.budgets.get(p));
        }
        chain
    }

    /// The root of `id`'s tree (`id` itself for a workflow budget or an unknown id).
    fn root(&self, id: &BudgetId) -> BudgetId {
        let mut root = id;
        while let Some(parent) = self.budgets.get(root).and_then(|b| b.parent.as_ref()) {
            root = parent;
        }
        root.clone()
    }

    /// Held reservations made anywhere in `root`'s tree, due at `now`.
    fn due_in_tree(&self, root: &BudgetId, now: Timestamp) -> Vec<Reservation> {
        self.held
            .get(root)
            .into_iter()
            .flat_map(|held| held.range(..=(now, ReservationId::from_uuid(uuid::Uuid::max()))))
            .map(|(_, id)| self.reservations[id].clone())
            .collect()
    }

    /// The chain of `leaf`, the tree's due holds and their chains.
    fn snapshot_for_chain(&self, leaf: &BudgetId, now: Timestamp) -> Snapshot {
        let mut snapshot = Snapshot::with_budgets(self.chain(leaf));
        snapshot.expired = self.due_in_tree(&self.root(leaf), now);
        for hold in &snapshot.expired {
            snapshot.budgets.extend(
                self.chain(&hold.budget_id)
                    .into_iter()
                    .map(|b| (b.id.clone(), b)),
            );
        }
        snapshot
    }

    fn apply<T>(&mut self, decision: Decision<T>) -> T {
        let Changes {
            new_budget,
            budgets,
            new_reservation,
            reservations,
            new_charge,
            events,
        } = decision.changes;
        if let Some(charge) = new_charge {
            self.charges.insert(charge.key.clone(), charge);
        }
        for budget in new_budget.into_iter().chain(budgets) {
            self.budgets.insert(budget.id.clone(), budget);
        }
        if let Some(reservation) = new_reservation {
            if let Some(key) = &reservation.idempotency_key {
                self.by_key.insert(key.clone(), reservation.id);
            }
            self.put_reservation(reservation);
        }
        for reservation in reservations {
            self.put_reservation(reservation);
        }
        for event in events {
            let seq = self.events.len() as u64 + 1;
            self.events_by_budget
                .entry(event.budget_id.clone())
                .or_default()
                .push(self.events.len());
            self.events.push(event.with_seq(seq));
        }
        decision.outcome
    }

    fn put_reservation(&mut self, reservation: Reservation) {
        let root = self.root(&reservation.budget_id);
        let held = self.held.entry(root).or_default();
        // The expiry may have moved (extend): drop the entry stored under the old one.
        if let Some(old) = self.reservations.get(&reservation.id) {
            let entry = (old.expires_at, old.id);
            held.remove(&entry);
            self.expiry.remove(&entry);
        }
        if reservation.state == ReservationState::Held {
            let entry = (reservation.expires_at, reservation.id);
            held.insert(entry);
            self.expiry.insert(entry);
        }
        self.reservations.insert(reservation.id, reservation);
    }
}

#[async_trait]
impl BudgetStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn create_budget(&self, new: NewBudget, now: Timestamp) -> Result<Budget> {
        let mut state = self.state.lock();
        let mut snapshot = Snapshot::default();
        if let Some(existing) = state.budgets.get(&new.id) {
            snapshot
                .budgets
                .insert(existing.id.clone(), existing.clone());
        }
        if let Some(parent) = &new.parent {
            snapshot
                .budgets
                .extend(state.chain(parent).into_iter().map(|b| (b.id.clone(), b)));
        }
        let decision = rules::create_budget(&snapshot, &new, now)?;
        Ok(state.apply(decision))
    }

    async fn reserve(&self, cmd: ReserveCommand, now: Timestamp) -> Result<ReserveOutcome> {
        let mut state = self.state.lock();
        let mut snapshot = state.snapshot_for_chain(&cmd.budget_id, now);
        let by_key = || {
            let key = cmd.idempotency_key.as_ref()?;
            state.by_key.get(key).map(|id| &state.reservations[id])
        };
        snapshot.reservation = state
            .reservations
            .get(&cmd.reservation_id)
            .or_else(by_key)
            .cloned();
        let decision = rules::reserve(&snapshot, &cmd, now)?;
        Ok(state.apply(decision))
    }

    async fn commit(&self, cmd: CommitCommand, now: Timestamp) -> Result<CommitOutcome> {
        let mut state = self.state.lock();
        let snapshot = settle_snapshot(&state, cmd.reservation_id, now);
        let decision = rules::commit(&snapshot, &cmd, now)?;
        Ok(state.apply(decision))
    }

    async fn rollback(&self, cmd: RollbackCommand, now: Timestamp) -> Result<RollbackOutcome> {
        let mut state = self.state.lock();
        let snapshot = settle_snapshot(&state, cmd.reservation_id, now);
        let decision = rules::rollback(&snapshot, &cmd, now)?;
        Ok(state.apply(decision))
    }

    async fn extend(&self, cmd: ExtendCommand, now: Timestamp) -> Result<ExtendOutcome> {
        let mut state = self.state.lock();
        let snapshot = settle_snapshot(&state, cmd.reservation_id, now);
        let decision = rules::extend(&snapshot, &cmd, now)?;
        Ok(state.apply(decision))
    }

    async fn charge(&self, cmd: ChargeCommand, now: Timestamp) -> Result<ChargeOutcome> {
        let mut state = self.state.lock();
        let mut snapshot = state.snapshot_for_chain(&cmd.budget_id, now);
        snapshot.charge = state.charges.get(&cmd.key).cloned();
        let decision = rules::charge(&snapshot, &cmd, now)?;
        Ok(state.apply(decision))
    }

    async fn update_budget(&self, cmd: UpdateCommand, now: Timestamp) -> Result<Budget> {
        let mut state = self.state.lock();
        let snapshot = Snapshot::with_budgets(state.budgets.get(&cmd.budget_id).cloned());
        let decision = rules::update_budget(&snapshot, &cmd, now)?;
        Ok(state.apply(decision))
    }

    async fn reservations(&self, query: ReservationQuery) -> Result<Vec<Reservation>> {
        let state = self.state.lock();
        let under = |r: &Reservation| {
            query
                .budget_id
                .as_ref()
                .is_none_or(|id| state.chain(&r.budget_id).iter().any(|b| &b.id == id))
        };
        let mut found: Vec<Reservation> = state
            .reservations
            .values()
            .filter(|r| query.admits(r) && under(r))
            .cloned()
            .collect();
        found.sort_by_key(|r| r.id);
        found.truncate(query.limit);
        Ok(found)
    }

    async fn charge_by_key(&self, key: &IdempotencyKey) -> Result<Option<Charge>> {
        Ok(self.state.lock().charges.get(key).cloned())
    }

    async fn status(&self, id: &BudgetId, now: Timestamp) -> Result<Option<Status>> {
        let state = self.state.lock();
        let Some(budget) = state.budgets.get(id) else {
            return Ok(None);
        };
        let under: Vec<Reservation> = state
            .due_in_tree(&state.root(id), now)
            .into_iter()
            .filter(|hold| state.chain(&hold.budget_id).iter().any(|b| &b.id == id))
            .collect();
        Ok(Some(Status::live(budget, &under, now)))
    }

    async fn statuses(&self, now: Timestamp) -> Result<Vec<Status>> {
        let state = self.state.lock();
        let due: Vec<Reservation> = state
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| state.reservations[id].clone())
            .collect();
        Ok(live_statuses(state.budgets.values().cloned(), &due, now))
    }

    async fn sweep_expired(&self, now: Timestamp, max: usize) -> Result<SweepOutcome> {
        let mut state = self.state.lock();
        let mut snapshot = Snapshot::default();
        let due: Vec<ReservationId> = state
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            let reservation = state.reservations[&id].clone();
            snapshot.budgets.extend(
                state
                    .chain(&reservation.budget_id)
                    .into_iter()
                    .map(|b| (b.id.clone(), b)),
            );
            snapshot.expired.push(reservation);
        }
        let decision = rules::sweep(&snapshot, now)?;
        Ok(state.apply(decision))
    }

    async fn budget(&self, id: &BudgetId) -> Result<Option<Budget>> {
        Ok(self.state.lock().budgets.get(id).cloned())
    }

    async fn list_budgets(&self) -> Result<Vec<Budget>> {
        Ok(self.state.lock().budgets.values().cloned().collect())
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>> {
        Ok(self.state.lock().reservations.get(&id).cloned())
    }

    async fn log_after(&self, after: LogCursor, limit: usize) -> Result<LogPage> {
        let state = self.state.lock();
        // Writes are serialized by the mutex: `commit` is always 0 and seq = index + 1.
        let start = usize::try_from(after.seq).unwrap_or(usize::MAX);
        let events: Vec<Event> = state
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect();
        let next = events.last().map_or(after, |e| LogCursor {
            commit: 0,
            seq: e.seq,
        });
        Ok(LogPage { events, next })
    }

    async fn recent_events(&self, query: RecentQuery) -> Result<Vec<Event>> {
        let state = self.state.lock();
        // seq = index + 1: events before `before` end at index `before - 1`.
        let end = query
            .before
            .map_or(state.events.len(), |b| {
                usize::try_from(b.saturating_sub(1)).unwrap_or(usize::MAX)
            })
            .min(state.events.len());
        Ok(state.events[..end]
            .iter()
            .rev()
            .filter(|e| query.types.iter().any(|t| t == e.kind.type_name()))
            .take(query.limit)
            .cloned()
            .collect())
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<Event>> {
        let state = self.state.lock();
        // seq = index + 1, so events after `after_seq` start at index `after_seq`.
        let start = usize::try_from(query.after_seq).unwrap_or(usize::MAX);
        let events: Vec<Event> = match &query.budget_id {
            None => state
                .events
                .iter()
                .skip(start)
                .take(query.limit)
                .cloned()
                .collect(),
            Some(id) => {
                let positions = state
                    .events_by_budget
                    .get(id)
                    .map_or(&[][..], Vec::as_slice);
                let from = positions.partition_point(|&i| i < start);
                positions[from..]
                    .iter()
                    .take(query.limit)
                    .map(|&i| state.events[i].clone())
                    .collect()
            }
        };
        Ok(events)
    }
}

/// The snapshot for commit and rollback: the reservation and its budget's chain.
fn settle_snapshot(state: &State, id: ReservationId, now: Timestamp) -> Snapshot {
    match state.reservations.get(&id) {
        Some(reservation) => {
            let mut snapshot = state.snapshot_for_chain(&reservation.budget_id, now);
            snapshot.reservation = Some(reservation.clone());
            snapshot
        }
        None => Snapshot::default(),
    }
}
