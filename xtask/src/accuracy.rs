//! `cargo xtask accuracy`: the counters' exact-match rates and the estimator's error on the
//! committed corpus (`crates/tokenbudget-counter/tests/corpus/`).
//!
//! xtask has no dependencies, so the measuring is done by the counter crate's `accuracy`
//! example, built in release mode; this task only runs it.

use crate::run::{cargo, run, Result};

pub fn main(args: &[String]) -> Result {
    if let Some(arg) = args.first() {
        return Err(format!("unknown argument {arg}"));
    }
    run(cargo().args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "tokenbudget-counter",
        "--example",
        "accuracy",
    ]))
}
