//! Many `tokenbudget` processes on one SQLite file at once never overdraw a budget.

// The CLI's default store; every test here uses it.
#![cfg(feature = "sqlite")]

mod support;

use std::collections::HashSet;
use std::process::Output;

use serde_json::{json, Value};
use support::Scratch;

/// Starts every command before waiting for any, so they contend for the database.
fn all_at_once(s: &Scratch, commands: Vec<Vec<String>>) -> Vec<Output> {
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            s.command(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn tokenbudget")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

#[test]
fn concurrent_processes_reserve_exactly_the_limit_on_one_budget() {
    const PROCESSES: usize = 24;
    let s = Scratch::new();
    let db = s.db("shared.db");
    s.run(&["--db", &db, "budget", "create", "wf", "--limit", "1000"])
        .ok();
    s.run(&[
        "--db", &db, "budget", "create", "wf:hot", "--limit", "100", "--parent", "wf",
    ])
    .ok();

    // 24 reserves of 10 on a phase of 100: exactly 10 fit.
    let reserves = (0..PROCESSES)
        .map(|_| {
            ["--db", &db, "reserve", "wf:hot", "10", "--json"]
                .map(String::from)
                .to_vec()
        })
        .collect();
    let outputs = all_at_once(&s, reserves);
    let mut granted = Vec::new();
    let mut refused = 0;
    for out in &outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                let v: Value = serde_json::from_str(stdout.trim()).unwrap();
                granted.push(v["reservation_id"].as_str().unwrap().to_owned());
            }
            Some(3) => {
                let v: Value = serde_json::from_str(stdout.trim()).unwrap();
                assert_eq!(
                    (&v["outcome"], &v["budget_id"]),
                    (&json!("refused"), &json!("wf:hot"))
                );
                assert!(v["available"].as_u64().unwrap() < 10, "{v}");
                refused += 1;
            }
            other => panic!("unexpected exit {other:?}: {stderr}"),
        }
    }
    assert_eq!(granted.len(), 10, "exactly the limit is granted");
    assert_eq!(refused, PROCESSES - 10);
    assert_eq!(
        granted.iter().collect::<HashSet<_>>().len(),
        10,
        "distinct reservations"
    );

    let hot = s
        .run(&["--db", &db, "budget", "status", "wf:hot", "--json"])
        .json();
    assert_eq!(
        (&hot["reserved"], &hot["available"]),
        (&json!(100), &json!(0))
    );
    let wf = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!(wf["reserved"], 100);

    // Commit them all at once, half of them for less than reserved.
    let commits = granted
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let actual = if i % 2 == 0 { "10" } else { "4" };
            ["--db", &db, "commit", id, actual]
                .map(String::from)
                .to_vec()
        })
        .collect();
    for out in all_at_once(&s, commits) {
        assert!(out.status.success(), "{out:?}");
    }
    let hot = s
        .run(&["--db", &db, "budget", "status", "wf:hot", "--json"])
        .json();
    assert_eq!(
        (&hot["used"], &hot["reserved"], &hot["available"]),
        (&json!(70), &json!(0), &json!(30))
    );
    let wf = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!((&wf["used"], &wf["reserved"]), (&json!(70), &json!(0)));

    // The log agrees: one reservation event per grant, one commit per reservation.
    let events = s
        .run(&["--db", &db, "budget", "events", "wf:hot", "--json"])
        .json_lines();
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!(
        (count("TOKENS_RESERVED"), count("TOKENS_COMMITTED")),
        (10, 10)
    );
}

#[test]
fn concurrent_processes_creating_the_database_at_once_all_succeed() {
    let s = Scratch::new();
    let db = s.db("fresh.db");
    let creates = (0..8)
        .map(|i| {
            [
                "--db",
                &db,
                "budget",
                "create",
                &format!("wf-{i}"),
                "--limit",
                "5",
            ]
            .map(String::from)
            .to_vec()
        })
        .collect();
    for out in all_at_once(&s, creates) {
        assert!(out.status.success(), "{out:?}");
    }
    let listed = s
        .run(&["--db", &db, "budget", "list", "--json"])
        .json_lines();
    assert_eq!(listed.len(), 8);
}
