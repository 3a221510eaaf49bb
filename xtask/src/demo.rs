//! `cargo xtask demo`: the main job on the embedded default. The `tokenbudget` CLI on a fresh
//! SQLite file creates a workflow and a phase, reserves, commits and shows the status.

use std::process::Command;

use crate::run::{cargo, project_root, Result};

pub fn main(_args: &[String]) -> Result {
    let dir = project_root().join("target/demo");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // A fresh database each run (SQLite keeps -wal/-shm and lock files beside it).
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("tokenbudget.db")
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let db = format!("sqlite://{}", dir.join("tokenbudget.db").display());

    crate::run::run(cargo().args(["build", "--quiet", "--bin", "tokenbudget"]))?;
    let cli = |args: &[&str]| -> Result<String> {
        let mut cmd = cargo();
        cmd.args(["run", "--quiet", "--bin", "tokenbudget", "--", "--db", &db]);
        cmd.args(args);
        println!("$ tokenbudget {}", args.join(" "));
        capture(&mut cmd)
    };

    cli(&["budget", "create", "demo", "--limit", "10000"])?;
    cli(&[
        "budget",
        "create",
        "demo:draft",
        "--parent",
        "demo",
        "--limit",
        "4000",
    ])?;
    let reservation = cli(&["reserve", "demo:draft", "1500", "--timeout", "5m"])?;
    cli(&["commit", reservation.trim(), "1234"])?;
    cli(&["budget", "status", "demo"])?;
    cli(&["budget", "status", "demo:draft"])?;
    cli(&["budget", "events", "demo:draft"])?;
    println!("\nThe database is {}", dir.join("tokenbudget.db").display());
    Ok(())
}

/// Runs `cmd`, echoing its stdout, and returns that output.
fn capture(cmd: &mut Command) -> Result<String> {
    let output = cmd
        .output()
        .map_err(|e| format!("could not run the CLI: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{stdout}");
    if !output.status.success() {
        return Err(format!(
            "the CLI failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(stdout)
}
