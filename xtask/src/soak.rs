//! `cargo xtask soak`: the test suite with its long loops lengthened, for runs on demand
//! beyond what CI's 30 minutes allow.
//!
//! ```text
//! cargo xtask soak [--factor N] [-- <cargo test arguments>]
//! ```
//!
//! Sets `TOKENBUDGET_SOAK=N` (default 10), which multiplies the concurrency hammers' rounds,
//! the cross-process workers' rounds, the SQLite kill -9 rounds and the Postgres backend
//! kills (`tokenbudget_core::testkit::soak_factor`), and `PROPTEST_CASES` to N times the
//! default 256 unless it is set already. Then runs `cargo test --workspace --all-features`
//! with `CI=true`, so a database the soak cannot reach fails it, plus anything after `--`
//! (say `-p tokenbudget-sqlite --test crash`).

use crate::ci::ensure_postgres;
use crate::run::{cargo, run, Result};

pub fn main(args: &[String]) -> Result {
    let mut factor: u32 = 10;
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--factor" => {
                factor = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&f| f >= 1)
                    .ok_or("--factor needs a whole number of at least 1")?;
            }
            "--" => extra.extend(it.by_ref().cloned()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    ensure_postgres();
    let mut test = cargo();
    test.args(["test", "--workspace", "--all-features", "--no-fail-fast"])
        .args(&extra)
        .env("CI", "true")
        .env("TOKENBUDGET_SOAK", factor.to_string());
    if std::env::var_os("PROPTEST_CASES").is_none() {
        test.env("PROPTEST_CASES", (256 * factor).to_string());
    }
    eprintln!("xtask soak: TOKENBUDGET_SOAK={factor}");
    run(&mut test)
}
