//! Group commit: writes queued on one tree share one transaction, a rejected write fails alone,
//! and a batch whose COMMIT reply is lost is retried without anything happening twice.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::proxy::{through, upstream, Proxy};
use common::workload;
use tokenbudget_core::{
    DynBudgetStore, Error, IdempotencyKey, ReserveOptions, Tracker, MAX_TOKENS,
};
use tokenbudget_postgres::{Config, PostgresStore};

/// Transactions that wrote `type` events, and how many such events there are.
async fn transactions(admin: &tokio_postgres::Client, schema: &str, kind: &str) -> (i64, i64) {
    let row = admin
        .query_one(
            &format!(
                "SELECT count(DISTINCT xid), count(*) FROM \"{schema}\".events WHERE type = $1"
            ),
            &[&kind],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Queues `writes` (each run in a task of its own) behind a held lock on the root, so they all
/// wait in this process's queue, then releases the lock; returns their results.
async fn queued<T: Send + 'static>(
    url: &str,
    config: &Config,
    writes: Vec<tokio::task::JoinHandle<T>>,
    started: &AtomicUsize,
    release: tokio::sync::oneshot::Sender<()>,
) -> Vec<T> {
    let admin = common::admin(url).await;
    // The two batches in flight wait on the lock; every other write has queued behind them.
    while common::locks::lock_waiters(&admin, &config.application_name).await < 2
        || started.load(Ordering::SeqCst) < writes.len()
    {
        tokio::task::yield_now().await;
    }
    drop(release);
    let mut results = Vec::new();
    for write in writes {
        results.push(write.await.expect("a write panicked"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writes_share_a_transaction_and_a_rejected_one_fails_alone() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let config = common::config(&url, &schema);
    let store: DynBudgetStore = Arc::new(PostgresStore::open_with(config.clone()).await.unwrap());
    let t = Tracker::new(store.clone());
    t.create_workflow("wf", 1_000_000).await.unwrap();
    t.create_phase("wf:a", "wf", 100_000).await.unwrap();
    // Teaches the gate the tree, and leaves a key and a hold for the rejections below.
    let key: IdempotencyKey = "k".parse().unwrap();
    let keyed = t
        .reserve(
            "wf:a",
            10,
            ReserveOptions::new().with_idempotency_key(key.clone()),
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();

    let release = common::locks::hold_row_lock(&url, &schema, "wf").await;
    let started = Arc::new(AtomicUsize::new(0));
    let mut writes = Vec::new();
    for n in 0..24u64 {
        let (t, started, key) = (t.clone(), started.clone(), key.clone());
        let id = keyed.reservation.id;
        writes.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            match n {
                // The same key with other numbers: a conflict, for this write alone.
                5 => t
                    .reserve("wf:a", 11, ReserveOptions::new().with_idempotency_key(key))
                    .await
                    .map(|_| ()),
                // Bad input.
                9 => t.commit(id, MAX_TOKENS + 1).await.map(|_| ()),
                _ => t
                    .reserve("wf:a", 100, ReserveOptions::new())
                    .await
                    .map(|outcome| assert!(outcome.granted().is_some())),
            }
        }));
    }
    let results = queued(&url, &config, writes, &started, release).await;
    for (n, result) in results.iter().enumerate() {
        match (n, result) {
            (5, Err(Error::IdempotencyConflict { .. })) => {}
            (9, Err(Error::InvalidAmount { .. })) => {}
            (5 | 9, other) => panic!("write {n}: {other:?}"),
            (_, other) => assert!(other.is_ok(), "write {n}: {other:?}"),
        }
    }
    let status = t.status("wf:a").await.unwrap();
    assert_eq!((status.reserved, status.held), (10 + 22 * 100, 23));
    let admin = common::admin(&url).await;
    let (xids, reserves) = transactions(&admin, &schema, "TOKENS_RESERVED").await;
    // Two levels of the chain each get an event per grant.
    assert_eq!(reserves, 2 * 23);
    assert!(
        xids < 23 - 1,
        "23 grants in {xids} transactions: the queued ones were not batched"
    );
    workload::verify_consistency(&store, &admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_commit_reply_is_lost_is_retried_as_replays() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let proxy = Proxy::start(upstream(&url)).await;
    let config = common::config(&through(&url, &proxy), &schema);
    let store: DynBudgetStore = Arc::new(PostgresStore::open_with(config.clone()).await.unwrap());
    let t = Tracker::new(store.clone());
    t.create_workflow("wf", 1_000_000).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..6 {
        let grant = t.reserve("wf", 50, ReserveOptions::new()).await.unwrap();
        held.push(grant.into_result().unwrap().reservation.id);
    }

    // Reserves (with and without keys) and commits, queued together; the first COMMIT reply
    // after the lock is released is lost.
    let release = common::locks::hold_row_lock(&url, &schema, "wf").await;
    let started = Arc::new(AtomicUsize::new(0));
    let mut writes = Vec::new();
    for n in 0..18usize {
        let (t, started) = (t.clone(), started.clone());
        let commit = held.get(n / 3).copied().filter(|_| n % 3 == 0);
        writes.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            match commit {
                Some(id) => t.commit(id, 40).await.map(|c| c.reservation.actual),
                None => {
                    let opts = if n % 2 == 0 {
                        ReserveOptions::new().with_idempotency_key(format!("r{n}").parse().unwrap())
                    } else {
                        ReserveOptions::new()
                    };
                    t.reserve("wf", 100, opts)
                        .await
                        .map(|o| o.granted().map(|g| g.reservation.tokens))
                }
            }
        }));
    }
    proxy.arm();
    let results = queued(&url, &config, writes, &started, release).await;
    assert_eq!(proxy.fired(), 1, "no COMMIT reply was lost");
    let commits = results.iter().filter(|r| matches!(r, Ok(Some(40)))).count();
    let grants = results
        .iter()
        .filter(|r| matches!(r, Ok(Some(100))))
        .count();
    assert_eq!((commits, grants), (6, 12), "{results:?}");

    let status = t.status("wf").await.unwrap();
    assert_eq!(
        (status.used, status.reserved, status.held),
        (6 * 40, 12 * 100, 12),
        "a write of the batch happened twice or not at all"
    );
    let admin = common::admin(&url).await;
    assert_eq!(transactions(&admin, &schema, "TOKENS_COMMITTED").await.1, 6);
    assert_eq!(
        transactions(&admin, &schema, "TOKENS_RESERVED").await.1,
        6 + 12
    );
    workload::verify_consistency(&store, &admin, &schema).await;
}
