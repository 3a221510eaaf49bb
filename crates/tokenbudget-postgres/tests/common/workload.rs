//! A mixed workload (reserve, then commit, roll back or abandon) run by several instances at
//! once, what each instance was told, and the checks that the database agrees with it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokenbudget_core::testkit::{check_replay_matches_store, LogCheck};
use tokenbudget_core::{
    Budget, BudgetId, DynBudgetStore, ReservationId, ReservationState, ReserveOptions, Tracker,
};

/// The budgets every workload runs on: a hot workflow and a workflow whose sibling phases'
/// limits add up to more than its own.
pub const HOT: &str = "hot";
pub const WORKFLOW: &str = "wf";
pub const PHASES: [&str; 3] = ["wf:plan", "wf:draft", "wf:review"];

/// The budgets a task picks from.
pub fn targets() -> Vec<BudgetId> {
    [HOT, WORKFLOW]
        .into_iter()
        .chain(PHASES)
        .map(|b| BudgetId::new(b).unwrap())
        .collect()
}

/// Creates [`HOT`], [`WORKFLOW`] and its [`PHASES`], with limits `scale` times the base
/// ones (which fill up after roughly 250 grants per budget).
pub async fn create_budgets(store: &DynBudgetStore, scale: u64) {
    let t = Tracker::new(store.clone());
    t.create_workflow(HOT, 5_000 * scale)
        .await
        .expect("create hot");
    t.create_workflow(WORKFLOW, 10_000 * scale)
        .await
        .expect("create wf");
    for phase in PHASES {
        t.create_phase(phase, WORKFLOW, 4_000 * scale)
            .await
            .expect("create phase");
    }
}

/// How a granted reservation ended, as acknowledged to its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Commit acknowledged with this actual.
    Committed(u64),
    /// Rollback acknowledged.
    RolledBack,
    /// Left to expire (a 20 ms timeout).
    Abandoned,
    /// The commit or rollback failed: its outcome is unknown.
    Unknown,
}

/// One acknowledged grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub budget: BudgetId,
    pub tokens: u64,
    pub end: End,
}

/// What one instance's tasks were told.
#[derive(Debug, Default)]
pub struct Ledger {
    pub acks: BTreeMap<ReservationId, Ack>,
    pub refusals: u64,
    /// Operations that failed (only tolerated under fault injection).
    pub errors: u64,
}

impl Ledger {
    pub fn merge(&mut self, other: Ledger) {
        self.acks.extend(other.acks);
        self.refusals += other.refusals;
        self.errors += other.errors;
    }

    /// One line per fact, for a child process's stdout.
    pub fn to_lines(&self) -> String {
        let mut out = String::new();
        for (id, ack) in &self.acks {
            let end = match ack.end {
                End::Committed(actual) => format!("committed:{actual}"),
                End::RolledBack => "released".into(),
                End::Abandoned => "abandoned".into(),
                End::Unknown => "unknown".into(),
            };
            writeln!(out, "ACK {id} {} {} {end}", ack.budget, ack.tokens).unwrap();
        }
        writeln!(out, "STATS {} {}", self.refusals, self.errors).unwrap();
        out
    }

    /// Parses [`Ledger::to_lines`] out of a child's whole stdout.
    pub fn from_lines(text: &str) -> Ledger {
        let mut ledger = Ledger::default();
        let mut saw_stats = false;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["ACK", id, budget, tokens, end] => {
                    let end = match *end {
                        "released" => End::RolledBack,
                        "abandoned" => End::Abandoned,
                        "unknown" => End::Unknown,
                        other => End::Committed(
                            other.strip_prefix("committed:").unwrap().parse().unwrap(),
                        ),
                    };
                    ledger.acks.insert(
                        id.parse().unwrap(),
                        Ack {
                            budget: BudgetId::new(*budget).unwrap(),
                            tokens: tokens.parse().unwrap(),
                            end,
                        },
                    );
                }
                ["STATS", refusals, errors] => {
                    ledger.refusals = refusals.parse().unwrap();
                    ledger.errors = errors.parse().unwrap();
                    saw_stats = true;
                }
                _ => {}
            }
        }
        assert!(saw_stats, "child output has no STATS line:\n{text}");
        ledger
    }
}

/// A tiny deterministic generator.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `tasks` tasks doing `rounds` rounds each on `store`, plus a sweeper, as one instance.
/// Errors panic unless `tolerate_errors` (fault injection), when they are counted.
pub async fn run_instance(
    store: DynBudgetStore,
    tasks: usize,
    rounds: usize,
    seed: u64,
    tolerate_errors: bool,
) -> Ledger {
    let never = Arc::new(AtomicBool::new(false));
    run_instance_until(store, tasks, rounds, never, seed, tolerate_errors).await
}

/// [`run_instance`], each task stopping after `rounds` rounds or once `until` is set.
pub async fn run_instance_until(
    store: DynBudgetStore,
    tasks: usize,
    rounds: usize,
    until: Arc<AtomicBool>,
    seed: u64,
    tolerate_errors: bool,
) -> Ledger {
    let stop = Arc::new(AtomicBool::new(false));
    let sweeper = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let t = Tracker::new(store);
            while !stop.load(Ordering::Relaxed) {
                let swept = t.store().sweep_expired(t.clock().now(), 64).await;
                if let Err(e) = swept {
                    assert!(tolerate_errors, "sweep failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let store = store.clone();
            let seed = seed ^ (task as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            tokio::spawn(run_task(
                store,
                rounds,
                until.clone(),
                seed,
                tolerate_errors,
            ))
        })
        .collect();
    let mut ledger = Ledger::default();
    for handle in handles {
        ledger.merge(handle.await.expect("workload task panicked"));
    }
    stop.store(true, Ordering::Relaxed);
    sweeper.await.expect("sweeper panicked");
    ledger
}

async fn run_task(
    store: DynBudgetStore,
    rounds: usize,
    until: Arc<AtomicBool>,
    seed: u64,
    tolerate: bool,
) -> Ledger {
    let t = Tracker::new(store);
    let targets = targets();
    let mut rng = XorShift(seed | 1);
    let mut ledger = Ledger::default();
    for _ in 0..rounds {
        if until.load(Ordering::Relaxed) {
            break;
        }
        let budget = targets[rng.below(targets.len() as u64) as usize].clone();
        let tokens = 1 + rng.below(150);
        let action = rng.below(10);
        // Abandoned holds expire quickly; the others never expire before they are settled, so
        // no commit is late and `used + reserved <= limit` must hold after every event.
        let timeout = if action == 9 {
            Duration::from_millis(20)
        } else {
            Duration::from_secs(60)
        };
        let outcome = match t
            .reserve(&budget, tokens, ReserveOptions::new().with_timeout(timeout))
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                assert!(tolerate, "reserve failed: {e}");
                ledger.errors += 1;
                continue;
            }
        };
        let Some(grant) = outcome.granted() else {
            ledger.refusals += 1;
            continue;
        };
        let id = grant.reservation.id;
        let end = match action {
            0..=5 => {
                let actual = rng.below(tokens + 1);
                match t.commit(id, actual).await {
                    Ok(_) => End::Committed(actual),
                    Err(e) => {
                        assert!(tolerate, "commit failed: {e}");
                        ledger.errors += 1;
                        End::Unknown
                    }
                }
            }
            6..=8 => match t.rollback(id).await {
                Ok(_) => End::RolledBack,
                Err(e) => {
                    assert!(tolerate, "rollback failed: {e}");
                    ledger.errors += 1;
                    End::Unknown
                }
            },
            _ => End::Abandoned,
        };
        ledger.acks.insert(
            id,
            Ack {
                budget,
                tokens,
                end,
            },
        );
    }
    ledger
}

/// Releases every abandoned hold (all due by now), retrying through transient failures.
pub async fn final_sweep(store: &DynBudgetStore) {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Tracker::new(store.clone());
    loop {
        match store.sweep_expired(t.clock().now(), 10_000).await {
            Ok(outcome) if outcome.released.is_empty() => return,
            Ok(_) => {}
            Err(e) if e.is_retryable() => {}
            Err(e) => panic!("final sweep: {e}"),
        }
    }
}

/// Every check of a finished workload:
///
/// - replaying the log prefix by prefix (`event::apply`) never overdraws any budget and ends
///   at exactly the stored budgets;
/// - every acknowledged grant is stored, in the state its task was told;
/// - each budget's `used`, `reserved`, `held` equal the sums over the stored reservations made
///   on it or any descendant;
/// - without errors, the store holds no reservation nobody was told about.
pub async fn verify(
    store: &DynBudgetStore,
    admin: &tokio_postgres::Client,
    schema: &str,
    ledger: &Ledger,
) {
    let budgets = check_replay_matches_store(store.as_ref(), LogCheck { strict_limit: true })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (id, ack) in &ledger.acks {
        let stored = store
            .reservation(*id)
            .await
            .expect("read reservation")
            .unwrap_or_else(|| panic!("acknowledged reservation {id} is missing"));
        assert_eq!(
            (&stored.budget_id, stored.tokens),
            (&ack.budget, ack.tokens),
            "{id}"
        );
        match ack.end {
            End::Committed(actual) => {
                assert_eq!(stored.state, ReservationState::Committed, "{id}");
                assert_eq!(stored.actual, Some(actual), "{id}");
            }
            End::RolledBack => assert_eq!(stored.state, ReservationState::Released, "{id}"),
            End::Abandoned => assert_eq!(stored.state, ReservationState::Expired, "{id}"),
            End::Unknown => {}
        }
    }
    let rows = admin
        .query(
            &format!("SELECT id, budget_id, tokens, state, actual FROM \"{schema}\".reservations"),
            &[],
        )
        .await
        .expect("read reservations");
    if ledger.errors == 0 {
        assert_eq!(
            rows.len(),
            ledger.acks.len(),
            "the store holds reservations no task was told about"
        );
    }
    assert_totals(&budgets, &rows);
}

/// The checks that need no ledger: the log replays to the stored budgets without overdraft,
/// and the totals equal the sums over the stored reservations.
pub async fn verify_consistency(
    store: &DynBudgetStore,
    admin: &tokio_postgres::Client,
    schema: &str,
) {
    verify(
        store,
        admin,
        schema,
        &Ledger {
            errors: 1,
            ..Ledger::default()
        },
    )
    .await;
}

/// Sessions of `application_name` inside a transaction while nobody is running one.
pub async fn sessions_in_transaction(
    admin: &tokio_postgres::Client,
    application_name: &str,
) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
            &[&application_name],
        )
        .await
        .expect("read pg_stat_activity")
        .get(0)
}

/// `used`, `reserved`, `held` of every budget equal the sums over the reservations of its
/// subtree.
fn assert_totals(budgets: &[Budget], reservations: &[tokio_postgres::Row]) {
    let parents: BTreeMap<&str, Option<&str>> = budgets
        .iter()
        .map(|b| (b.id.as_str(), b.parent.as_ref().map(BudgetId::as_str)))
        .collect();
    let mut expected: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for row in reservations {
        let budget: &str = row.get(1);
        let tokens: i64 = row.get(2);
        let state: &str = row.get(3);
        let actual: Option<i64> = row.get(4);
        let mut level = parents.get_key_value(budget).map(|(k, _)| *k);
        while let Some(b) = level {
            let totals = expected.entry(b).or_default();
            match state {
                "committed" => totals.0 += actual.unwrap() as u64,
                "held" => {
                    totals.1 += tokens as u64;
                    totals.2 += 1;
                }
                _ => {}
            }
            level = parents[b];
        }
    }
    for b in budgets {
        assert_eq!(
            (b.used, b.reserved, b.held),
            expected.get(b.id.as_str()).copied().unwrap_or_default(),
            "budget {}: stored totals differ from the sums over its reservations",
            b.id
        );
    }
}

/// The database's deadlock counter (flushed by backends when they exit or go idle).
pub async fn deadlocks(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .expect("read pg_stat_database")
        .get(0)
}
