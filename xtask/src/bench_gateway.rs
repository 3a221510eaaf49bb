//! `cargo xtask bench-gateway`: direct to the fake upstream vs through the gateway (SQLite),
//! 1/64/512 clients, non-streaming and streaming, then RSS with 1,000 open streams.

use crate::run::{cargo, run, Result};

pub fn main(_args: &[String]) -> Result {
    run(cargo().args([
        "run",
        "--release",
        "-p",
        "tokenbudget-gateway",
        "--example",
        "bench",
    ]))
}
