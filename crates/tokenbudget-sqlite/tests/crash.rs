//! kill -9 a writing process mid-workload, over and over; after each kill every operation it
//! saw acknowledged is in the database and every invariant holds.

mod common;

use std::time::{Duration, Instant};

use common::{create_budgets, spawn_worker, verify, Acks, WorkerSpec, XorShift};
use tokenbudget_sqlite::Synchronous;

/// Kills, times `TOKENBUDGET_SOAK` (see `tokenbudget_core::testkit::soak_factor`).
const ROUNDS: usize = 30;

/// The worker process (run by the test below, not on its own).
#[test]
#[ignore = "a child process of the crash test"]
fn worker() {
    common::worker_main();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_operations_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut rng = XorShift(0x5EED_CAFE);
    let mut history: Vec<Acks> = Vec::new();
    let started = Instant::now();

    create_budgets(&db, 20_000).await;
    let rounds = ROUNDS * tokenbudget_core::testkit::soak_factor();
    for round in 0..rounds {
        let spec = WorkerSpec {
            index: round,
            budgets: vec!["hot", "wf:a", "wf:b", "wf"],
            tasks: 3,
            rounds: 0, // until killed
            // Short enough that holds left by a killed worker expire and are released by
            // later rounds.
            timeout: Duration::from_millis(1_500),
            synchronous: if round % 2 == 0 {
                Synchronous::Full
            } else {
                Synchronous::Normal
            },
        };
        let mut child = spawn_worker(&db, &spec);
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line.clone());
                lines.push(line);
            }
            lines
        });

        {
            // Kill after a random number of acknowledgements, while the others are in flight.
            let wanted = 5 + rng.below(120) as usize;
            let limit = Instant::now() + Duration::from_secs(20);
            let mut seen = 0;
            while seen < wanted && Instant::now() < limit {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(line) if line.contains("@@ ERR") => panic!("worker failed: {line}"),
                    Ok(line) if line.contains("@@ ") => seen += 1,
                    Ok(_) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            assert!(
                seen >= wanted,
                "round {round}: the worker stalled after {seen} acks"
            );
            std::thread::sleep(Duration::from_micros(rng.below(3_000)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let acks = Acks::parse(&lines);
        assert!(acks.errors.is_empty(), "round {round}: {:?}", acks.errors);

        history.push(acks);
        let refs: Vec<&Acks> = history.iter().collect();
        verify(&db, &refs, false).await;
    }
    let ops: usize = history.iter().map(Acks::ops).sum();
    println!(
        "{rounds} kills, {ops} acknowledged operations checked, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        ops > 1_000,
        "too little work was acknowledged to prove anything: {ops}"
    );
}

/// A process killed while it creates and migrates a new database leaves a file that the next
/// open completes (migration is one transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_creation_leaves_an_openable_database() {
    let mut rng = XorShift(0xC0FFEE);
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("new.db");
        let spec = WorkerSpec {
            index: round,
            budgets: vec!["none-yet"],
            tasks: 1,
            rounds: 1,
            timeout: Duration::from_secs(1),
            synchronous: Synchronous::Full,
        };
        let mut child = spawn_worker(&db, &spec);
        std::thread::sleep(Duration::from_millis(5 + rng.below(40)));
        child.kill().unwrap();
        child.wait().unwrap();
        let store = tokenbudget_sqlite::SqliteStore::open(db.to_str().unwrap())
            .await
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        assert_eq!(
            store.schema_version().await.unwrap(),
            tokenbudget_sqlite::SCHEMA_VERSION
        );
        drop(store);
        verify(&db, &[], false).await;
    }
}
