//! The whole-log cursor: a tailer that loops on it while writers run sees every event exactly
//! once, including an event whose transaction commits after one with a larger `seq`.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokenbudget_core::{
    BudgetStore, DynBudgetStore, Event, EventQuery, LogCursor, ReserveOptions, Tracker,
};
use tokenbudget_postgres::PostgresStore;

async fn open(url: &str, schema: &str) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::open_with(common::config(url, schema))
            .await
            .expect("open"),
    )
}

/// Pages through the log from `cursor` until a page comes back empty.
async fn drain(store: &PostgresStore, cursor: &mut LogCursor, seen: &mut Vec<Event>, limit: usize) {
    loop {
        let page = store.log_after(*cursor, limit).await.unwrap();
        let (events, next) = (page.events, page.next);
        if events.is_empty() {
            assert_eq!(next, *cursor, "an empty page moves the cursor");
            return;
        }
        assert!(next > *cursor, "the cursor went back");
        *cursor = next;
        seen.extend(events);
    }
}

/// Drains until `seen` holds `n` events. A transaction elsewhere on the server (another test's)
/// may hold the horizon back for a while; the bound only turns a hang into a failure.
async fn drain_to(store: &PostgresStore, cursor: &mut LogCursor, seen: &mut Vec<Event>, n: usize) {
    for _ in 0..60_000 {
        drain(store, cursor, seen, 100).await;
        if seen.len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("only {} of {n} events came through", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_after_a_later_seq_is_not_skipped() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let store = open(&url, &schema).await;
    let t = Tracker::new(store.clone() as DynBudgetStore);
    t.create_workflow("a", 1_000).await.unwrap();
    t.create_workflow("b", 1_000).await.unwrap();
    let (mut cursor, mut seen) = (LogCursor::START, Vec::new());
    drain_to(&store, &mut cursor, &mut seen, 2).await;

    // Another session takes the next seq and stays open; then the store writes (and commits)
    // events with larger seqs.
    let mut admin = common::admin(&url).await;
    let open_tx = admin.transaction().await.unwrap();
    let early: i64 = open_tx
        .query_one(
            &format!(
                "INSERT INTO \"{schema}\".events (budget_id, at, type, reservation_id, kind)
                 SELECT budget_id, at, type, reservation_id, kind FROM \"{schema}\".events
                 WHERE budget_id = 'b' RETURNING seq"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    t.reserve("a", 10, ReserveOptions::new()).await.unwrap();
    let by_seq = store
        .events(EventQuery {
            after_seq: 2,
            ..EventQuery::all()
        })
        .await
        .unwrap();
    assert!(
        by_seq.iter().all(|e| e.seq > early as u64) && !by_seq.is_empty(),
        "the seq order shows the later event first (what a seq cursor would skip past)"
    );
    // The cursor does not pass the open transaction's place.
    drain(&store, &mut cursor, &mut seen, 100).await;
    assert_eq!(
        seen.len(),
        2,
        "an event was read past a running transaction"
    );

    open_tx.commit().await.unwrap();
    drain_to(&store, &mut cursor, &mut seen, 4).await;
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, early as u64, early as u64 + 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailer_sees_every_event_exactly_once_while_writers_run() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    // Two stores (two pools), writers on many trees, so transactions commit out of seq order.
    let stores = [open(&url, &schema).await, open(&url, &schema).await];
    let budgets: Vec<String> = (0..8).map(|n| format!("w{n}")).collect();
    let t = Tracker::new(stores[0].clone() as DynBudgetStore);
    for budget in &budgets {
        t.create_workflow(budget.as_str(), 1_000_000).await.unwrap();
    }
    let running = Arc::new(AtomicBool::new(true));
    let tailer = tokio::spawn({
        let (store, running) = (stores[1].clone(), running.clone());
        async move {
            let (mut cursor, mut seen) = (LogCursor::START, Vec::new());
            while running.load(Ordering::SeqCst) {
                drain(&store, &mut cursor, &mut seen, 7).await;
                tokio::task::yield_now().await;
            }
            (cursor, seen)
        }
    });
    let rounds = 60 * tokenbudget_core::testkit::soak_factor();
    let mut writers = Vec::new();
    for w in 0..8usize {
        let t = Tracker::new(stores[w % 2].clone() as DynBudgetStore);
        let budgets = budgets.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..rounds {
                let budget = budgets[(w + round) % budgets.len()].as_str();
                let grant = t.reserve(budget, 5, ReserveOptions::new()).await.unwrap();
                let grant = grant.into_result().unwrap();
                t.commit(grant.reservation.id, 3).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a writer failed");
    }
    running.store(false, Ordering::SeqCst);
    let (mut cursor, mut seen) = tailer.await.unwrap();
    let all = stores[0].events(EventQuery::all()).await.unwrap();
    // Everything is committed now; a transaction elsewhere on the server may still hold the
    // horizon back for a moment (the bound only turns a hang into a failure).
    for _ in 0..60_000 {
        drain(&stores[1], &mut cursor, &mut seen, 7).await;
        if seen.len() >= all.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let distinct: BTreeSet<u64> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(distinct.len(), seen.len(), "an event was seen twice");
    let mut sorted = seen.clone();
    sorted.sort_by_key(|e| e.seq);
    assert_eq!(sorted, all, "the tailer missed events or saw changed ones");
    assert_eq!(all.len(), budgets.len() + 8 * rounds * 2);
    // Per budget, the cursor's order is the budget's seq order.
    for budget in &budgets {
        let mine: Vec<u64> = seen
            .iter()
            .filter(|e| e.budget_id.as_str() == budget)
            .map(|e| e.seq)
            .collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{budget}: {mine:?}");
    }
}
