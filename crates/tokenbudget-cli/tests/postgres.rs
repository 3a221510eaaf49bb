//! The CLI on PostgreSQL: every write command, and several processes on one budget.
//! `TOKENBUDGET_TEST_POSTGRES_URL` names the database (default: the local `test`); under
//! `CI=true` an unreachable database fails the test instead of skipping it.

#![cfg(feature = "postgres")]

mod support;

use serde_json::json;
use support::Scratch;

fn database() -> String {
    std::env::var("TOKENBUDGET_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of this test's own, dropped at the end.
struct Schema(String);

impl Schema {
    fn new() -> Self {
        Self(format!("tb_cli_{}", uuid::Uuid::new_v4().simple()))
    }

    fn url(&self) -> String {
        format!("{}?schema={}", database(), self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(&database(), tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&sql).await
            });
        if let Err(e) = result {
            eprintln!("could not drop schema {}: {e}", self.0);
        }
    }
}

/// Creates the test's first budget; `false` when Postgres is unreachable outside CI.
fn reachable(s: &Scratch, db: &str) -> bool {
    let run = s.run(&["--db", db, "budget", "create", "wf", "--limit", "100"]);
    if run.code == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "Postgres is unreachable under CI=true: {run:?}"
    );
    eprintln!("skipping: Postgres is unreachable: {}", run.stderr);
    false
}

#[test]
fn every_write_command_on_postgres() {
    let schema = Schema::new();
    let db = schema.url();
    let s = Scratch::new();
    if !reachable(&s, &db) {
        return;
    }
    let phase = s
        .run(&[
            "--db", &db, "budget", "create", "wf:p", "--limit", "50", "--parent", "wf", "--json",
        ])
        .json();
    assert_eq!(
        (&phase["parent"], &phase["available"]),
        (&json!("wf"), &json!(50))
    );

    let a = s
        .run(&["--db", &db, "reserve", "wf:p", "30", "--json"])
        .json();
    let a = a["reservation_id"].as_str().unwrap().to_owned();
    let b = s
        .run(&["--db", &db, "reserve", "wf:p", "20"])
        .ok()
        .trim()
        .to_owned();
    s.run(&["--db", &db, "reserve", "wf:p", "1"])
        .fails(3, "budget wf:p has 0 tokens available");

    let done = s.run(&["--db", &db, "commit", &a, "25", "--json"]).json();
    assert_eq!(done["state"], "committed");
    let done = s.run(&["--db", &db, "rollback", &b, "--json"]).json();
    assert_eq!(
        (&done["state"], &done["released"]),
        (&json!("released"), &json!(20))
    );
    assert_eq!(
        s.run(&["--db", &db, "sweep", "--json"]).json(),
        json!({"released": 0})
    );

    let wf = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!(
        (&wf["used"], &wf["reserved"], &wf["available"]),
        (&json!(25), &json!(0), &json!(75))
    );
    let events = s
        .run(&["--db", &db, "budget", "events", "wf:p", "--json"])
        .json_lines();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "BUDGET_CREATED",
            "TOKENS_RESERVED",
            "TOKENS_RESERVED",
            // The refused reserve above is in the log, on the budget that refused.
            "RESERVE_REFUSED",
            "TOKENS_COMMITTED",
            "TOKENS_RELEASED"
        ]
    );
    assert_eq!(
        s.run(&["--db", &db, "budget", "list", "--json"])
            .json_lines()
            .len(),
        2
    );
}

#[test]
fn concurrent_processes_never_overdraw_a_postgres_budget() {
    let schema = Schema::new();
    let db = schema.url();
    let s = Scratch::new();
    if !reachable(&s, &db) {
        return;
    }
    let children: Vec<_> = (0..12)
        .map(|_| {
            s.command(&["--db", &db, "reserve", "wf", "15"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 0).count(), 6, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 3).count(), 6, "{codes:?}");
    let wf = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!(
        (&wf["reserved"], &wf["available"]),
        (&json!(90), &json!(10))
    );
}
