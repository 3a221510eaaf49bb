//! `cargo xtask <task>`: the project's automation, in the style of rust-analyzer's xtask.
//!
//! One file per task; processes are run with `std::process::Command` through [`run`].

mod accuracy;
mod bench;
mod bench_gateway;
mod bench_ledger;
mod ci;
mod demo;
mod e2e;
mod run;
mod soak;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  demo      the CLI on the embedded SQLite default: a workflow, a phase, reserve, commit, status
  ci        what .ci/run runs: fmt check, clippy -D warnings, feature builds, the whole test suite
  bench     tracker load on every backend beside its raw-SQL baseline, then the counter benches
            [--quick] [--backends LIST] [--tasks LIST] [--budgets LIST] [--seconds S] [--skip-counter]
  bench-gateway  direct vs through the gateway: added TTFB p50/p99, req/s at 1/64/512 clients,
            non-streaming and streaming; RSS with 1,000 open streams
  bench-ledger  the usage ledger on a generated Claude Code tree beside ccusage: first import
            MB/s and peak RSS, a rerun, `usage daily`, `ccusage daily` [--size MB (1000)] [--db URL]
  soak      the test suite with its hammers, kill loops and proptest cases lengthened
            [--factor N (default 10)] [-- <cargo test arguments>]
  e2e       real clients (Claude Code, the anthropic and openai Python SDKs) through the gateway
            against the in-repo fake upstream; installs them under target/e2e
  accuracy  token counters on the committed corpus: exact-match rates, estimator error per category
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match task {
        "ci" => ci::main(rest),
        "demo" => demo::main(rest),
        "e2e" => e2e::main(rest),
        "bench" => bench::main(rest),
        "bench-gateway" => bench_gateway::main(rest),
        "bench-ledger" => bench_ledger::main(rest),
        "accuracy" => accuracy::main(rest),
        "soak" => soak::main(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown task `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask {task}: {err}");
            ExitCode::FAILURE
        }
    }
}
