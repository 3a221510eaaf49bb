//! The connection pool: bounded, with timeouts on every wait, and a check before each reuse.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokenbudget_core::{Error, Result};
use tokio_postgres::NoTls;

use crate::config::Config;
use crate::sql;

/// A snapshot of the pool's occupancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The most connections the pool opens ([`Config::pool_size`]).
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections not in use.
    pub available: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
}

impl From<deadpool_postgres::Status> for PoolStatus {
    fn from(s: deadpool_postgres::Status) -> Self {
        Self {
            max_size: s.max_size,
            size: s.size,
            available: s.available,
            waiting: s.waiting,
        }
    }
}

/// Builds the pool. No connection is opened until the first `get()`.
///
/// - `get()` waits at most [`Config::wait_timeout`] for a free slot, opening a connection takes
///   at most [`Config::create_timeout`], and checking a pooled one at most
///   [`Config::recycle_timeout`]: `get()` never hangs forever.
/// - Before reuse a connection must be open and pass [`sql::RECYCLE_CHECK`] (a round trip to
///   the server that also fails inside a transaction block), like
///   [`RecyclingMethod::Verified`] plus the transaction check; a connection that fails is
///   discarded and another taken or opened, so a dead connection is never handed out.
pub(crate) fn build(config: &Config) -> Result<Pool> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Custom(sql::RECYCLE_CHECK.to_owned()),
    };
    let manager = Manager::from_config(config.pg_config()?, NoTls, manager_config);
    Pool::builder(manager)
        .max_size(config.pool_size.max(1))
        .wait_timeout(Some(config.wait_timeout))
        .create_timeout(Some(config.create_timeout))
        .recycle_timeout(Some(config.recycle_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Config {
            message: format!("cannot build the connection pool: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test database, or `None` (skip) when it is unreachable outside CI.
    async fn test_config() -> Option<Config> {
        let url = std::env::var("TOKENBUDGET_TEST_DATABASE_URL")
            .or_else(|_| std::env::var("TOKENBUDGET_DATABASE_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let config = Config::new(&url)
            .unwrap()
            .with_pool_size(1)
            .with_application_name("tb_unit_pool");
        match tokio_postgres::connect(&url, NoTls).await {
            Ok(_) => Some(config),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL unreachable at {url}: {e}")
            }
            Err(e) => {
                eprintln!("\n!!!! SKIPPED: PostgreSQL unreachable at {url}: {e}\n");
                None
            }
        }
    }

    async fn backend_pid(client: &deadpool_postgres::Object) -> i32 {
        client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_left_inside_a_transaction_is_discarded_not_reused() {
        let Some(config) = test_config().await else {
            return;
        };
        let pool = build(&config).unwrap();

        // A clean connection is reused.
        let client = pool.get().await.unwrap();
        let first = backend_pid(&client).await;
        drop(client);
        let client = pool.get().await.unwrap();
        assert_eq!(
            backend_pid(&client).await,
            first,
            "a clean connection is reused"
        );

        // One returned inside a transaction (as a panic mid-transaction would) is not.
        client.batch_execute("BEGIN").await.unwrap();
        drop(client);
        let client = pool.get().await.unwrap();
        let second = backend_pid(&client).await;
        assert_ne!(
            second, first,
            "the connection inside a transaction was handed out"
        );
        // The recycle check itself passes on the fresh connection.
        client.simple_query(sql::RECYCLE_CHECK).await.unwrap();

        // Nor one in an aborted transaction.
        client.batch_execute("BEGIN").await.unwrap();
        assert!(client.batch_execute("SELECT 1/0").await.is_err());
        drop(client);
        let client = pool.get().await.unwrap();
        assert_ne!(backend_pid(&client).await, second);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_fails_after_the_wait_timeout_instead_of_hanging() {
        let Some(config) = test_config().await else {
            return;
        };
        let pool = build(&config.with_wait_timeout(std::time::Duration::from_millis(50))).unwrap();
        let held = pool.get().await.unwrap();
        // The bound only turns a hang into a failure; it does not time the wait.
        let err = tokio::time::timeout(std::time::Duration::from_secs(60), pool.get())
            .await
            .expect("get() hung past its wait timeout")
            .unwrap_err();
        assert!(
            matches!(err, deadpool_postgres::PoolError::Timeout(_)),
            "{err}"
        );
        drop(held);
        assert!(pool.get().await.is_ok());
    }
}
