//! Keys in the budgets' PostgreSQL database, in the gateway's own tables in the store's
//! schema (`?schema=name`, default `tokenbudget`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokenbudget::BudgetId;
use tokio_postgres::{Client, NoTls, Row};

use super::{KeyRecord, KeyStore};
use crate::error::{Error, Result};

const VERSION: i64 = 1;

/// Keys in PostgreSQL.
#[derive(Debug)]
pub struct PostgresKeyStore {
    client: Client,
    keys: String,
}

fn store_err(e: tokio_postgres::Error) -> Error {
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
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .map_err(store_err)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres key store connection ended");
            }
        });
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
        Ok(Self { client, keys })
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
        self.client
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
        let row = self
            .client
            .query_opt(
                &format!("SELECT * FROM {} WHERE hash = $1", self.keys),
                &[&hash],
            )
            .await
            .map_err(store_err)?;
        row.as_ref().map(record).transpose()
    }

    async fn list(&self) -> Result<Vec<KeyRecord>> {
        let rows = self
            .client
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
            .client
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
        self.client
            .simple_query("SELECT 1")
            .await
            .map_err(store_err)?;
        Ok(())
    }
}
