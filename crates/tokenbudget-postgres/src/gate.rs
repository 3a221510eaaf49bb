//! Admission to a budget tree inside this process.
//!
//! Every write on a budget tree locks its root row, so operations on one tree run one at a
//! time in the database whatever the pool size. Left alone, every pooled connection would end
//! up waiting in that row's lock queue: the waiters cost the database more work per commit (each
//! wakes, re-checks the updated row and waits again), and the pool has no connection left for
//! other trees. Measured with 8 connections on one hot budget, throughput fell by about a third
//! against 2.
//!
//! So at most [`Config::root_concurrency`](crate::Config::root_concurrency) operations of this
//! process run on one tree at once (two by default: one holds the lock, the next waits right
//! behind it, its statements already sent); the others wait here, first come first served, on
//! a tokio semaphore, before they take a connection. The gate only orders this process's
//! operations; correctness across processes rests on the row locks alone, and an operation
//! whose tree is not known yet simply passes.
//!
//! The gate learns the tree of a budget from the rows each operation locks (a budget's parent
//! never changes), and the tree of a reservation from the reserve that granted it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokenbudget_core::{Budget, BudgetId, ReservationId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many budgets, and how many held reservations, the gate remembers the tree of; past
/// that it forgets them all and learns again (an unknown tree only means no queueing).
const REMEMBERED: usize = 100_000;

/// The in-process admission to budget trees; see the module docs.
#[derive(Debug)]
pub(crate) struct Gate {
    per_root: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The root of each budget seen.
    roots: HashMap<BudgetId, BudgetId>,
    /// The root of each reservation granted here and not yet settled here.
    held: HashMap<ReservationId, BudgetId>,
    /// The semaphore of each tree with an operation running or waiting.
    slots: HashMap<BudgetId, Arc<Semaphore>>,
}

/// What an operation is keyed by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// A reserve on this budget.
    Budget(&'a BudgetId),
    /// A commit or rollback of this reservation.
    Reservation(ReservationId),
}

/// Entry to a tree, held for as long as the operation's transaction runs.
#[derive(Debug)]
pub(crate) struct Pass {
    gate: Arc<Gate>,
    root: BudgetId,
    permit: Option<OwnedSemaphorePermit>,
}

impl Gate {
    /// A gate admitting `per_root` operations per tree at once; 0 admits all.
    pub(crate) fn new(per_root: usize) -> Self {
        Self {
            per_root,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a cache: a panic while it was locked leaves nothing half-done that
        // matters for correctness.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits, at most `timeout`, for a turn on `target`'s tree. `Ok(None)`: the tree is not
    /// known yet, or the gate is off; go ahead. `Err(())`: the wait timed out.
    pub(crate) async fn enter(
        self: &Arc<Self>,
        target: Target<'_>,
        timeout: Duration,
    ) -> Result<Option<Pass>, ()> {
        if self.per_root == 0 {
            return Ok(None);
        }
        let (root, semaphore) = {
            let mut state = self.state();
            let root = match target {
                Target::Budget(id) => state.roots.get(id),
                Target::Reservation(id) => state.held.get(&id),
            };
            let Some(root) = root.cloned() else {
                return Ok(None);
            };
            let semaphore = state
                .slots
                .entry(root.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_root)))
                .clone();
            (root, semaphore)
        };
        // From here the pass owns the slot's cleanup, whether the wait ends in a permit, a
        // timeout or the caller dropping this future.
        let mut pass = Pass {
            gate: self.clone(),
            root,
            permit: None,
        };
        match tokio::time::timeout(timeout, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => {
                pass.permit = Some(permit);
                Ok(Some(pass))
            }
            // The semaphore is never closed.
            Ok(Err(_)) => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// Learns the tree of every budget in `locked` whose ancestors were locked with it (the
    /// whole chain is, for reserve, commit and rollback).
    pub(crate) fn learn<'a>(&self, locked: impl IntoIterator<Item = &'a Budget> + Clone) {
        if self.per_root == 0 {
            return;
        }
        let mut state = self.state();
        // After an operation or two every budget of a tree is known: nothing to build.
        if locked
            .clone()
            .into_iter()
            .all(|b| state.roots.contains_key(&b.id))
        {
            return;
        }
        let parents: HashMap<&BudgetId, Option<&BudgetId>> = locked
            .clone()
            .into_iter()
            .map(|b| (&b.id, b.parent.as_ref()))
            .collect();
        for budget in locked {
            if state.roots.contains_key(&budget.id) {
                continue;
            }
            let mut root = &budget.id;
            let found = loop {
                match parents.get(root) {
                    Some(Some(parent)) => root = parent,
                    Some(None) => break true,
                    None => break false,
                }
            };
            if found {
                if state.roots.len() >= REMEMBERED {
                    state.roots.clear();
                }
                let root = root.clone();
                state.roots.insert(budget.id.clone(), root);
            }
        }
    }

    /// Remembers that reservation `id` holds tokens on `budget`'s tree.
    pub(crate) fn granted(&self, id: ReservationId, budget: &BudgetId) {
        if self.per_root == 0 {
            return;
        }
        let mut state = self.state();
        if let Some(root) = state.roots.get(budget).cloned() {
            if state.held.len() >= REMEMBERED {
                state.held.clear();
            }
            state.held.insert(id, root);
        }
    }

    /// Forgets reservation `id` after its commit or rollback.
    pub(crate) fn settled(&self, id: ReservationId) {
        if self.per_root == 0 {
            return;
        }
        self.state().held.remove(&id);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut state = self.gate.state();
        // Remove the slot once no pass holds or awaits it: clones are taken under this lock,
        // so a count of one (the map's own) means nobody else can be using it.
        if state
            .slots
            .get(&self.root)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            state.slots.remove(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenbudget_core::Timestamp;

    fn budget(id: &str, parent: Option<&str>) -> Budget {
        Budget {
            id: BudgetId::new(id).unwrap(),
            parent: parent.map(|p| BudgetId::new(p).unwrap()),
            limit: 100,
            used: 0,
            reserved: 0,
            held: 0,
            created_at: Timestamp::from_micros(0),
        }
    }

    fn id(s: &str) -> BudgetId {
        BudgetId::new(s).unwrap()
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn unknown_trees_pass_and_known_ones_admit_per_root_in_order() {
        let gate = Arc::new(Gate::new(2));
        assert!(gate
            .enter(Target::Budget(&id("phase")), WAIT)
            .await
            .unwrap()
            .is_none());

        let chain = [budget("wf", None), budget("phase", Some("wf"))];
        gate.learn(chain.iter());
        let a = gate
            .enter(Target::Budget(&id("phase")), WAIT)
            .await
            .unwrap();
        let b = gate.enter(Target::Budget(&id("wf")), WAIT).await.unwrap();
        assert!(a.is_some() && b.is_some());

        // A third operation on the tree waits (here: times out) until one leaves.
        let short = Duration::from_millis(20);
        assert!(gate
            .enter(Target::Budget(&id("phase")), short)
            .await
            .is_err());
        drop(a);
        let c = gate
            .enter(Target::Budget(&id("phase")), short)
            .await
            .unwrap();
        assert!(c.is_some());

        // Another tree is not held up.
        gate.learn([budget("other", None)].iter());
        assert!(gate
            .enter(Target::Budget(&id("other")), short)
            .await
            .unwrap()
            .is_some());

        drop((b, c));
        assert!(gate.state().slots.is_empty(), "idle slots are removed");
    }

    #[tokio::test]
    async fn reservations_are_keyed_by_the_tree_that_granted_them() {
        let gate = Arc::new(Gate::new(1));
        gate.learn([budget("wf", None), budget("phase", Some("wf"))].iter());
        let r = ReservationId::from_uuid(uuid::Uuid::from_u128(7));
        gate.granted(r, &id("phase"));
        let held = gate.enter(Target::Budget(&id("wf")), WAIT).await.unwrap();
        assert!(held.is_some());
        let short = Duration::from_millis(20);
        assert!(gate.enter(Target::Reservation(r), short).await.is_err());
        drop(held);
        assert!(gate
            .enter(Target::Reservation(r), short)
            .await
            .unwrap()
            .is_some());
        gate.settled(r);
        assert!(gate
            .enter(Target::Reservation(r), short)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_gate_of_zero_admits_everything() {
        let gate = Arc::new(Gate::new(0));
        gate.learn([budget("wf", None)].iter());
        let mut passes = Vec::new();
        for _ in 0..10 {
            // Each entry is kept, so none of them is waiting for another to leave.
            passes.push(gate.enter(Target::Budget(&id("wf")), WAIT).await.unwrap());
        }
        assert!(passes.iter().all(Option::is_none));
    }

    #[tokio::test]
    async fn a_caller_dropped_while_waiting_leaves_no_slot_behind() {
        let gate = Arc::new(Gate::new(1));
        gate.learn([budget("wf", None)].iter());
        let held = gate.enter(Target::Budget(&id("wf")), WAIT).await.unwrap();
        let wf = id("wf");
        let waiting = gate.enter(Target::Budget(&wf), WAIT);
        let _ = tokio::time::timeout(Duration::from_millis(20), waiting).await;
        drop(held);
        assert!(gate.state().slots.is_empty());
    }
}
