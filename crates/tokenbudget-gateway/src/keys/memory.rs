//! Keys in memory (`memory://` budgets, tests).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Mutex;

use super::{KeyRecord, KeyStore};
use crate::error::{Error, Result};

/// Keys in a process's memory.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    records: Mutex<Vec<KeyRecord>>,
}

impl MemoryKeyStore {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<KeyRecord>) -> T) -> T {
        let mut guard = match self.records.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn insert(&self, record: &KeyRecord) -> Result<()> {
        self.with(|r| {
            if r.iter().any(|k| k.hash == record.hash || k.id == record.id) {
                return Err(Error::Store("a key with this hash exists".into()));
            }
            r.push(record.clone());
            Ok(())
        })
    }

    async fn by_hash(&self, hash: &str) -> Result<Option<KeyRecord>> {
        Ok(self.with(|r| r.iter().find(|k| k.hash == hash).cloned()))
    }

    async fn list(&self) -> Result<Vec<KeyRecord>> {
        Ok(self.with(|r| r.clone()))
    }

    async fn revoke(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        Ok(self.with(|r| match r.iter_mut().find(|k| k.id == id) {
            Some(k) => {
                k.revoked_at.get_or_insert(at);
                true
            }
            None => false,
        }))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
