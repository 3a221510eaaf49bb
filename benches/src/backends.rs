//! Every backend the benchmarks know, by name, each opened on a fresh store.
//!
//! | name | what runs |
//! |---|---|
//! | `memory` | the tracker on [`MemoryStore`] |
//! | `sqlite` | the tracker on a new SQLite file |
//! | `sqlite-raw` | the store's statements in bare sqlx ([`RawShape::Store`]) |
//! | `sqlite-raw-min` | the fewest statements a correct reserve and commit need, bare sqlx |
//! | `postgres` | the tracker on the Postgres store, fresh schema ([`bench_url`]) |
//! | `postgres-raw` | the store's transactions and round trips in bare tokio-postgres |
//! | `postgres-raw-seq` | the same statements one round trip each, as pgbench runs them |
//!
//! [`open`] gives the backend's [`Driver`]; the load run ([`run_backend`]) and the criterion
//! bench (`benches/tracker.rs`) both drive it.

use std::sync::Arc;

use tokenbudget_core::MemoryStore;
use tokenbudget_postgres::PostgresStore;
use tokenbudget_sqlite::{Config, SqliteStore, Synchronous};

use crate::load::{run, BoxError, LoadReport, LoadSpec, TrackerDriver};
use crate::raw_postgres::{bench_schema, bench_url, RawPostgres, Shape};
use crate::raw_sqlite::{RawShape, RawSqlite};

/// Settings that apply to some backends.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// SQLite `synchronous` (`full`, `normal`, `extra`). Defaults to `full`, the store's default.
    pub sqlite_synchronous: String,
    /// Where temporary SQLite files go. Defaults to the system's temporary directory.
    pub sqlite_dir: Option<std::path::PathBuf>,
    /// The Postgres store's pool size. Defaults to the store's own default.
    pub postgres_pool: Option<usize>,
    /// The Postgres store's `root_concurrency`. Defaults to the store's own default.
    pub postgres_root_concurrency: Option<usize>,
    /// The Postgres store's `max_batches`. Defaults to the store's own default.
    pub postgres_max_batches: Option<usize>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            sqlite_synchronous: "full".to_owned(),
            sqlite_dir: None,
            postgres_pool: None,
            postgres_root_concurrency: None,
            postgres_max_batches: None,
        }
    }
}

/// An opened backend's driver.
pub enum Driver {
    /// The tracker on a store.
    Tracker(Arc<TrackerDriver>),
    /// The raw SQLite baseline.
    RawSqlite(Arc<RawSqlite>),
    /// The raw Postgres baseline.
    RawPostgres(Arc<RawPostgres>),
}

/// Evaluates `$body` with `$d` bound to the `&Arc<impl PairDriver>` that `$driver` (a
/// `&Driver`) holds: one generic body for every kind of driver.
#[macro_export]
macro_rules! with_driver {
    ($driver:expr, |$d:ident| $body:expr) => {
        match $driver {
            $crate::backends::Driver::Tracker($d) => $body,
            $crate::backends::Driver::RawSqlite($d) => $body,
            $crate::backends::Driver::RawPostgres($d) => $body,
        }
    };
}

/// A backend opened by [`open`]: its label, its driver, and what [`Opened::close`] removes.
pub struct Opened {
    /// The backend's name, with its settings where they vary (`postgres/8/2`).
    pub label: String,
    /// What the benchmark drives.
    pub driver: Driver,
    /// The temporary SQLite directory, deleted on drop.
    _dir: Option<tempfile::TempDir>,
    /// The Postgres store to close and the schema to drop.
    postgres: Option<(Option<Arc<PostgresStore>>, String)>,
}

impl Opened {
    /// The Postgres schema the backend runs on, for [`attach`] in another process.
    pub fn schema(&self) -> Option<&str> {
        self.postgres.as_ref().map(|(_, schema)| schema.as_str())
    }

    /// Closes the store and removes what [`open`] created (the SQLite files, the Postgres
    /// schema).
    pub async fn close(self) -> Result<(), BoxError> {
        if let Some((store, schema)) = self.postgres {
            if let Some(store) = store {
                store.close();
            }
            RawPostgres::drop_schema(&bench_url(), &schema).await?;
        }
        Ok(())
    }
}

/// Opens `backend` on a fresh store; `connections` is how many connections the raw Postgres
/// baselines open (one per task, as pgbench has).
pub async fn open(
    backend: &str,
    connections: usize,
    options: &BackendOptions,
) -> Result<Opened, BoxError> {
    let opened = |label: &str, driver| Opened {
        label: label.to_owned(),
        driver,
        _dir: None,
        postgres: None,
    };
    match backend {
        "memory" => Ok(opened(
            backend,
            Driver::Tracker(Arc::new(TrackerDriver::new(MemoryStore::shared()))),
        )),
        "sqlite" | "sqlite-raw" | "sqlite-raw-min" => {
            let dir = match &options.sqlite_dir {
                Some(parent) => tempfile::tempdir_in(parent)?,
                None => tempfile::tempdir()?,
            };
            let path = dir.path().join("bench.db");
            let sync = options.sqlite_synchronous.as_str();
            let driver = if backend == "sqlite" {
                let synchronous: Synchronous = sync.parse()?;
                let config = Config::new(path.to_str().ok_or("non-UTF-8 temp path")?)
                    .with_synchronous(synchronous);
                let store = Arc::new(SqliteStore::open_with(config).await?);
                Driver::Tracker(Arc::new(TrackerDriver::new(store)))
            } else {
                let shape = if backend == "sqlite-raw" {
                    RawShape::Store
                } else {
                    RawShape::Minimal
                };
                Driver::RawSqlite(Arc::new(RawSqlite::create(&path, sync, shape).await?))
            };
            Ok(Opened {
                _dir: Some(dir),
                ..opened(backend, driver)
            })
        }
        "postgres" => {
            let schema = bench_schema();
            let (label, store) = postgres_store(&schema, options).await?;
            Ok(Opened {
                postgres: Some((Some(store.clone()), schema)),
                ..opened(&label, Driver::Tracker(Arc::new(TrackerDriver::new(store))))
            })
        }
        "postgres-raw" | "postgres-raw-seq" => {
            let schema = bench_schema();
            let shape = if backend == "postgres-raw" {
                Shape::Pipelined
            } else {
                Shape::Sequential
            };
            let raw = RawPostgres::connect(&bench_url(), &schema, connections, shape).await?;
            Ok(Opened {
                postgres: Some((None, schema)),
                ..opened(backend, Driver::RawPostgres(Arc::new(raw)))
            })
        }
        other => Err(format!("unknown backend {other}").into()),
    }
}

/// The Postgres store on `schema`, with its label `postgres/<pool size>/<root
/// concurrency>/<batches in flight>`.
async fn postgres_store(
    schema: &str,
    options: &BackendOptions,
) -> Result<(String, Arc<PostgresStore>), BoxError> {
    let mut config = tokenbudget_postgres::Config::new(bench_url())?
        .with_schema(schema)
        .with_application_name("tb_bench");
    if let Some(pool) = options.postgres_pool {
        config = config.with_pool_size(pool);
    }
    if let Some(root) = options.postgres_root_concurrency {
        config = config.with_root_concurrency(root);
    }
    if let Some(batches) = options.postgres_max_batches {
        config = config.with_max_batches(batches);
    }
    let label = format!(
        "postgres/{}/{}/{}",
        config.pool_size,
        config.root_concurrency,
        config.batch_leaders()
    );
    Ok((label, Arc::new(PostgresStore::open_with(config).await?)))
}

/// Opens `backend` (`postgres` or `postgres-raw`) on `schema`, which [`open`] made in another
/// process: a second process driving the same budgets. [`Opened::close`] of the result leaves
/// the schema alone.
pub async fn attach(
    backend: &str,
    schema: &str,
    connections: usize,
    options: &BackendOptions,
) -> Result<Opened, BoxError> {
    let driver = match backend {
        "postgres" => {
            let (_, store) = postgres_store(schema, options).await?;
            Driver::Tracker(Arc::new(TrackerDriver::new(store)))
        }
        "postgres-raw" | "postgres-raw-seq" => {
            let shape = if backend == "postgres-raw" {
                Shape::Pipelined
            } else {
                Shape::Sequential
            };
            let raw = RawPostgres::open(&bench_url(), schema, connections, shape).await?;
            Driver::RawPostgres(Arc::new(raw))
        }
        other => return Err(format!("{other} cannot run in several processes").into()),
    };
    Ok(Opened {
        label: backend.to_owned(),
        driver,
        _dir: None,
        postgres: None,
    })
}

/// Runs `backend` at `spec` on a fresh store, then removes the store.
pub async fn run_backend(
    backend: &str,
    spec: LoadSpec,
    options: &BackendOptions,
) -> Result<LoadReport, BoxError> {
    let opened = open(backend, spec.tasks, options).await?;
    let report = run_driver(&opened.label, &opened.driver, spec).await;
    opened.close().await?;
    report
}

async fn run_driver(label: &str, driver: &Driver, spec: LoadSpec) -> Result<LoadReport, BoxError> {
    with_driver!(driver, |d| run(label, d.clone(), spec).await)
}
