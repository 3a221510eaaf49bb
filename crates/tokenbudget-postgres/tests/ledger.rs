//! The usage ledger on Postgres: the UsageStore conformance suite, each test in its own
//! schema (dropped afterwards), and import + verify beside the budgets.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokenbudget_ledger::testkit::UsageHarness;
use tokenbudget_ledger::{DynUsageStore, UsageStore};
use tokenbudget_postgres::{Config, PostgresUsageStore};

/// Fresh schemas, dropped when the harness is.
#[derive(Default)]
struct SchemaHarness {
    schemas: Mutex<Vec<(String, String)>>,
}

impl SchemaHarness {
    fn url() -> String {
        common::require_database().unwrap_or_default()
    }
}

impl Drop for SchemaHarness {
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap());
        if schemas.is_empty() {
            return;
        }
        let url = schemas[0].0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = common::admin(&url).await;
                for (_, schema) in schemas {
                    let _ = admin
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn open(url: &str, schema: &str) -> PostgresUsageStore {
    let config = Config::new(url)
        .unwrap()
        .with_schema(schema)
        .with_pool_size(4);
    PostgresUsageStore::open_with(config).await.expect("open")
}

#[async_trait]
impl UsageHarness for SchemaHarness {
    async fn fresh(&self) -> DynUsageStore {
        let url = Self::url();
        let schema = common::unique_schema();
        let store = open(&url, &schema).await;
        self.schemas.lock().unwrap().push((url, schema));
        Arc::new(store)
    }

    async fn same_database(&self, _store: &DynUsageStore) -> DynUsageStore {
        let (url, schema) = self
            .schemas
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("fresh first");
        Arc::new(open(&url, &schema).await)
    }
}

// The shared suite's whole list, each test on a fresh schema; without a database (and not
// under CI=true) each test returns before it starts.
tokenbudget_ledger::usage_conformance_tests!({
    if common::require_database().is_none() {
        return;
    }
    SchemaHarness::default()
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_lives_beside_the_budgets_in_one_schema() {
    let Some(url) = common::require_database() else {
        return;
    };
    let harness = SchemaHarness::default();
    let ledger = harness.fresh().await;
    let (_, schema) = harness.schemas.lock().unwrap().last().cloned().unwrap();
    let budgets = tokenbudget_postgres::PostgresStore::open_with(
        Config::new(&url).unwrap().with_schema(&schema),
    )
    .await
    .expect("the budget store opens the same schema");
    drop(budgets);
    let tree = tempfile::tempdir().unwrap();
    let expected =
        tokenbudget_ledger::testkit::fixture::generate(tree.path(), &Default::default()).unwrap();
    let files = tokenbudget_ledger::discover::discover(tree.path(), "").unwrap();
    let s = tokenbudget_ledger::import(&*ledger, &files, Default::default(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(s.inserted, expected.total.records + expected.shadowed);
    let report = tokenbudget_ledger::verify(&*ledger, &files).await.unwrap();
    assert!(report.is_equal(), "{report:?}");
    assert_eq!(report.ledger, expected.total);
    assert_eq!(ledger.checkpoints().await.unwrap().len(), files.len());
}

/// Migration 8 marks the rows a sibling already shadows in a ledger written before it: the
/// schema is taken back to version 7 (column, index and version row as 0006 left them, the
/// bare record counted again by nothing), then opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_8_back_fills_the_shadowed_flag() {
    let Some(url) = common::require_database() else {
        return;
    };
    let harness = SchemaHarness::default();
    let ledger = harness.fresh().await;
    let (_, schema) = harness.schemas.lock().unwrap().last().cloned().unwrap();
    let keys = ["msg_1", "msg_1:req_1", "msg_10", "a", "a:b", "a:b:c"];
    let records: Vec<_> = keys
        .iter()
        .map(|k| tokenbudget_ledger::testkit::suite::record(k, 1, 1, "f"))
        .collect();
    ledger.write(&records, None).await.unwrap();
    drop(ledger);
    let admin = common::admin(&url).await;
    admin
        .batch_execute(&format!(
            "SET search_path TO \"{schema}\";
             DROP INDEX usage_records_aggregate;
             ALTER TABLE usage_records DROP COLUMN shadowed;
             CREATE INDEX usage_records_aggregate ON usage_records
                 (ts, model, project, session_id, budget)
                 INCLUDE (input, output, cache_write_5m, cache_write_1h, cache_read,
                          web_search_requests, web_fetch_requests, dedup_key);
             DELETE FROM tokenbudget_migrations WHERE version = 8;"
        ))
        .await
        .unwrap();
    let ledger = open(&url, &schema).await;
    let shadowed: Vec<String> = common::column(
        &admin,
        "SELECT dedup_key FROM usage_records WHERE shadowed ORDER BY dedup_key",
    )
    .await;
    assert_eq!(shadowed, ["a", "a:b", "msg_1"]);
    let counted: Vec<String> = ledger
        .records(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(counted, ["a:b:c", "msg_10", "msg_1:req_1"]);
}
