//! Gateway keys: `tbk_…` secrets handed to clients, stored only as a hash.
//!
//! A key is 32 random bytes (256 bits, from the OS) written as `tbk_` + 64 hex digits. The
//! store keeps the SHA-256 of the whole key. A salted slow hash (argon2, bcrypt) protects
//! low-entropy passwords against guessing; a 256-bit random secret cannot be guessed, so a
//! plain SHA-256 is as strong and lets the gateway find a key by its hash in one indexed
//! lookup per request, with no per-request KDF cost.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokenbudget::BudgetId;

pub use memory::MemoryKeyStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresKeyStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteKeyStore;

use crate::error::{Error, Result};

/// The prefix of every key.
pub const PREFIX: &str = "tbk_";

/// A stored key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    /// Public id: the first 12 hex digits of the hash (safe to print and log).
    pub id: String,
    /// SHA-256 of the key, hex.
    #[serde(skip)]
    pub hash: String,
    /// The budget that pays for this key's requests.
    pub budget_id: BudgetId,
    /// A label.
    pub name: Option<String>,
    /// With a limit, each Claude Code session gets its own phase under the budget.
    pub session_limit: Option<u64>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Where keys live: the same database as the budgets, in tables of the gateway's own.
///
/// # Behavior
/// - `insert` stores a new record; a second record with the same hash is an error.
/// - `by_hash` finds a record by its hash, revoked or not.
/// - `list` returns every record ordered by creation time.
/// - `revoke` marks a record revoked once; returns false for an unknown id.
/// - `ping` succeeds when the store answers.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Stores a new key record.
    async fn insert(&self, record: &KeyRecord) -> Result<()>;
    /// The record with this hash.
    async fn by_hash(&self, hash: &str) -> Result<Option<KeyRecord>>;
    /// Every record.
    async fn list(&self) -> Result<Vec<KeyRecord>>;
    /// Revokes the key with public id `id`.
    async fn revoke(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Checks the store answers.
    async fn ping(&self) -> Result<()>;
}

/// A shared key store.
pub type DynKeyStore = Arc<dyn KeyStore>;

/// The SHA-256 of `key`, hex.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key and its record (the key itself is only in the first value).
pub fn generate(
    budget_id: BudgetId,
    name: Option<String>,
    session_limit: Option<u64>,
) -> Result<(String, KeyRecord)> {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret)
        .map_err(|e| Error::Internal(format!("no OS randomness: {e}")))?;
    let key = format!("{PREFIX}{}", hex::encode(secret));
    let hash = hash(&key);
    let record = KeyRecord {
        id: hash[..12].to_owned(),
        hash,
        budget_id,
        name,
        session_limit,
        created_at: Utc::now(),
        revoked_at: None,
    };
    Ok((key, record))
}

/// Opens the key store for the budget database `url` (`memory://`, `sqlite:…`,
/// `postgres://…`): the same database, the gateway's own tables.
pub async fn open(url: &str) -> Result<DynKeyStore> {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("memory") => Ok(Arc::new(MemoryKeyStore::default())),
        #[cfg(feature = "sqlite")]
        Some("sqlite") => Ok(Arc::new(SqliteKeyStore::open(url).await?)),
        #[cfg(feature = "postgres")]
        Some("postgres" | "postgresql") => Ok(Arc::new(PostgresKeyStore::open(url).await?)),
        _ => Err(Error::Config {
            setting: "--db".into(),
            reason: format!(
                "no key store for {} (memory://, sqlite: and postgres: are supported)",
                tokenbudget::redact(url)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let budget = BudgetId::new("wf").unwrap();
        let (a, ra) = generate(budget.clone(), None, None).unwrap();
        let (b, _) = generate(budget, None, None).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64);
        assert_eq!(ra.hash, hash(&a));
        assert_eq!(ra.hash.len(), 64);
        assert!(!ra.hash.contains(&a[PREFIX.len()..]));
        assert_eq!(ra.id, ra.hash[..12]);
    }
}
