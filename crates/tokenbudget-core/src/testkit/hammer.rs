//! The concurrency hammer: many tasks reserving, committing and rolling back at once, then
//! every invariant checked against what the tasks were told.

use std::collections::BTreeMap;

use crate::id::{BudgetId, ReservationId};
use crate::model::ReservationState;
use crate::testkit::{check_replay_matches_store, soak_factor, tracker, LogCheck, StoreHarness};
use crate::tracker::{ReserveOptions, Tracker};

const TASKS: usize = 16;
/// Rounds per task, times [`soak_factor`].
const ROUNDS: usize = 40;

/// Many tasks on one hot budget: no overdraft in any prefix of the log, and the stored
/// totals equal what the tasks were acknowledged.
pub async fn hammer_hot_budget(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    t.create_workflow("hot", 2_000).await.expect("create hot");
    let ledger = run(&t, &["hot"], TASKS, ROUNDS * soak_factor()).await;
    verify(&t, &ledger).await;
    assert!(
        ledger.refusals > 0,
        "the hot budget was never full: the hammer proved nothing"
    );
}

/// Many tasks on a workflow and its sibling phases, whose limits add up to more than the
/// workflow's: no level is ever overdrawn.
pub async fn hammer_workflow_with_phases(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    t.create_workflow("wf", 3_000).await.expect("create wf");
    for phase in ["wf:a", "wf:b", "wf:c"] {
        t.create_phase(phase, "wf", 1_500)
            .await
            .expect("create phase");
    }
    let ledger = run(
        &t,
        &["wf:a", "wf:b", "wf:c", "wf"],
        TASKS,
        ROUNDS * soak_factor(),
    )
    .await;
    verify(&t, &ledger).await;
    assert!(
        ledger.refusals > 0,
        "no budget was ever full: the hammer proved nothing"
    );
}

/// What the tasks were told.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Every granted reservation: its budget, size, and final state as acknowledged.
    pub(crate) reservations: BTreeMap<ReservationId, (BudgetId, u64, ReservationState, u64)>,
    pub(crate) refusals: usize,
}

/// A tiny deterministic generator, so a failing run can be repeated exactly.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn run(t: &Tracker, budgets: &[&str], tasks: usize, rounds: usize) -> Ledger {
    let budgets: Vec<BudgetId> = budgets.iter().map(|b| BudgetId::new(*b).unwrap()).collect();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (t, budgets) = (t.clone(), budgets.clone());
            tokio::spawn(async move {
                let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ ((task as u64 + 1) * 0x1000_0001));
                let mut ledger = Ledger::default();
                for _ in 0..rounds {
                    let budget = budgets[rng.below(budgets.len() as u64) as usize].clone();
                    let tokens = 1 + rng.below(120);
                    let outcome = t
                        .reserve(&budget, tokens, ReserveOptions::new())
                        .await
                        .unwrap_or_else(|e| panic!("reserve failed under load: {e}"));
                    let Some(grant) = outcome.granted() else {
                        ledger.refusals += 1;
                        continue;
                    };
                    let id = grant.reservation.id;
                    let entry = match rng.below(10) {
                        0..=5 => {
                            let actual = rng.below(tokens + 1);
                            t.commit(id, actual)
                                .await
                                .unwrap_or_else(|e| panic!("commit failed under load: {e}"));
                            (ReservationState::Committed, actual)
                        }
                        6..=8 => {
                            t.rollback(id)
                                .await
                                .unwrap_or_else(|e| panic!("rollback failed under load: {e}"));
                            (ReservationState::Released, 0)
                        }
                        _ => (ReservationState::Held, 0),
                    };
                    ledger
                        .reservations
                        .insert(id, (budget, tokens, entry.0, entry.1));
                }
                ledger
            })
        })
        .collect();
    let mut total = Ledger::default();
    for handle in handles {
        let ledger = handle.await.expect("hammer task panicked");
        total.refusals += ledger.refusals;
        total.reservations.extend(ledger.reservations);
    }
    total
}

pub(crate) async fn verify(t: &Tracker, ledger: &Ledger) {
    let budgets = check_replay_matches_store(t.store().as_ref(), LogCheck { strict_limit: true })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Expected totals per budget, each reservation counted on its budget and every ancestor.
    let parents: BTreeMap<_, _> = budgets
        .iter()
        .map(|b| (b.id.clone(), b.parent.clone()))
        .collect();
    let mut expected: BTreeMap<BudgetId, (u64, u64, u64)> = BTreeMap::new();
    for (id, (budget, tokens, state, actual)) in &ledger.reservations {
        let stored = t
            .store()
            .reservation(*id)
            .await
            .expect("read reservation")
            .unwrap_or_else(|| panic!("acknowledged reservation {id} is missing"));
        assert_eq!(stored.state, *state, "reservation {id}");
        assert_eq!(stored.tokens, *tokens, "reservation {id}");
        let mut level = Some(budget.clone());
        while let Some(b) = level {
            let totals = expected.entry(b.clone()).or_default();
            match state {
                ReservationState::Committed => totals.0 += actual,
                ReservationState::Held => {
                    totals.1 += tokens;
                    totals.2 += 1;
                }
                _ => {}
            }
            level = parents[&b].clone();
        }
    }
    for budget in &budgets {
        let want = expected.get(&budget.id).copied().unwrap_or_default();
        assert_eq!(
            (budget.used, budget.reserved, budget.held),
            want,
            "budget {}: stored (used, reserved, held) differ from the acknowledged operations",
            budget.id
        );
        assert!(
            budget.used + budget.reserved <= budget.limit,
            "budget {} overdrawn",
            budget.id
        );
    }
}
