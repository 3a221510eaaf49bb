//! Several OS processes hammer one database file at once; afterwards every acknowledged
//! operation is there, no level was ever overdrawn, and the totals add up.

mod common;

use std::time::Duration;

use common::{collect_lines, create_budgets, spawn_worker, verify, Acks, WorkerSpec};
use tokenbudget_sqlite::Synchronous;

const PROCESSES: usize = 4;

/// The worker process (run by the tests below, not on its own).
#[test]
#[ignore = "a child process of the cross-process tests"]
fn worker() {
    common::worker_main();
}

async fn hammer(budgets: Vec<&'static str>, hot_limit: u64) -> Vec<Acks> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    create_budgets(&db, hot_limit).await;

    let mut children: Vec<_> = (0..PROCESSES)
        .map(|index| {
            let spec = WorkerSpec {
                index,
                budgets: budgets.clone(),
                tasks: 4,
                rounds: 60 * tokenbudget_core::testkit::soak_factor(),
                timeout: Duration::from_secs(60),
                synchronous: Synchronous::Full,
            };
            spawn_worker(&db, &spec)
        })
        .collect();
    let readers: Vec<_> = children.iter_mut().map(collect_lines).collect();
    let mut all = Vec::new();
    for (index, (mut child, reader)) in children.into_iter().zip(readers).enumerate() {
        let status = child.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            use std::io::Read;
            let _ = err.read_to_string(&mut stderr);
        }
        let acks = Acks::parse(&lines);
        assert!(
            status.success(),
            "process {index} failed ({status}): {:?}\n{stderr}",
            acks.errors
        );
        let done = acks
            .done
            .clone()
            .unwrap_or_else(|| panic!("process {index} did not finish: {stderr}"));
        println!("process {index}: {done} ({} acknowledged ops)", acks.ops());
        all.push(acks);
    }
    let refs: Vec<&Acks> = all.iter().collect();
    verify(&db, &refs, true).await;
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_one_hot_budget_without_overdraft() {
    let acks = hammer(vec!["hot"], 9_000).await;
    let refusals: usize = acks.iter().map(|a| a.refusals).sum();
    assert!(
        refusals > 0,
        "the hot budget never filled up: nothing was proved"
    );
    for (index, a) in acks.iter().enumerate() {
        assert!(!a.reserved.is_empty(), "process {index} never got a grant");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_a_workflow_and_sibling_phases_without_overdraft() {
    let acks = hammer(vec!["wf:a", "wf:b", "wf:c", "wf"], 5_000).await;
    let refusals: usize = acks.iter().map(|a| a.refusals).sum();
    assert!(refusals > 0, "no budget ever filled up: nothing was proved");
}
