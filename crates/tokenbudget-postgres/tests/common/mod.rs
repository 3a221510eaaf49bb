//! What every Postgres test shares: the database URL, a reachability check that fails under
//! `CI=true`, unique schema names, an admin connection, and a harness that drops its schemas.

#![allow(dead_code)] // Each test binary uses a different part.

pub mod locks;
pub mod proxy;
pub mod workload;

use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokenbudget_core::testkit::StoreHarness;
use tokenbudget_core::DynBudgetStore;
use tokenbudget_postgres::{ClockSource, Config, PostgresStore};
use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

/// The default when neither variable is set: the local cluster `.ci/run` starts.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `TOKENBUDGET_TEST_DATABASE_URL`, else `TOKENBUDGET_DATABASE_URL`, else [`DEFAULT_URL`].
pub fn database_url() -> String {
    std::env::var("TOKENBUDGET_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("TOKENBUDGET_DATABASE_URL"))
        .unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The URL when the database accepts TCP connections. Otherwise: under `CI=true` a panic
/// (a missing database fails the run), else a loud note and `None` (the test skips).
pub fn require_database() -> Option<String> {
    let url = database_url();
    let reachable = probe(&url);
    if reachable {
        return Some(url);
    }
    let message = format!(
        "PostgreSQL is unreachable at {url}: start it (pg_ctlcluster --skip-systemctl-redirect \
         <version> main start) or set TOKENBUDGET_TEST_DATABASE_URL"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("\n!!!! SKIPPED: {message}\n");
    None
}

fn probe(url: &str) -> bool {
    let Ok(config) = tokio_postgres::Config::from_str(url) else {
        panic!("invalid test database URL {url}");
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) => (host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()),
        // A Unix socket (or no host): let the connection itself report.
        _ => true,
    }
}

/// A schema name no other test, run or process uses: `tb_test_<pid>_<n>_<random>`.
pub fn unique_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let random = uuid::Uuid::new_v4().as_u128() as u32 & 0xffff;
    format!(
        "tb_test_{}_{}_{random:04x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain connection for inspecting and provoking the database.
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("admin connection to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The store's default test configuration on `schema`.
pub fn config(url: &str, schema: &str) -> Config {
    Config::new(url)
        .expect("test database URL")
        .with_schema(schema)
        .with_application_name(format!("tbt_{schema}"))
        .with_pool_size(4)
}

/// Drops `schemas` (with their tables), from a thread of its own so it works in `Drop` and
/// outside any runtime.
pub fn drop_schemas(url: &str, schemas: Vec<String>) {
    if schemas.is_empty() {
        return;
    }
    let url = url.to_owned();
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let client = admin(&url).await;
            for schema in schemas {
                if let Err(e) = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                {
                    eprintln!("could not drop test schema {schema}: {e}");
                }
            }
        })
    })
    .join();
    if dropped.is_err() {
        eprintln!("dropping test schemas panicked");
    }
}

/// Drops its schema when dropped, even when the test panics.
pub struct SchemaGuard(pub String, pub String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        drop_schemas(&self.0, vec![self.1.clone()]);
    }
}

/// The conformance harness: a fresh schema per store, dropped when the harness is.
pub struct PgHarness {
    url: String,
    schemas: Mutex<Vec<String>>,
}

impl PgHarness {
    pub fn new() -> Option<Self> {
        Some(Self {
            url: require_database()?,
            schemas: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl StoreHarness for PgHarness {
    async fn fresh_store(&self) -> DynBudgetStore {
        let schema = unique_schema();
        self.schemas.lock().unwrap().push(schema.clone());
        // The suite injects its clock: decide with it, not the database's.
        let config = config(&self.url, &schema).with_clock(ClockSource::Caller);
        let store = PostgresStore::open_with(config)
            .await
            .unwrap_or_else(|e| panic!("open a Postgres store on schema {schema}: {e}"));
        std::sync::Arc::new(store)
    }

    fn proptest_cases(&self) -> u32 {
        32
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap());
        drop_schemas(&self.url, schemas);
    }
}

/// A reserve of `tokens` on `budget` under idempotency `key`, granted.
pub async fn reserve_keyed(
    t: &tokenbudget_core::Tracker,
    budget: &str,
    tokens: u64,
    key: &tokenbudget_core::IdempotencyKey,
) -> tokenbudget_core::Grant {
    t.reserve(
        budget,
        tokens,
        tokenbudget_core::ReserveOptions::new().with_idempotency_key(key.clone()),
    )
    .await
    .unwrap()
    .into_result()
    .unwrap()
}

/// The first column of every row `sql` returns.
pub async fn column<T>(admin: &tokio_postgres::Client, sql: &str) -> Vec<T>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    admin
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
