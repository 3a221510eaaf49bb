//! The usage ledger on SQLite: the UsageStore conformance suite, each test on a fresh file,
//! and the importer on a generated tree with the budgets in the same database.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokenbudget_ledger::testkit::UsageHarness;
use tokenbudget_ledger::{DynUsageStore, UsageStore};
use tokenbudget_sqlite::SqliteUsageStore;

#[derive(Default)]
struct FileHarness {
    dirs: Mutex<Vec<(tempfile::TempDir, String)>>,
}

#[async_trait]
impl UsageHarness for FileHarness {
    async fn fresh(&self) -> DynUsageStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("budgets.db").display().to_string();
        let store = SqliteUsageStore::open(&path).await.expect("open");
        self.dirs.lock().unwrap().push((dir, path));
        Arc::new(store)
    }

    async fn same_database(&self, _store: &DynUsageStore) -> DynUsageStore {
        let path = self
            .dirs
            .lock()
            .unwrap()
            .last()
            .expect("a fresh store")
            .1
            .clone();
        Arc::new(SqliteUsageStore::open(&path).await.expect("open again"))
    }
}

tokenbudget_ledger::usage_conformance_tests!(FileHarness::default());

#[tokio::test]
async fn the_ledger_lives_beside_the_budgets_in_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("budgets.db").display().to_string();
    let budgets = tokenbudget_sqlite::SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        budgets.schema_version().await.unwrap(),
        tokenbudget_sqlite::SCHEMA_VERSION
    );
    let ledger = SqliteUsageStore::open(&path).await.unwrap();
    let tree = tempfile::tempdir().unwrap();
    let expected =
        tokenbudget_ledger::testkit::fixture::generate(tree.path(), &Default::default()).unwrap();
    let files = tokenbudget_ledger::discover::discover(tree.path(), "").unwrap();
    let s = tokenbudget_ledger::import(&ledger, &files, Default::default(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(s.inserted, expected.total.records + expected.shadowed);
    let report = tokenbudget_ledger::verify(&ledger, &files).await.unwrap();
    assert!(report.is_equal(), "{report:?}");
    assert_eq!(report.ledger, expected.total);
    assert_eq!(ledger.checkpoints().await.unwrap().len(), files.len());
}
