//! `load`: runs reserve+commit load against each backend and its raw baseline, prints one
//! table and writes the reports as JSON. `cargo xtask bench` runs it; it can also be run alone:
//!
//! ```text
//! cargo run --release -p tokenbudget-benches --bin load -- \
//!     --backends memory,sqlite,sqlite-raw --tasks 1,8,32 --budgets 1,1000 --seconds 2 \
//!     --out target/bench/tracker.json
//! ```

use std::time::Duration;

use tokenbudget_benches::backends::{run_backend, BackendOptions};
use tokenbudget_benches::load::{LoadReport, LoadSpec};

struct Args {
    backends: Vec<String>,
    tasks: Vec<usize>,
    budgets: Vec<usize>,
    seconds: f64,
    warmup: f64,
    out: Option<std::path::PathBuf>,
    options: BackendOptions,
}

const USAGE: &str = "usage: load [--backends memory,sqlite,sqlite-raw,postgres,postgres-raw] \
[--tasks 1,8,32] [--budgets 1,1000] [--seconds 2] [--warmup 0.5] [--out FILE] \
[--sqlite-sync full|normal|extra] [--sqlite-dir DIR] [--postgres-pool N] \
[--postgres-root-concurrency N] [--postgres-max-batches N]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        backends: vec!["memory".into()],
        tasks: vec![1, 8, 32],
        budgets: vec![1, 1000],
        seconds: 2.0,
        warmup: 0.5,
        out: None,
        options: BackendOptions::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let list = |v: String| -> Result<Vec<usize>, String> {
            v.split(',')
                .map(|n| n.trim().parse().map_err(|_| format!("not a number: {n}")))
                .collect()
        };
        match flag.as_str() {
            "--backends" => args.backends = value()?.split(',').map(str::to_owned).collect(),
            "--tasks" => args.tasks = list(value()?)?,
            "--budgets" => args.budgets = list(value()?)?,
            "--seconds" => args.seconds = value()?.parse().map_err(|_| "bad --seconds")?,
            "--warmup" => args.warmup = value()?.parse().map_err(|_| "bad --warmup")?,
            "--out" => args.out = Some(value()?.into()),
            "--sqlite-sync" => args.options.sqlite_synchronous = value()?,
            "--sqlite-dir" => args.options.sqlite_dir = Some(value()?.into()),
            "--postgres-pool" => {
                args.options.postgres_pool =
                    Some(value()?.parse().map_err(|_| "bad --postgres-pool")?)
            }
            "--postgres-root-concurrency" => {
                args.options.postgres_root_concurrency = Some(
                    value()?
                        .parse()
                        .map_err(|_| "bad --postgres-root-concurrency")?,
                )
            }
            "--postgres-max-batches" => {
                args.options.postgres_max_batches =
                    Some(value()?.parse().map_err(|_| "bad --postgres-max-batches")?)
            }
            "--bench" => {} // passed by `cargo bench`; ignored
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("{err}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut reports = Vec::new();
    println!(
        "{:<14} {:>5} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "backend",
        "tasks",
        "budgets",
        "pairs/s",
        "res p50",
        "res p99",
        "res max",
        "com p50",
        "com p99",
        "com max",
        "task share"
    );
    for backend in &args.backends {
        for &budgets in &args.budgets {
            for &tasks in &args.tasks {
                let spec = LoadSpec {
                    tasks,
                    budgets,
                    duration: Duration::from_secs_f64(args.seconds),
                    warmup: Duration::from_secs_f64(args.warmup),
                };
                match runtime.block_on(run_backend(backend, spec, &args.options)) {
                    Ok(report) => {
                        print_row(&report);
                        reports.push(report);
                    }
                    Err(err) => eprintln!("{backend} tasks={tasks} budgets={budgets}: {err}"),
                }
            }
        }
    }
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let json = serde_json::to_string_pretty(&reports).expect("reports serialize");
        if let Err(err) = std::fs::write(out, json) {
            eprintln!("could not write {}: {err}", out.display());
            return std::process::ExitCode::FAILURE;
        }
        println!("wrote {}", out.display());
    }
    std::process::ExitCode::SUCCESS
}

fn print_row(r: &LoadReport) {
    let (min, max) = (
        r.per_task.iter().min().copied().unwrap_or(0),
        r.per_task.iter().max().copied().unwrap_or(0),
    );
    println!(
        "{:<14} {:>5} {:>7} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>5}-{:<5}",
        r.label,
        r.spec.tasks,
        r.spec.budgets,
        r.pairs_per_sec,
        r.reserve.p50_ms,
        r.reserve.p99_ms,
        r.reserve.max_ms,
        r.commit.p50_ms,
        r.commit.p99_ms,
        r.commit.max_ms,
        min,
        max
    );
}
