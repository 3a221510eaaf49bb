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
    // The batches in flight on the tree (`root_concurrency` of them) wait on the lock; every
    // other write has queued behind them.
    let in_flight = i64::try_from(config.root_concurrency.max(1)).unwrap();
    while common::locks::lock_waiters(&admin, &config.application_name).await < in_flight
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
    let keyed = common::reserve_keyed(&t, "wf:a", 10, &key).await;

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

/// The most trees (distinct roots) whose events one transaction wrote.
async fn most_trees_in_one_transaction(admin: &tokio_postgres::Client, schema: &str) -> i64 {
    let row = admin
        .query_one(
            &format!(
                "SELECT coalesce(max(n), 0) FROM (SELECT count(DISTINCT b.chain[cardinality(b.chain)]) AS n \
                 FROM \"{schema}\".events AS e JOIN \"{schema}\".budgets AS b ON b.id = e.budget_id \
                 GROUP BY e.xid) AS t"
            ),
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_spans_trees_and_a_refused_or_conflicting_write_on_one_leaves_the_others() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    // One batch at a time, so everything queued behind the first lands in one batch.
    let config = common::config(&url, &schema)
        .with_root_concurrency(1)
        .with_max_batches(1);
    let store: DynBudgetStore = Arc::new(PostgresStore::open_with(config.clone()).await.unwrap());
    let t = Tracker::new(store.clone());
    for (tree, limit) in [("a", 1_000), ("b", 50), ("c", 1_000)] {
        t.create_workflow(tree, limit).await.unwrap();
    }
    t.create_phase("a:p", "a", 500).await.unwrap();
    let key: IdempotencyKey = "k".parse().unwrap();
    let keyed = common::reserve_keyed(&t, "c", 10, &key).await;

    // The first write waits on a's lock alone; the others queue behind it, on three trees.
    let release = common::locks::hold_row_lock(&url, &schema, "a").await;
    let first = {
        let t = t.clone();
        tokio::spawn(async move { t.reserve("a", 1, ReserveOptions::new()).await.map(|_| ()) })
    };
    let admin = common::admin(&url).await;
    while common::locks::lock_waiters(&admin, &config.application_name).await < 1 {
        tokio::task::yield_now().await;
    }
    let started = Arc::new(AtomicUsize::new(0));
    let mut writes = Vec::new();
    for n in 0..9u64 {
        let (t, started, key) = (t.clone(), started.clone(), key.clone());
        let keyed = keyed.reservation.id;
        writes.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::SeqCst);
            match n {
                // More than b's limit: refused, whatever else b grants.
                0 => t
                    .reserve("b", 60, ReserveOptions::new())
                    .await
                    .map(|o| o.granted().map(|g| g.reservation.tokens)),
                // The key of c's hold with other numbers: a conflict.
                1 => t
                    .reserve("c", 11, ReserveOptions::new().with_idempotency_key(key))
                    .await
                    .map(|o| o.granted().map(|g| g.reservation.tokens)),
                // Bad input on c's hold.
                2 => t.commit(keyed, MAX_TOKENS + 1).await.map(|_| None),
                3 | 4 => t
                    .reserve("b", 20, ReserveOptions::new())
                    .await
                    .map(|o| o.granted().map(|g| g.reservation.tokens)),
                5 | 6 => t
                    .reserve("a:p", 100, ReserveOptions::new())
                    .await
                    .map(|o| o.granted().map(|g| g.reservation.tokens)),
                _ => t
                    .reserve("c", 30, ReserveOptions::new())
                    .await
                    .map(|o| o.granted().map(|g| g.reservation.tokens)),
            }
        }));
    }
    while started.load(Ordering::SeqCst) < writes.len() {
        tokio::task::yield_now().await;
    }
    // Let every write reach the gate's queue before the lock goes.
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    drop(release);
    first.await.unwrap().unwrap();
    let mut results = Vec::new();
    for write in writes {
        results.push(write.await.expect("a write panicked"));
    }
    for (n, result) in results.iter().enumerate() {
        match (n, result) {
            (0, Ok(None)) => {}
            (1, Err(Error::IdempotencyConflict { .. })) => {}
            (2, Err(Error::InvalidAmount { .. })) => {}
            (3 | 4, Ok(Some(20))) | (5 | 6, Ok(Some(100))) | (7 | 8, Ok(Some(30))) => {}
            (_, other) => panic!("write {n}: {other:?}"),
        }
    }
    let held = |id: &'static str| {
        let t = t.clone();
        async move {
            let s = t.status(id).await.unwrap();
            (s.reserved, s.held)
        }
    };
    assert_eq!(held("a").await, (1 + 200, 3));
    assert_eq!(held("b").await, (40, 2));
    assert_eq!(held("c").await, (10 + 60, 3));
    let trees = most_trees_in_one_transaction(&admin, &schema).await;
    assert!(
        trees >= 2,
        "no transaction wrote on more than one tree: the queued writes were not batched together"
    );
    workload::verify_consistency(&store, &admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_batching_across_the_same_trees_never_deadlock_or_overdraw() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let mut trackers = Vec::new();
    let mut stores: Vec<DynBudgetStore> = Vec::new();
    for n in 0..2 {
        let config = common::config(&url, &schema)
            .with_application_name(format!("tbt_{schema}_{n}"))
            .with_max_batches(2);
        let store: DynBudgetStore = Arc::new(PostgresStore::open_with(config).await.unwrap());
        trackers.push(Tracker::new(store.clone()));
        stores.push(store);
    }
    // Four trees of a root and two phases; the limits are tight enough that some reserves are
    // refused.
    let mut phases = Vec::new();
    for tree in 0..4 {
        let root = format!("t{tree}");
        trackers[0].create_workflow(&root, 3_000).await.unwrap();
        for phase in 0..2 {
            let id = format!("t{tree}:p{phase}");
            trackers[0].create_phase(&id, &root, 2_000).await.unwrap();
            phases.push(id);
        }
    }
    let phases = Arc::new(phases);
    let admin = common::admin(&url).await;
    let deadlocks_before = workload::deadlocks(&admin).await;
    let mut tasks = Vec::new();
    for (n, t) in trackers.iter().enumerate() {
        for task in 0..12usize {
            let (t, phases) = (t.clone(), phases.clone());
            tasks.push(tokio::spawn(async move {
                let (mut granted, mut refused) = (0u64, 0u64);
                let mut next = n * 31 + task * 7;
                for round in 0..25usize {
                    next = (next * 13 + round + 5) % phases.len();
                    let outcome = t
                        .reserve(&phases[next], 40, ReserveOptions::new())
                        .await
                        .expect("reserve failed");
                    let Some(grant) = outcome.granted() else {
                        refused += 1;
                        continue;
                    };
                    let id = grant.reservation.id;
                    if round % 4 == 0 {
                        t.rollback(id).await.expect("rollback failed");
                    } else {
                        t.commit(id, 3).await.expect("commit failed");
                        granted += 1;
                    }
                }
                (granted, refused)
            }));
        }
    }
    let mut committed = 0;
    for task in tasks {
        committed += task.await.expect("a task panicked").0;
    }
    let mut roots_used = 0;
    for tree in 0..4 {
        let s = trackers[1].status(&format!("t{tree}")).await.unwrap();
        assert_eq!((s.reserved, s.held), (0, 0), "tree t{tree} keeps holds");
        roots_used += s.used;
    }
    assert_eq!(
        roots_used,
        committed * 3,
        "a commit was lost or counted twice"
    );
    assert!(
        most_trees_in_one_transaction(&admin, &schema).await >= 2,
        "no batch spanned trees"
    );
    workload::verify_consistency(&stores[0], &admin, &schema).await;
    // The counter is flushed when backends exit or go idle.
    drop((stores, trackers));
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(
        workload::deadlocks(&admin).await,
        deadlocks_before,
        "Postgres detected a deadlock during the run"
    );
}
