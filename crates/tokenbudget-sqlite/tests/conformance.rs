//! The shared conformance suite and property tests, each on a fresh database file.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokenbudget_core::testkit::StoreHarness;
use tokenbudget_core::DynBudgetStore;
use tokenbudget_sqlite::SqliteStore;

/// A new database file per store, in a temporary directory removed with the harness.
#[derive(Default)]
struct FileHarness {
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

#[async_trait]
impl StoreHarness for FileHarness {
    async fn fresh_store(&self) -> DynBudgetStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("budgets.db");
        self.dirs.lock().unwrap().push(dir);
        let store = SqliteStore::open(path.to_str().expect("utf-8 temp path"))
            .await
            .expect("open a fresh database");
        Arc::new(store)
    }
}

tokenbudget_core::conformance_tests!(FileHarness::default());
