//! Keys in the budgets' PostgreSQL database, in the gateway's own tables in the store's
//! schema (`?schema=name`, default `tokenbudget`).
//!
//! The connections are a small pool ([`POOL_SIZE`]): a connection the server closed (a
//! restart, `pg_terminate_backend`, a network cut) is dropped when it is next taken and a
//! new one opened, and every wait (for a free connection, to connect, to check one) is
//! bounded by [`POOL_TIMEOUT`], so a dead database is an error, never a hang.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokenbudget::BudgetId;
use tokio_postgres::{NoTls, Row};

use super::{KeyRecord, KeyStore};
use crate::error::{Error, Result};

const VERSION: i64 = 1;

/// Connections the key store keeps: key lookups are one short query each.
pub const POOL_SIZE: usize = 4;

/// The longest the key store waits for a connection: free, newly opened or checked.
pub const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys in PostgreSQL.
#[derive(Debug)]
pub struct PostgresKeyStore {
    pool: Pool,
    keys: String,
}

fn store_err(e: tokio_postgres::Error) -> Error {
    Error::Store(format!("postgres key store: {e}"))
}

fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    Error::Store(format!("postgres key store: {e}"))
}

/// `url` without its `schema` parameter, and the schema (default `tokenbudget`).
fn split_schema(url: &str) -> Result<(String, String)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = "tokenbudget".to_owned();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(s) => schema = s.to_owned(),
            None => kept.push(pair),
        }
    }
    let valid = schema
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema.len() <= 63;
    if !valid {
        return Err(Error::Config {
            setting: "--db".into(),
            reason: format!("schema {schema:?}: lowercase letters, digits and _ only"),
        });
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, schema))
}

impl PostgresKeyStore {
    /// Connects and creates or migrates the gateway's tables.
    pub async fn open(url: &str) -> Result<Self> {
        let (url, schema) = split_schema(url)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| Error::Config {
            setting: "--db".into(),
            reason: format!("{}: {e}", tokenbudget::redact(&url)),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tokenbudget-gateway-keys");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A closed connection is found before it is used: `SELECT 1`-free, so a
                // lookup stays one round trip.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| Error::Config {
                setting: "--db".into(),
                reason: e.to_string(),
            })?;
        let client = pool.get().await.map_err(pool_err)?;
        let keys = format!("\"{schema}\".tokenbudget_gateway_keys");
        let version_table = format!("\"{schema}\".tokenbudget_gateway_schema");
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
                 CREATE TABLE IF NOT EXISTS {version_table} (version BIGINT NOT NULL);
                 CREATE TABLE IF NOT EXISTS {keys} (
                    id TEXT PRIMARY KEY,
                    hash TEXT NOT NULL UNIQUE,
                    budget_id TEXT NOT NULL,
                    name TEXT,
                    session_limit BIGINT,
                    created_at TIMESTAMPTZ NOT NULL,
                    revoked_at TIMESTAMPTZ);
                 INSERT INTO {version_table} (version)
                    SELECT {VERSION} WHERE NOT EXISTS (SELECT 1 FROM {version_table});"
            ))
            .await
            .map_err(store_err)?;
        let row = client
            .query_one(&format!("SELECT MAX(version) FROM {version_table}"), &[])
            .await
            .map_err(store_err)?;
        let version: Option<i64> = row.get(0);
        if version.is_some_and(|v| v > VERSION) {
            return Err(Error::Store(format!(
                "the gateway's tables are at a schema version newer than this build's {VERSION}"
            )));
        }
        drop(client);
        Ok(Self { pool, keys })
    }

    /// A pooled connection. A query that fails because its connection was closed closes
    /// it for good, so the pool replaces it on the next call.
    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(pool_err)
    }
}

fn record(row: &Row) -> Result<KeyRecord> {
    let budget: String = row.get("budget_id");
    let limit: Option<i64> = row.get("session_limit");
    Ok(KeyRecord {
        id: row.get("id"),
        hash: row.get("hash"),
        budget_id: BudgetId::new(budget).map_err(|e| Error::Store(e.to_string()))?,
        name: row.get("name"),
        session_limit: limit.and_then(|l| u64::try_from(l).ok()),
        created_at: row.get("created_at"),
        revoked_at: row.get("revoked_at"),
    })
}

#[async_trait]
impl KeyStore for PostgresKeyStore {
    async fn insert(&self, r: &KeyRecord) -> Result<()> {
        let limit = r
            .session_limit
            .map(i64::try_from)
            .transpose()
            .map_err(|_| Error::InvalidRequest("session limit beyond i64::MAX".into()))?;
        self.client()
            .await?
            .execute(
                &format!(
                    "INSERT INTO {} (id, hash, budget_id, name, session_limit, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    self.keys
                ),
                &[&r.id, &r.hash, &r.budget_id.as_str(), &r.name, &limit, &r.created_at, &r.revoked_at],
            )
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn by_hash(&self, hash: &str) -> Result<Option<KeyRecord>> {
        let sql = format!("SELECT * FROM {} WHERE hash = $1", self.keys);
        // A lookup is a read: when its connection turns out to have been closed by the
        // server (the pool cannot see that before the first use after it), it runs again
        // once on a new one instead of failing the request.
        let mut retried = false;
        loop {
            let client = self.client().await?;
            match client.query_opt(&sql, &[&hash]).await {
                Ok(row) => return row.as_ref().map(record).transpose(),
                Err(_) if !retried && client.is_closed() => retried = true,
                Err(e) => return Err(store_err(e)),
            }
        }
    }

    async fn list(&self) -> Result<Vec<KeyRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT * FROM {} ORDER BY created_at, id", self.keys),
                &[],
            )
            .await
            .map_err(store_err)?;
        rows.iter().map(record).collect()
    }

    async fn revoke(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                &format!(
                    "UPDATE {} SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                    self.keys
                ),
                &[&at, &id],
            )
            .await
            .map_err(store_err)?;
        Ok(n > 0)
    }

    async fn ping(&self) -> Result<()> {
        self.client()
            .await?
            .simple_query("SELECT 1")
            .await
            .map_err(store_err)?;
        Ok(())
    }
}
