//! `cargo xtask ci`: the one entry point of `.ci/run`.
//!
//! Formatting, clippy with `-D warnings`, the whole test suite with every feature on, and
//! the `tokenbudget` facade without default features, with them, and with `full`, then
//! `cargo xtask e2e` (the real Claude Code CLI and Python SDKs through the gateway).
//! Services the tests need (PostgreSQL) are started here when they are installed but down,
//! so a fresh machine needs nothing by hand; so are Chromium and chromedriver (Debian's
//! packages) for the dashboard's browser test.

use std::process::Command;

use crate::run::{cargo, run, succeeds, Result};

pub fn main(_args: &[String]) -> Result {
    ensure_postgres();
    ensure_browser();
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args(["test", "--workspace", "--all-features", "--no-fail-fast"]))?;
    // The facade in the feature sets users pick. Tested, not only built, without default
    // features and with the defaults: the "feature `…` is not enabled" tests only exist
    // when a backend is compiled out (sqlite in the first, postgres in the second).
    run(cargo().args(["test", "-p", "tokenbudget", "--no-default-features"]))?;
    run(cargo().args(["test", "-p", "tokenbudget"]))?;
    run(cargo().args(["build", "-p", "tokenbudget", "--features", "full"]))?;
    // Real clients through the gateway: Claude Code and the Python SDKs (installs them).
    crate::e2e::main(&[])?;
    Ok(())
}

/// Installs Debian's Chromium and chromedriver for the dashboard's browser test when they are
/// missing. A failed install is reported by that test (under `CI=true`, a failure).
pub fn ensure_browser() {
    if std::path::Path::new("/usr/bin/chromium").exists()
        && std::path::Path::new("/usr/bin/chromedriver").exists()
    {
        return;
    }
    let _ = run(Command::new("apt-get").args([
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
    ]));
}

/// Starts the local PostgreSQL cluster when it is installed and not accepting connections.
/// The tests themselves decide what a missing database means (under `CI=true`, a failure).
pub fn ensure_postgres() {
    if succeeds(Command::new("pg_isready").args(["-h", "127.0.0.1", "-p", "5432"])) {
        return;
    }
    let Ok(versions) = std::fs::read_dir("/etc/postgresql") else {
        eprintln!("xtask ci: PostgreSQL is not installed here; Postgres tests will report it");
        return;
    };
    for version in versions.flatten() {
        let version = version.file_name().to_string_lossy().into_owned();
        let _ = run(Command::new("pg_ctlcluster").args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "start",
        ]));
    }
}
