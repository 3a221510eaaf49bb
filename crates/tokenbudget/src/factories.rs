//! The built-in factories, each compiled in with its backend's feature (sqlx's
//! `install_drivers`, object_store's cfg-gated `parse.rs` arms).

use std::sync::Arc;

use async_trait::async_trait;
use tokenbudget_core::{DynBudgetStore, MemoryStore};

use crate::error::Result;
use crate::parse;
use crate::registry::{StoreFactory, StoreRegistry};

pub(crate) fn install_defaults(registry: &mut StoreRegistry) {
    registry.insert("memory", Arc::new(Memory));
    #[cfg(feature = "sqlite")]
    registry.insert("sqlite", Arc::new(Sqlite));
    #[cfg(feature = "postgres")]
    {
        registry.insert("postgres", Arc::new(Postgres));
        registry.insert("postgresql", Arc::new(Postgres));
    }
}

/// `memory:` or `memory://`: a new, empty [`MemoryStore`] per open.
struct Memory;

#[async_trait]
impl StoreFactory for Memory {
    async fn open(&self, url: &str) -> Result<DynBudgetStore> {
        let rest = &url["memory:".len()..];
        if !matches!(rest, "" | "//" | "///") {
            return Err(parse::invalid(
                url,
                "memory:// takes no name or options: every open is a new, empty store",
            ));
        }
        Ok(Arc::new(MemoryStore::new()))
    }
}

/// `sqlite://rel/path.db`, `sqlite:///abs/path.db`, `sqlite::memory:` (sqlx's convention),
/// with the SQLite store's default [`Config`](tokenbudget_sqlite::Config).
#[cfg(feature = "sqlite")]
struct Sqlite;

#[cfg(feature = "sqlite")]
#[async_trait]
impl StoreFactory for Sqlite {
    async fn open(&self, url: &str) -> Result<DynBudgetStore> {
        let store = tokenbudget_sqlite::SqliteStore::open(url).await?;
        Ok(Arc::new(store))
    }
}

/// `postgres://…` and `postgresql://…` (a `?schema=name` parameter picks the schema), with
/// the Postgres store's defaults for everything the URL does not say.
#[cfg(feature = "postgres")]
struct Postgres;

#[cfg(feature = "postgres")]
#[async_trait]
impl StoreFactory for Postgres {
    async fn open(&self, url: &str) -> Result<DynBudgetStore> {
        let store = tokenbudget_postgres::PostgresStore::open(url).await?;
        Ok(Arc::new(store))
    }
}
