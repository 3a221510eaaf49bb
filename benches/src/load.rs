//! A closed-loop load driver: N tasks each run reserve+commit pairs back to back for a fixed
//! time, recording every operation's latency.
//!
//! Generic over [`PairDriver`], so a store behind the tracker and a raw-SQL baseline run the
//! same loop and their numbers sit side by side.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokenbudget_core::{BudgetId, DynBudgetStore, ReservationId, ReserveOptions, Tracker};

/// Errors from a driver, boxed: the driver's own type does not matter to the loop.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Tokens each pair reserves, and commits (a little less, so the commit releases the rest).
pub const RESERVE_TOKENS: u64 = 10;
/// See [`RESERVE_TOKENS`].
pub const COMMIT_TOKENS: u64 = 8;
/// Limit of each benchmark budget: never reached, so no reserve is refused.
pub const BENCH_LIMIT: u64 = 1 << 60;

/// One reserve+commit implementation under test.
#[async_trait]
pub trait PairDriver: Send + Sync + 'static {
    /// What a reserve hands to its commit.
    type Handle: Send;

    /// Creates `budgets` budgets named by [`budget_name`], each with [`BENCH_LIMIT`].
    async fn setup(&self, budgets: usize) -> Result<(), BoxError>;

    /// Drives the `budgets` budgets another process's [`PairDriver::setup`] created (a second
    /// process on the same database). Errors on backends that have no such sharing.
    async fn attach(&self, budgets: usize) -> Result<(), BoxError>;

    /// Reserves `tokens` on budget number `budget`.
    async fn reserve(&self, budget: usize, tokens: u64) -> Result<Self::Handle, BoxError>;

    /// Commits `actual` tokens for a reservation.
    async fn commit(&self, handle: Self::Handle, actual: u64) -> Result<(), BoxError>;
}

/// The name of benchmark budget number `i`.
pub fn budget_name(i: usize) -> String {
    format!("bench-{i}")
}

/// How hard and how long to push.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoadSpec {
    /// Concurrent tasks.
    pub tasks: usize,
    /// Budgets the tasks spread over (1 = one hot budget).
    pub budgets: usize,
    /// How long to measure, after the warm-up.
    pub duration: Duration,
    /// How long to run before measuring.
    pub warmup: Duration,
    /// OS processes the tasks are split over, each its own store on the same database (1:
    /// this process only).
    pub processes: usize,
}

/// Latency distribution of one operation.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct OpStats {
    /// Operations measured.
    pub count: u64,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
    /// Slowest, in milliseconds.
    pub max_ms: f64,
}

impl OpStats {
    fn from_samples(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1e3
        };
        Self {
            count: samples.len() as u64,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: samples[samples.len() - 1].as_secs_f64() * 1e3,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// What ran (e.g. `sqlite`, `sqlite-raw`).
    pub label: String,
    /// The load.
    pub spec: LoadSpec,
    /// Pairs completed in the measured window.
    pub pairs: u64,
    /// Pairs per second.
    pub pairs_per_sec: f64,
    /// Reserve latency.
    pub reserve: OpStats,
    /// Commit latency.
    pub commit: OpStats,
    /// Pairs each task completed (a starved task shows here).
    pub per_task: Vec<u64>,
}

/// Every measured latency of one process's run, in microseconds, and the pairs of each task:
/// what a second process hands back to be merged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Samples {
    /// Reserve latencies.
    pub reserves: Vec<u64>,
    /// Commit latencies.
    pub commits: Vec<u64>,
    /// Pairs each task completed.
    pub per_task: Vec<u64>,
}

impl Samples {
    /// Adds another process's samples.
    pub fn merge(&mut self, other: Samples) {
        self.reserves.extend(other.reserves);
        self.commits.extend(other.commits);
        self.per_task.extend(other.per_task);
    }
}

impl LoadReport {
    /// The report of `samples` measured at `spec`.
    pub fn from_samples(label: &str, spec: LoadSpec, samples: Samples) -> Self {
        let micros = |v: Vec<u64>| v.into_iter().map(Duration::from_micros).collect();
        let pairs = samples.reserves.len() as u64;
        LoadReport {
            label: label.to_owned(),
            spec,
            pairs,
            pairs_per_sec: pairs as f64 / spec.duration.as_secs_f64(),
            reserve: OpStats::from_samples(micros(samples.reserves)),
            commit: OpStats::from_samples(micros(samples.commits)),
            per_task: samples.per_task,
        }
    }
}

/// Runs `spec` against `driver`. The first error stops the run and is returned.
pub async fn run<D: PairDriver>(
    label: &str,
    driver: Arc<D>,
    spec: LoadSpec,
) -> Result<LoadReport, BoxError> {
    driver.setup(spec.budgets).await?;
    let samples = drive(driver, spec.tasks, spec, Instant::now()).await?;
    Ok(LoadReport::from_samples(label, spec, samples))
}

/// Runs `tasks` tasks of `spec` against `driver` (set up or attached), warming up from
/// `start` and measuring for `spec.duration` after the warm-up; several processes given the
/// same `start` measure the same window.
pub async fn drive<D: PairDriver>(
    driver: Arc<D>,
    tasks: usize,
    spec: LoadSpec,
    start: Instant,
) -> Result<Samples, BoxError> {
    tokio::time::sleep_until(start.into()).await;
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let tasks: Vec<_> = (0..tasks)
        .map(|task| {
            let driver = driver.clone();
            tokio::spawn(async move {
                let mut reserves = Vec::new();
                let mut commits = Vec::new();
                let mut next = task;
                loop {
                    let budget = next % spec.budgets;
                    next = next
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407)
                        >> 1;
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let handle = driver.reserve(budget, RESERVE_TOKENS).await?;
                    let t1 = Instant::now();
                    driver.commit(handle, COMMIT_TOKENS).await?;
                    let t2 = Instant::now();
                    if t0 >= measure_from && t2 <= end {
                        reserves.push(t1 - t0);
                        commits.push(t2 - t1);
                    }
                    // A service yields between requests; without this, a store that never
                    // suspends (memory) lets one task hog a worker and starve the others.
                    tokio::task::yield_now().await;
                }
                Ok::<_, BoxError>((reserves, commits))
            })
        })
        .collect();
    let mut samples = Samples::default();
    let micros = |d: Duration| d.as_micros() as u64;
    for task in tasks {
        let (r, c) = task.await??;
        samples.per_task.push(r.len() as u64);
        samples.reserves.extend(r.into_iter().map(micros));
        samples.commits.extend(c.into_iter().map(micros));
    }
    Ok(samples)
}

/// The tracker over any store: what users of tokenbudget run.
#[derive(Debug)]
pub struct TrackerDriver {
    tracker: Tracker,
    budgets: std::sync::OnceLock<Vec<BudgetId>>,
}

impl TrackerDriver {
    /// A driver over `store` with the default tracker settings.
    pub fn new(store: DynBudgetStore) -> Self {
        Self {
            tracker: Tracker::new(store),
            budgets: std::sync::OnceLock::new(),
        }
    }
}

#[async_trait]
impl PairDriver for TrackerDriver {
    type Handle = ReservationId;

    async fn setup(&self, budgets: usize) -> Result<(), BoxError> {
        let mut ids = Vec::with_capacity(budgets);
        for i in 0..budgets {
            let id = BudgetId::new(budget_name(i))?;
            self.tracker.create_workflow(&id, BENCH_LIMIT).await?;
            ids.push(id);
        }
        self.budgets
            .set(ids)
            .map_err(|_| "TrackerDriver::setup called twice")?;
        Ok(())
    }

    async fn attach(&self, budgets: usize) -> Result<(), BoxError> {
        let ids = (0..budgets)
            .map(|i| BudgetId::new(budget_name(i)))
            .collect::<Result<Vec<_>, _>>()?;
        self.budgets
            .set(ids)
            .map_err(|_| "TrackerDriver::attach called twice")?;
        Ok(())
    }

    async fn reserve(&self, budget: usize, tokens: u64) -> Result<ReservationId, BoxError> {
        let ids = self
            .budgets
            .get()
            .ok_or("TrackerDriver::setup not called")?;
        let outcome = self
            .tracker
            .reserve(&ids[budget], tokens, ReserveOptions::new())
            .await?;
        let grant = outcome.into_result()?;
        Ok(grant.reservation.id)
    }

    async fn commit(&self, handle: ReservationId, actual: u64) -> Result<(), BoxError> {
        self.tracker.commit(handle, actual).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let stats = OpStats::from_samples(samples);
        assert_eq!(
            (stats.count, stats.p50_ms, stats.p99_ms, stats.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        assert_eq!(OpStats::from_samples(Vec::new()).count, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_pairs_are_counted_and_totals_add_up() {
        let store = tokenbudget_core::MemoryStore::shared();
        let driver = Arc::new(TrackerDriver::new(store.clone()));
        let spec = LoadSpec {
            tasks: 4,
            budgets: 3,
            duration: Duration::from_millis(100),
            warmup: Duration::ZERO,
            processes: 1,
        };
        let report = run("memory", driver, spec).await.unwrap();
        assert!(report.pairs > 0);
        assert_eq!(report.per_task.iter().sum::<u64>(), report.pairs);
        let used: u64 = tokenbudget_core::BudgetStore::list_budgets(store.as_ref())
            .await
            .unwrap()
            .iter()
            .map(|b| b.used)
            .sum();
        // Every pair, measured or not, committed COMMIT_TOKENS.
        assert!(used >= report.pairs * COMMIT_TOKENS);
        assert_eq!(used % COMMIT_TOKENS, 0);
    }
}
