//! `load`: runs reserve+commit load against each backend and its raw baseline, prints one
//! table and writes the reports as JSON. `cargo xtask bench` runs it; it can also be run alone:
//!
//! ```text
//! cargo run --release -p tokenbudget-benches --bin load -- \
//!     --backends memory,sqlite,sqlite-raw --tasks 1,8,32 --budgets 1,1000 --seconds 2 \
//!     --out target/bench/tracker.json
//! ```
//!
//! `--processes 1,2` also runs each Postgres backend (store and raw) on one hot budget from 2
//! OS processes: the tasks are split between this process and copies of it started with
//! `--worker` on the same schema, all measuring the same window; the row merges their
//! latencies.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokenbudget_benches::backends::{attach, open, run_backend, BackendOptions};
use tokenbudget_benches::load::{drive, BoxError, LoadReport, LoadSpec, PairDriver, Samples};
use tokenbudget_benches::with_driver;

struct Args {
    backends: Vec<String>,
    tasks: Vec<usize>,
    budgets: Vec<usize>,
    seconds: f64,
    warmup: f64,
    out: Option<std::path::PathBuf>,
    options: BackendOptions,
    processes: Vec<usize>,
    /// `--worker SCHEMA START_MS`: run one share of a multi-process case and print its
    /// samples.
    worker: Option<(String, u64)>,
}

const USAGE: &str = "usage: load [--backends memory,sqlite,sqlite-raw,postgres,postgres-raw] \
[--tasks 1,8,32] [--budgets 1,1000] [--seconds 2] [--warmup 0.5] [--out FILE] \
[--sqlite-sync full|normal|extra] [--sqlite-dir DIR] [--postgres-pool N] \
[--postgres-root-concurrency N] [--postgres-max-batches N] [--processes 1,2]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        backends: vec!["memory".into()],
        tasks: vec![1, 8, 32],
        budgets: vec![1, 1000],
        seconds: 2.0,
        warmup: 0.5,
        out: None,
        options: BackendOptions::default(),
        processes: vec![1],
        worker: None,
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
            "--processes" => args.processes = list(value()?)?,
            "--worker" => {
                let schema = value()?;
                let start = value()?.parse().map_err(|_| "bad --worker start")?;
                args.worker = Some((schema, start));
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
    if let Some((schema, start)) = &args.worker {
        return match runtime.block_on(worker(&args, schema, *start)) {
            Ok(samples) => {
                println!(
                    "{}",
                    serde_json::to_string(&samples).expect("samples serialize")
                );
                std::process::ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("load worker: {err}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let mut reports = Vec::new();
    println!(
        "{:<18} {:>5} {:>5} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "backend",
        "procs",
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
    // The backends innermost: each case runs on every backend back to back, so a store and
    // its raw baseline are measured under the same conditions.
    for &budgets in &args.budgets {
        for &tasks in &args.tasks {
            for &processes in &args.processes {
                for backend in &args.backends {
                    // Several processes: Postgres only, on the hot budget, a task each at least.
                    if processes > 1
                        && (!backend.starts_with("postgres") || budgets != 1 || tasks < processes)
                    {
                        continue;
                    }
                    let spec = LoadSpec {
                        tasks,
                        budgets,
                        duration: Duration::from_secs_f64(args.seconds),
                        warmup: Duration::from_secs_f64(args.warmup),
                        processes,
                    };
                    let result = if processes > 1 {
                        runtime.block_on(multi_process(backend, spec, &args))
                    } else {
                        runtime.block_on(run_backend(backend, spec, &args.options))
                    };
                    match result {
                        Ok(report) => {
                            print_row(&report);
                            reports.push(report);
                        }
                        Err(err) => eprintln!(
                            "{backend} processes={processes} tasks={tasks} budgets={budgets}: {err}"
                        ),
                    }
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

/// How long the processes of a multi-process case get to start and connect before the
/// warm-up begins.
const START_LEAD: Duration = Duration::from_secs(2);

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `Instant` of the wall-clock time `start_ms`.
fn instant_of(start_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(start_ms.saturating_sub(unix_millis()))
}

/// The share of `spec.tasks` of process `n` of `spec.processes`.
fn share(spec: LoadSpec, n: usize) -> usize {
    spec.tasks / spec.processes + usize::from(n < spec.tasks % spec.processes)
}

/// Runs `spec` from `spec.processes` processes on one fresh store: this one (share 0) and
/// `--worker` copies of this binary, all measuring the same window; merges their samples.
async fn multi_process(backend: &str, spec: LoadSpec, args: &Args) -> Result<LoadReport, BoxError> {
    let opened = open(backend, share(spec, 0), &args.options).await?;
    let schema = opened.schema().ok_or("not a Postgres backend")?.to_owned();
    let result = async {
        with_driver!(&opened.driver, |d| d.setup(spec.budgets).await)?;
        let start = unix_millis() + START_LEAD.as_millis() as u64;
        let exe = std::env::current_exe()?;
        let mut children = Vec::new();
        for n in 1..spec.processes {
            let mut command = Command::new(&exe);
            command
                .args([
                    "--worker",
                    &schema,
                    &start.to_string(),
                    "--backends",
                    backend,
                ])
                .args(["--tasks", &share(spec, n).to_string()])
                .args(["--budgets", &spec.budgets.to_string()])
                .args(["--seconds", &args.seconds.to_string()])
                .args(["--warmup", &args.warmup.to_string()])
                .stdout(Stdio::piped());
            if let Some(pool) = args.options.postgres_pool {
                command.args(["--postgres-pool", &pool.to_string()]);
            }
            if let Some(root) = args.options.postgres_root_concurrency {
                command.args(["--postgres-root-concurrency", &root.to_string()]);
            }
            if let Some(batches) = args.options.postgres_max_batches {
                command.args(["--postgres-max-batches", &batches.to_string()]);
            }
            children.push(command.spawn()?);
        }
        let mut samples = with_driver!(&opened.driver, |d| {
            drive(d.clone(), share(spec, 0), spec, instant_of(start)).await
        })?;
        for child in children {
            let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
            if !output.status.success() {
                return Err(format!("a worker process failed: {}", output.status).into());
            }
            let last = String::from_utf8(output.stdout)?;
            let last = last.lines().last().ok_or("a worker printed nothing")?;
            samples.merge(serde_json::from_str::<Samples>(last)?);
        }
        Ok(LoadReport::from_samples(&opened.label, spec, samples))
    }
    .await;
    opened.close().await?;
    result
}

/// A `--worker` process: attaches to the schema and runs its share.
async fn worker(args: &Args, schema: &str, start: u64) -> Result<Samples, BoxError> {
    let backend = args.backends.first().ok_or("--worker needs --backends")?;
    let tasks = *args.tasks.first().ok_or("--worker needs --tasks")?;
    let budgets = *args.budgets.first().ok_or("--worker needs --budgets")?;
    let spec = LoadSpec {
        tasks,
        budgets,
        duration: Duration::from_secs_f64(args.seconds),
        warmup: Duration::from_secs_f64(args.warmup),
        processes: 1,
    };
    let opened = attach(backend, schema, tasks, &args.options).await?;
    with_driver!(&opened.driver, |d| {
        d.attach(budgets).await?;
        drive(d.clone(), tasks, spec, instant_of(start)).await
    })
}

fn print_row(r: &LoadReport) {
    let (min, max) = (
        r.per_task.iter().min().copied().unwrap_or(0),
        r.per_task.iter().max().copied().unwrap_or(0),
    );
    println!(
        "{:<18} {:>5} {:>5} {:>7} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>5}-{:<5}",
        r.label,
        r.spec.processes,
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
