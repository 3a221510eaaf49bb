//! Every backend the load benchmark knows, by name, each on a fresh store per run.
//!
//! | name | what runs |
//! |---|---|
//! | `memory` | the tracker on [`MemoryStore`] |
//! | `sqlite` | the tracker on a new SQLite file |
//! | `sqlite-raw` | the same transactions in bare sqlx (the store's statements) |
//! | `sqlite-raw-min` | the fewest statements a correct reserve and commit need, bare sqlx |
//! | `postgres` | the tracker on a fresh Postgres schema |
//! | `postgres-raw` | the same SQL through bare tokio-postgres |
//! | `postgres-raw-seq` | the raw baseline with the statements sent one after another |
//! | `postgres` | the tracker on the Postgres store, fresh schema ([`bench_url`](crate::raw_postgres::bench_url)) |
//! | `postgres-raw` | the store's transactions and round trips in bare tokio-postgres |
//! | `postgres-raw-seq` | the same statements one round trip each, as pgbench runs them |

use std::sync::Arc;

use tokenbudget_core::MemoryStore;
use tokenbudget_sqlite::{Config, SqliteStore, Synchronous};

use crate::load::{run, BoxError, LoadReport, LoadSpec, TrackerDriver};
use crate::raw_postgres::{bench_url, run_postgres};
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
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            sqlite_synchronous: "full".to_owned(),
            sqlite_dir: None,
            postgres_pool: None,
            postgres_root_concurrency: None,
        }
    }
}

/// Runs `backend` at `spec` on a fresh store.
pub async fn run_backend(
    backend: &str,
    spec: LoadSpec,
    options: &BackendOptions,
) -> Result<LoadReport, BoxError> {
    match backend {
        "memory" => {
            run(
                backend,
                Arc::new(TrackerDriver::new(MemoryStore::shared())),
                spec,
            )
            .await
        }
        "sqlite" | "sqlite-raw" | "sqlite-raw-min" => {
            let dir = match &options.sqlite_dir {
                Some(parent) => tempfile::tempdir_in(parent)?,
                None => tempfile::tempdir()?,
            };
            let path = dir.path().join("bench.db");
            let sync = options.sqlite_synchronous.as_str();
            if backend == "sqlite" {
                let synchronous: Synchronous = sync.parse()?;
                let config = Config::new(path.to_str().ok_or("non-UTF-8 temp path")?)
                    .with_synchronous(synchronous);
                let store = Arc::new(SqliteStore::open_with(config).await?);
                run(backend, Arc::new(TrackerDriver::new(store)), spec).await
            } else {
                let shape = if backend == "sqlite-raw" {
                    RawShape::Store
                } else {
                    RawShape::Minimal
                };
                run(
                    backend,
                    Arc::new(RawSqlite::create(&path, sync, shape).await?),
                    spec,
                )
                .await
            }
        }
        "postgres" | "postgres-raw" | "postgres-raw-seq" => {
            run_postgres(&bench_url(), backend, options, spec).await
        }
        other => Err(format!("unknown backend {other}").into()),
    }
}
