//! Keys in the budgets' SQLite database, in the gateway's own tables.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use tokenbudget::BudgetId;

use super::{KeyRecord, KeyStore};
use crate::error::{Error, Result};

/// The schema version this build writes.
const VERSION: i64 = 1;

const MIGRATE: &str = "
CREATE TABLE IF NOT EXISTS tokenbudget_gateway_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokenbudget_gateway_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    budget_id TEXT NOT NULL,
    name TEXT,
    session_limit INTEGER,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);";

/// Keys in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteKeyStore {
    pool: SqlitePool,
}

fn store_err(e: sqlx::Error) -> Error {
    Error::Store(format!("sqlite key store: {e}"))
}

impl SqliteKeyStore {
    /// Opens (and creates or migrates) the gateway's tables in the database at `url`.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::Config {
                setting: "--db".into(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        // `sqlite::memory:` is one database per connection: keep to one.
        let pool = SqlitePoolOptions::new()
            .max_connections(if url.contains(":memory:") { 1 } else { 4 })
            .connect_with(options)
            .await
            .map_err(store_err)?;
        let mut tx = pool.begin().await.map_err(store_err)?;
        sqlx::raw_sql(MIGRATE)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM tokenbudget_gateway_schema")
                .fetch_one(&mut *tx)
                .await
                .map_err(store_err)?;
        match version {
            None => {
                sqlx::query("INSERT INTO tokenbudget_gateway_schema (version) VALUES (?)")
                    .bind(VERSION)
                    .execute(&mut *tx)
                    .await
                    .map_err(store_err)?;
            }
            Some(v) if v > VERSION => {
                return Err(Error::Store(format!(
                "the gateway's tables are at schema version {v}, newer than this build's {VERSION}"
            )))
            }
            Some(_) => {}
        }
        tx.commit().await.map_err(store_err)?;
        Ok(Self { pool })
    }
}

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord> {
    let budget: String = row.try_get("budget_id").map_err(store_err)?;
    let created: String = row.try_get("created_at").map_err(store_err)?;
    let revoked: Option<String> = row.try_get("revoked_at").map_err(store_err)?;
    let limit: Option<i64> = row.try_get("session_limit").map_err(store_err)?;
    let time = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Error::Store(format!("bad timestamp {s:?} in key store: {e}")))
    };
    Ok(KeyRecord {
        id: row.try_get("id").map_err(store_err)?,
        hash: row.try_get("hash").map_err(store_err)?,
        budget_id: BudgetId::new(budget).map_err(|e| Error::Store(e.to_string()))?,
        name: row.try_get("name").map_err(store_err)?,
        session_limit: limit.and_then(|l| u64::try_from(l).ok()),
        created_at: time(&created)?,
        revoked_at: revoked.as_deref().map(time).transpose()?,
    })
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn insert(&self, r: &KeyRecord) -> Result<()> {
        let limit = r
            .session_limit
            .map(i64::try_from)
            .transpose()
            .map_err(|_| Error::InvalidRequest("session limit beyond i64::MAX".into()))?;
        sqlx::query(
            "INSERT INTO tokenbudget_gateway_keys (id, hash, budget_id, name, session_limit, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&r.hash)
        .bind(r.budget_id.as_str())
        .bind(&r.name)
        .bind(limit)
        .bind(r.created_at.to_rfc3339())
        .bind(r.revoked_at.map(|t| t.to_rfc3339()))
        .execute(&self.pool)
        .await
        .map_err(store_err)?;
        Ok(())
    }

    async fn by_hash(&self, hash: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query("SELECT * FROM tokenbudget_gateway_keys WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_err)?;
        row.as_ref().map(record).transpose()
    }

    async fn list(&self) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query("SELECT * FROM tokenbudget_gateway_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(store_err)?;
        rows.iter().map(record).collect()
    }

    async fn revoke(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tokenbudget_gateway_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        )
        .bind(at.to_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(store_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_err)?;
        Ok(())
    }
}
