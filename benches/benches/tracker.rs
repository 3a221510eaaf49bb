//! One reserve+commit pair at one task, per backend, beside its raw-SQL baseline: criterion's
//! statistics on the latency of the path every operation takes, for spotting regressions.
//!
//! ```text
//! cargo bench -p tokenbudget-benches --bench tracker
//! TB_BENCH_BACKENDS=sqlite,sqlite-raw cargo bench -p tokenbudget-benches --bench tracker
//! ```
//!
//! Throughput and tail latency under concurrency (1 to 32 tasks, one hot budget and 1,000
//! budgets) are the load binary's job (`cargo xtask bench`); criterion measures one thing at
//! a time. Postgres runs when `pg_isready` answers for the benchmark database
//! ([`bench_url`](tokenbudget_benches::raw_postgres::bench_url)), and is skipped with a note
//! otherwise.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use tokenbudget_benches::backends::{open, BackendOptions};
use tokenbudget_benches::load::{PairDriver, COMMIT_TOKENS, RESERVE_TOKENS};
use tokenbudget_benches::with_driver;

const DEFAULT_BACKENDS: &str = "memory,sqlite,sqlite-raw,postgres,postgres-raw";

fn postgres_answers() -> bool {
    Command::new("pg_isready")
        .args(["-h", "127.0.0.1", "-p", "5432"])
        .status()
        .is_ok_and(|s| s.success())
}

async fn pair<D: PairDriver>(driver: &Arc<D>) {
    let handle = driver
        .reserve(0, RESERVE_TOKENS)
        .await
        .expect("reserve (the budget is large enough for any benchmark)");
    driver.commit(handle, COMMIT_TOKENS).await.expect("commit");
}

fn reserve_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let backends = std::env::var("TB_BENCH_BACKENDS").unwrap_or_else(|_| DEFAULT_BACKENDS.into());
    let mut group = c.benchmark_group("reserve_commit");
    group.measurement_time(Duration::from_secs(5));
    for backend in backends.split(',').map(str::trim) {
        if backend.starts_with("postgres") && !postgres_answers() {
            eprintln!(
                "tracker bench: Postgres does not answer on 127.0.0.1:5432; {backend} skipped"
            );
            continue;
        }
        let opened = runtime
            .block_on(open(backend, 1, &BackendOptions::default()))
            .unwrap_or_else(|e| panic!("opening {backend}: {e}"));
        with_driver!(&opened.driver, |driver| {
            runtime
                .block_on(driver.setup(1))
                .unwrap_or_else(|e| panic!("setting up {backend}: {e}"));
            group.bench_function(&opened.label, |b| {
                b.to_async(&runtime).iter(|| pair(driver));
            });
        });
        runtime
            .block_on(opened.close())
            .unwrap_or_else(|e| panic!("closing {backend}: {e}"));
    }
    group.finish();
}

criterion_group!(benches, reserve_commit);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
