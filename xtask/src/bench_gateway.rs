//! `cargo xtask bench-gateway`: direct to the fake upstream vs through the gateway (SQLite),
//! 1/64/512 clients, non-streaming and streaming, then RSS with 1,000 open streams; then
//! translated routes beside pass-through (added time to the first delta at 0, 50 and 200
//! turns; per-delta lag).

use crate::run::{cargo, run, Result};

pub fn main(_args: &[String]) -> Result {
    for example in ["bench", "bench_translate"] {
        run(cargo().args([
            "run",
            "--release",
            "-p",
            "tokenbudget-gateway",
            "--example",
            example,
        ]))?;
    }
    Ok(())
}
