//! The connection pool: bounded, with timeouts on every wait, and no connection reused that
//! could still be inside a transaction.

use std::ops::{Deref, DerefMut};

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
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

/// How a connection handed back to the pool is made safe to reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Before reuse a connection must be open and pass [`sql::RECYCLE_CHECK`] (a round trip to
    /// the server that also fails inside a transaction block), like
    /// [`RecyclingMethod::Verified`] plus the transaction check. For callers that drop
    /// connections anywhere (the ledger's).
    Checked,
    /// Only connections given back by [`Lease::release`] return to the pool, and those are
    /// outside any transaction by the releaser's word; a [`Lease`] dropped otherwise (an
    /// error mid-transaction, a cancelled future, a panic) closes its connection. Before reuse
    /// a connection must only still be open (no round trip): the store's path, where that
    /// round trip was a third of a write's at one task.
    Released,
}

/// Builds the pool. No connection is opened until the first `get()`.
///
/// - `get()` waits at most [`Config::wait_timeout`] for a free slot, opening a connection takes
///   at most [`Config::create_timeout`], and checking a pooled one at most
///   [`Config::recycle_timeout`]: `get()` never hangs forever.
/// - `reuse` says how a connection left inside a transaction is kept from being handed out
///   again ([`Reuse`]); a connection that is closed is discarded and another taken or opened.
pub(crate) fn build(config: &Config, reuse: Reuse) -> Result<Pool> {
    let recycling_method = match reuse {
        Reuse::Checked => RecyclingMethod::Custom(sql::RECYCLE_CHECK.to_owned()),
        Reuse::Released => RecyclingMethod::Fast,
    };
    let manager = Manager::from_config(
        config.pg_config()?,
        NoTls,
        ManagerConfig { recycling_method },
    );
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

/// A connection taken from a [`Reuse::Released`] pool: it goes back only through
/// [`Lease::release`]; dropped any other way, it is taken out of the pool and closed, so a
/// connection that may be inside a transaction is never handed out again.
pub(crate) struct Lease(Option<Object>);

impl Lease {
    /// Takes a connection from `pool`.
    pub(crate) async fn get(pool: &Pool) -> std::result::Result<Self, PoolError> {
        Ok(Self(Some(pool.get().await?)))
    }

    /// Gives the connection back to the pool. Only for a connection outside any transaction.
    pub(crate) fn release(mut self) {
        drop(self.0.take());
    }
}

impl Deref for Lease {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.0
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Object {
        self.0
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            // Out of the pool for good: dropping the client closes the connection, and the
            // server ends whatever transaction it had open.
            drop(Object::take(object));
        }
    }
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
        let pool = build(&config, Reuse::Checked).unwrap();

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
    async fn only_a_released_lease_goes_back_and_a_dropped_one_closes_its_connection() {
        let Some(config) = test_config().await else {
            return;
        };
        let pool = build(&config, Reuse::Released).unwrap();

        // Released: the same connection, with no check on the way.
        let lease = Lease::get(&pool).await.unwrap();
        let first = backend_pid(&lease).await;
        lease.release();
        let lease = Lease::get(&pool).await.unwrap();
        assert_eq!(
            backend_pid(&lease).await,
            first,
            "a released connection is reused"
        );

        // Dropped inside a transaction (an error path or a panic): never handed out again, and
        // the pool counts it gone.
        lease.batch_execute("BEGIN").await.unwrap();
        drop(lease);
        assert_eq!(
            pool.status().size,
            0,
            "the dropped connection left the pool"
        );
        let lease = Lease::get(&pool).await.unwrap();
        let second = backend_pid(&lease).await;
        assert_ne!(
            second, first,
            "the connection inside a transaction was handed out"
        );
        // The recycle check fails inside a transaction block: the new one is outside any.
        lease.simple_query(sql::RECYCLE_CHECK).await.unwrap();

        // A future cancelled between BEGIN and COMMIT drops its lease the same way.
        let (begun, began) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            lease.batch_execute("BEGIN").await.unwrap();
            begun.send(()).unwrap();
            std::future::pending::<()>().await;
            lease.release();
        });
        began.await.unwrap();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        let lease = Lease::get(&pool).await.unwrap();
        assert_ne!(
            backend_pid(&lease).await,
            second,
            "the cancelled lease's connection was reused"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_fails_after_the_wait_timeout_instead_of_hanging() {
        let Some(config) = test_config().await else {
            return;
        };
        let pool = build(
            &config.with_wait_timeout(std::time::Duration::from_millis(50)),
            Reuse::Checked,
        )
        .unwrap();
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
