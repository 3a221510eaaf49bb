//! The conformance suite on the memory store.

use std::sync::Arc;

use async_trait::async_trait;
use tokenbudget_ledger::testkit::UsageHarness;
use tokenbudget_ledger::{DynUsageStore, MemoryUsageStore};

struct Memory;

#[async_trait]
impl UsageHarness for Memory {
    async fn fresh(&self) -> DynUsageStore {
        Arc::new(MemoryUsageStore::new())
    }
    async fn same_database(&self, store: &DynUsageStore) -> DynUsageStore {
        store.clone()
    }
}

tokenbudget_ledger::usage_conformance_tests!(Memory);
