//! `cargo xtask bench`: the tracker load benchmark on every backend beside its raw-SQL
//! baseline (at 1, 8, 32 and 128 tasks, on one hot budget and on 1,000 budgets, and for
//! Postgres also from 2 processes on one hot budget), the criterion bench of one
//! reserve+commit pair on the same backends, then the counter benchmarks.
//!
//! ```text
//! cargo xtask bench [--quick] [--backends LIST] [--tasks LIST] [--budgets LIST] [--seconds S]
//!                   [--processes LIST] [--skip-counter]
//! ```
//!
//! Results: one table on stdout, and JSON in `target/bench/tracker.json` (criterion keeps its
//! results under `target/criterion/`), so runs can be compared.

use std::process::Command;

use crate::run::{cargo, project_root, run, succeeds, Result};

pub fn main(args: &[String]) -> Result {
    let mut backends: Option<String> = None;
    let mut tasks = "1,8,32,128".to_owned();
    let mut budgets = "1,1000".to_owned();
    let mut seconds = "3".to_owned();
    let mut processes = "1,2".to_owned();
    let mut counter = true;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => {
                tasks = "1,8,32".into();
                seconds = "1".into();
            }
            "--backends" => backends = Some(value()?),
            "--tasks" => tasks = value()?,
            "--budgets" => budgets = value()?,
            "--seconds" => seconds = value()?,
            "--processes" => processes = value()?,
            "--skip-counter" => counter = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let backends = backends.unwrap_or_else(default_backends);
    let out = project_root().join("target/bench/tracker.json");
    run(cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "tokenbudget-benches",
            "--bin",
            "load",
            "--",
        ])
        .args([
            "--backends",
            &backends,
            "--tasks",
            &tasks,
            "--budgets",
            &budgets,
        ])
        .args(["--processes", &processes])
        .args(["--seconds", &seconds, "--out"])
        .arg(&out))?;
    // Cargo runs benches in the package's folder; criterion would write to `benches/target`.
    let criterion_home = project_root().join("target/criterion");
    run(cargo()
        .args(["bench", "-p", "tokenbudget-benches", "--bench", "tracker"])
        .env("TB_BENCH_BACKENDS", &backends)
        .env("CRITERION_HOME", &criterion_home))?;
    if counter {
        run(cargo()
            .args(["bench", "-p", "tokenbudget-benches", "--bench", "counter"])
            .env("CRITERION_HOME", &criterion_home))?;
    }
    Ok(())
}

/// Every backend, with Postgres only when a server answers.
fn default_backends() -> String {
    let mut backends = vec!["memory", "sqlite", "sqlite-raw"];
    if succeeds(Command::new("pg_isready").args(["-h", "127.0.0.1", "-p", "5432"])) {
        backends.extend(["postgres", "postgres-raw"]);
    } else {
        eprintln!("xtask bench: Postgres is not reachable on 127.0.0.1:5432; skipping it");
    }
    backends.join(",")
}
