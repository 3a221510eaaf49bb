//! Many application instances on one schema: three stores with their own pools in this
//! process and two more in separate OS processes, all on one hot budget and a workflow with
//! sibling phases at once.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::workload::{self, Ledger};
use tokenbudget_core::DynBudgetStore;
use tokenbudget_postgres::PostgresStore;

const TASKS: usize = 6;
/// Rounds per task, times `TOKENBUDGET_SOAK` (the child processes read it too).
fn rounds() -> usize {
    40 * tokenbudget_core::testkit::soak_factor()
}
const CHILD_ENV: &str = "TB_PG_CHILD_SCHEMA";

async fn open(url: &str, schema: &str) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::open_with(common::config(url, schema))
            .await
            .expect("open store"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_instances_never_overdraw_lose_nothing_and_never_deadlock() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let admin = common::admin(&url).await;
    let deadlocks_before = workload::deadlocks(&admin).await;

    let first = open(&url, &schema).await;
    workload::create_budgets(&(first.clone() as DynBudgetStore), 1).await;

    // Two more OS processes, each its own instance: this test binary re-run as a child.
    let exe = std::env::current_exe().expect("test binary path");
    let children: Vec<_> = (0..2u64)
        .map(|n| {
            let mut command = Command::new(&exe);
            command
                .args(["--exact", "child_instance", "--ignored", "--nocapture"])
                .env(CHILD_ENV, &schema)
                .env("TB_PG_CHILD_SEED", (1_000 + n).to_string())
                .env("TOKENBUDGET_TEST_DATABASE_URL", &url);
            tokio::task::spawn_blocking(move || command.output().expect("run child process"))
        })
        .collect();

    let mut instances = vec![first.clone()];
    for _ in 0..2 {
        instances.push(open(&url, &schema).await);
    }
    let runs: Vec<_> = instances
        .iter()
        .enumerate()
        .map(|(n, store)| {
            let store: DynBudgetStore = store.clone();
            tokio::spawn(workload::run_instance(
                store,
                TASKS,
                rounds(),
                n as u64 + 1,
                false,
            ))
        })
        .collect();
    let mut ledger = Ledger::default();
    for run in runs {
        ledger.merge(run.await.expect("instance panicked"));
    }
    for child in children {
        let output = child.await.expect("child join");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child process failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let child_ledger = Ledger::from_lines(&stdout);
        assert!(!child_ledger.acks.is_empty(), "a child process did nothing");
        ledger.merge(child_ledger);
    }

    eprintln!(
        "grants {}, refusals {}, from {} instances",
        ledger.acks.len(),
        ledger.refusals,
        instances.len() + 2
    );
    let store: DynBudgetStore = first.clone();
    workload::final_sweep(&store).await;
    workload::verify(&store, &admin, &schema, &ledger).await;
    assert_eq!(ledger.errors, 0);
    assert!(
        ledger.refusals > 0,
        "no budget ever filled up: the test proved nothing"
    );
    assert!(
        ledger.acks.len() >= 5 * TASKS * rounds() / 3,
        "too few grants ({}) to mean anything",
        ledger.acks.len()
    );

    // Deadlocks are counted by the backend that detects them, flushed when it exits: close
    // every connection, then read the counter.
    for store in &instances {
        store.close();
    }
    drop((store, instances, first));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        workload::deadlocks(&admin).await,
        deadlocks_before,
        "Postgres detected a deadlock during the run"
    );
}

/// One instance in a child process; a no-op unless run by the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by many_instances_never_overdraw_lose_nothing_and_never_deadlock"]
async fn child_instance() {
    let Ok(schema) = std::env::var(CHILD_ENV) else {
        return;
    };
    let url = common::database_url();
    let seed: u64 = std::env::var("TB_PG_CHILD_SEED").unwrap().parse().unwrap();
    let store: DynBudgetStore = open(&url, &schema).await;
    let ledger = workload::run_instance(store, TASKS, rounds(), seed, false).await;
    print!("{}", ledger.to_lines());
}
