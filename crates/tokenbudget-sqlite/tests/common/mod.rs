//! Shared by the multi-process tests: the worker process (this test binary re-run with
//! `worker` selected), its acknowledgement log, and the checks run on the database afterwards.

#![allow(dead_code)] // each test file uses a different part

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};
use tokenbudget_core::testkit::{check_log, LogCheck};
use tokenbudget_core::{
    BudgetId, BudgetStore, EventKind, EventQuery, ReservationId, ReservationState, ReserveOptions,
    Tracker,
};
use tokenbudget_sqlite::{Config, SqliteStore, Synchronous};

/// What a worker does.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Which process this is (for its random seed and the report).
    pub index: usize,
    /// Budgets to pick from at random.
    pub budgets: Vec<&'static str>,
    /// Concurrent tasks in the process.
    pub tasks: usize,
    /// Reserve attempts per task; 0 runs until killed.
    pub rounds: usize,
    /// Reservation timeout.
    pub timeout: Duration,
    /// `synchronous` setting.
    pub synchronous: Synchronous,
}

/// Starts this test binary again, running only the ignored `worker` test, with `spec` in its
/// environment. Its stdout is piped: one line per acknowledged operation.
pub fn spawn_worker(db: &Path, spec: &WorkerSpec) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TB_WORKER_DB", db)
        .env("TB_WORKER_INDEX", spec.index.to_string())
        .env("TB_WORKER_BUDGETS", spec.budgets.join(","))
        .env("TB_WORKER_TASKS", spec.tasks.to_string())
        .env("TB_WORKER_ROUNDS", spec.rounds.to_string())
        .env("TB_WORKER_TIMEOUT_MS", spec.timeout.as_millis().to_string())
        .env("TB_WORKER_SYNC", spec.synchronous.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker process")
}

/// Reads a child's stdout on a thread, so a full pipe never stalls the child.
pub fn collect_lines(child: &mut Child) -> std::thread::JoinHandle<Vec<String>> {
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect()
    })
}

/// The body of the worker process; `worker` in each test file calls it when
/// `TB_WORKER_DB` is set. Prints (each after `@@ `) `R id budget tokens`, `X budget tokens`, `C id actual`,
/// `B id state` after each acknowledged operation, `DONE …` at the end, and `ERR …` (then
/// exits 1) on any error.
pub fn worker_main() {
    let Ok(db) = std::env::var("TB_WORKER_DB") else {
        return; // run as a plain (ignored) test: nothing to do
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let index: u64 = var("TB_WORKER_INDEX").parse().unwrap();
    let budgets: Vec<BudgetId> = var("TB_WORKER_BUDGETS")
        .split(',')
        .map(|b| BudgetId::new(b).unwrap())
        .collect();
    let tasks: usize = var("TB_WORKER_TASKS").parse().unwrap();
    let rounds: usize = var("TB_WORKER_ROUNDS").parse().unwrap();
    let timeout = Duration::from_millis(var("TB_WORKER_TIMEOUT_MS").parse().unwrap());
    let synchronous: Synchronous = var("TB_WORKER_SYNC").parse().unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // TOKENBUDGET_SQLITE_* variables pass through (e.g. WRITER_QUEUE=false to compare).
        let config = Config::from_env()
            .unwrap_or_else(|e| fail(&format!("config: {e}")))
            .with_url(db)
            .with_synchronous(synchronous);
        let store = match SqliteStore::open_with(config).await {
            Ok(store) => store,
            Err(e) => fail(&format!("open: {e}")),
        };
        let tracker = Tracker::builder(Arc::new(store))
            .default_timeout(timeout)
            .build();
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let (tracker, budgets) = (tracker.clone(), budgets.clone());
                tokio::spawn(async move {
                    let seed = (index + 1) * 0x9E37_79B9 + task as u64 * 0x85EB_CA6B;
                    run_task(&tracker, &budgets, rounds, seed).await
                })
            })
            .collect();
        let (mut pairs, mut refusals, mut slowest) = (0, 0, Duration::ZERO);
        for handle in handles {
            let (p, r, s) = handle.await.unwrap();
            pairs += p;
            refusals += r;
            slowest = slowest.max(s);
        }
        println!(
            "@@ DONE pairs={pairs} refusals={refusals} elapsed_ms={} max_op_ms={}",
            started.elapsed().as_millis(),
            slowest.as_millis()
        );
    });
}

fn fail(message: &str) -> ! {
    println!("@@ ERR {message}");
    std::process::exit(1);
}

/// One task: reserve, then commit some of it or roll back. Returns (pairs, refusals, slowest
/// operation).
async fn run_task(
    tracker: &Tracker,
    budgets: &[BudgetId],
    rounds: usize,
    seed: u64,
) -> (usize, usize, Duration) {
    let mut rng = XorShift(seed | 1);
    let (mut pairs, mut refusals, mut slowest) = (0, 0, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    while (rounds == 0 || round < rounds) && Instant::now() < deadline {
        round += 1;
        let budget = &budgets[rng.below(budgets.len() as u64) as usize];
        let tokens = 1 + rng.below(100);
        let t0 = Instant::now();
        let outcome = tracker
            .reserve(budget, tokens, ReserveOptions::new())
            .await
            .unwrap_or_else(|e| fail(&format!("reserve: {e}")));
        slowest = slowest.max(t0.elapsed());
        let Some(grant) = outcome.granted() else {
            println!("@@ X {budget} {tokens}");
            refusals += 1;
            continue;
        };
        let id = grant.reservation.id;
        println!("@@ R {id} {budget} {tokens}");
        let t1 = Instant::now();
        if rng.below(2) == 0 {
            let actual = rng.below(tokens + 1);
            tracker
                .commit(id, actual)
                .await
                .unwrap_or_else(|e| fail(&format!("commit: {e}")));
            println!("@@ C {id} {actual}");
        } else {
            let outcome = tracker
                .rollback(id)
                .await
                .unwrap_or_else(|e| fail(&format!("rollback: {e}")));
            println!("@@ B {id} {}", outcome.reservation.state);
        }
        slowest = slowest.max(t1.elapsed());
        pairs += 1;
    }
    (pairs, refusals, slowest)
}

/// A tiny deterministic generator.
pub struct XorShift(pub u64);

impl XorShift {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What one worker process printed.
#[derive(Debug, Default)]
pub struct Acks {
    /// Granted reservations: budget and tokens.
    pub reserved: HashMap<ReservationId, (BudgetId, u64)>,
    /// Acknowledged commits: actual tokens.
    pub committed: HashMap<ReservationId, u64>,
    /// Acknowledged rollbacks: the state the rollback answered with.
    pub rolled_back: HashMap<ReservationId, ReservationState>,
    /// Refused reserves.
    pub refusals: usize,
    /// The `DONE` line, when the process finished.
    pub done: Option<String>,
    /// `ERR` lines.
    pub errors: Vec<String>,
}

impl Acks {
    /// Parses a worker's stdout (lines that are not the protocol's, from the test harness,
    /// are skipped; a line cut short by a kill is ignored).
    pub fn parse(lines: &[String]) -> Self {
        let mut acks = Self::default();
        for line in lines {
            // Protocol lines start with `@@ `, possibly after the test harness's own text.
            let Some(at) = line.find("@@ ") else { continue };
            let line = &line[at + 3..];
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["R", id, budget, tokens] => {
                    if let (Ok(id), Ok(budget), Ok(tokens)) =
                        (id.parse(), BudgetId::new(*budget), tokens.parse())
                    {
                        acks.reserved.insert(id, (budget, tokens));
                    }
                }
                ["C", id, actual] => {
                    if let (Ok(id), Ok(actual)) = (id.parse(), actual.parse()) {
                        acks.committed.insert(id, actual);
                    }
                }
                ["B", id, state] => {
                    if let (Ok(id), Some(state)) = (id.parse(), ReservationState::parse(state)) {
                        acks.rolled_back.insert(id, state);
                    }
                }
                ["X", ..] => acks.refusals += 1,
                ["DONE", ..] => acks.done = Some(line.to_owned()),
                ["ERR", ..] => acks.errors.push(line.to_owned()),
                _ => {}
            }
        }
        acks
    }

    /// Acknowledged operations.
    pub fn ops(&self) -> usize {
        self.reserved.len() + self.committed.len() + self.rolled_back.len() + self.refusals
    }
}

/// Creates the budgets the workers use: `hot` (limit `hot_limit`) and `wf` with phases
/// `wf:a`, `wf:b`, `wf:c` whose limits add up to more than the workflow's.
pub async fn create_budgets(db: &Path, hot_limit: u64) {
    let store = SqliteStore::open(db.to_str().unwrap()).await.unwrap();
    let tracker = Tracker::new(Arc::new(store));
    tracker.create_workflow("hot", hot_limit).await.unwrap();
    tracker.create_workflow("wf", 6_000).await.unwrap();
    for phase in ["wf:a", "wf:b", "wf:c"] {
        tracker.create_phase(phase, "wf", 3_000).await.unwrap();
    }
}

/// Reopens the database and checks it against what the workers acknowledged:
///
/// - every prefix of the event log replays without overdraft at any level (every grant had
///   room; with no overrun or late commit, `used + reserved <= limit` after every event);
/// - replaying the log gives exactly the stored budgets;
/// - every acknowledged reservation, commit and rollback is stored as acknowledged;
/// - with `settled` (every worker finished), each budget's `used` is the sum of the
///   acknowledged commits in its subtree and nothing is still held;
/// - `PRAGMA integrity_check` is ok and no foreign key is dangling.
pub async fn verify(db: &Path, acks: &[&Acks], settled: bool) {
    let store = SqliteStore::open(db.to_str().unwrap()).await.unwrap();
    let events = store.events(EventQuery::all()).await.unwrap();
    let late = events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::TokensCommitted { late: true, .. }
                | EventKind::TokensCommitted { overrun: 1.., .. }
        )
    });
    let replayed = check_log(
        &events,
        LogCheck {
            strict_limit: !late,
        },
    )
    .unwrap_or_else(|e| panic!("event log check failed: {e}"));
    let stored = store.list_budgets().await.unwrap();
    let stored_map: BTreeMap<_, _> = stored.iter().map(|b| (b.id.clone(), b.clone())).collect();
    assert_eq!(
        replayed, stored_map,
        "replay of the log differs from the stored budgets"
    );

    for acks in acks {
        assert!(acks.errors.is_empty(), "a worker failed: {:?}", acks.errors);
        for (id, (budget, tokens)) in &acks.reserved {
            let r = store
                .reservation(*id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged reservation {id} is missing"));
            assert_eq!(
                (&r.budget_id, r.tokens),
                (budget, *tokens),
                "reservation {id}"
            );
        }
        for (id, actual) in &acks.committed {
            let r = store.reservation(*id).await.unwrap().unwrap();
            assert_eq!(r.state, ReservationState::Committed, "commit of {id} lost");
            assert_eq!(r.actual, Some(*actual), "commit of {id}");
        }
        for (id, state) in &acks.rolled_back {
            let r = store.reservation(*id).await.unwrap().unwrap();
            assert_eq!(r.state, *state, "rollback of {id} lost");
        }
    }

    if settled {
        let parents: HashMap<BudgetId, Option<BudgetId>> = stored
            .iter()
            .map(|b| (b.id.clone(), b.parent.clone()))
            .collect();
        let mut expected_used: HashMap<BudgetId, u64> = HashMap::new();
        let mut reservations = 0;
        for acks in acks {
            reservations += acks.reserved.len();
            assert_eq!(
                acks.committed.len() + acks.rolled_back.len(),
                acks.reserved.len(),
                "a finished worker left a reservation unsettled"
            );
            for (id, actual) in &acks.committed {
                let mut at = Some(acks.reserved[id].0.clone());
                while let Some(budget) = at {
                    *expected_used.entry(budget.clone()).or_default() += actual;
                    at = parents[&budget].clone();
                }
            }
        }
        for b in &stored {
            assert_eq!(
                b.used,
                expected_used.get(&b.id).copied().unwrap_or(0),
                "used of {}",
                b.id
            );
            assert_eq!((b.reserved, b.held), (0, 0), "{} still holds tokens", b.id);
        }
        let granted = events
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::TokensReserved { origin, .. } if *origin == e.budget_id))
            .count();
        assert_eq!(
            granted, reservations,
            "reservations in the log vs acknowledged"
        );
    }

    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    let dangling: Vec<(String,)> = sqlx::query_as("PRAGMA foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(dangling.is_empty(), "dangling foreign keys: {dangling:?}");
    conn.close().await.unwrap();
}
