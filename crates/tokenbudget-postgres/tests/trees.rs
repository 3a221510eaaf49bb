//! Budget trees: a due hold anywhere in a tree is released before any decision on that tree
//! (root-first locking, then the due holds' chains), concurrent writers on sibling phases and
//! sweeps never deadlock, and with the database's clock hosts whose clocks disagree by minutes
//! neither expire each other's holds early nor overdraw.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::workload;
use tokenbudget_core::testkit::T0;
use tokenbudget_core::{
    BudgetId, Clock, DynBudgetStore, EventKind, EventQuery, ManualClock, ReleaseReason,
    ReservationState, ReserveOptions, Timestamp, Tracker,
};
use tokenbudget_postgres::{ClockSource, PostgresStore};

const MINUTE: Duration = Duration::from_secs(60);

async fn open(url: &str, schema: &str, clock: ClockSource) -> DynBudgetStore {
    Arc::new(
        PostgresStore::open_with(common::config(url, schema).with_clock(clock))
            .await
            .expect("open"),
    )
}

fn tracker_at(store: &DynBudgetStore, clock: &Arc<ManualClock>) -> Tracker {
    Tracker::builder(store.clone()).clock(clock.clone()).build()
}

/// The releases of reservations that expired, per budget.
async fn expiry_releases(store: &DynBudgetStore, budget: &str) -> usize {
    store
        .events(EventQuery::budget(BudgetId::new(budget).unwrap(), 0))
        .await
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::TokensReleased {
                    reason: ReleaseReason::Expired,
                    ..
                }
            )
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_hold_anywhere_in_the_tree_never_refuses() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let store = open(&url, &schema, ClockSource::Caller).await;
    let clock = Arc::new(ManualClock::new(T0));
    let t = tracker_at(&store, &clock);
    t.create_workflow("wf", 1_000).await.unwrap();
    t.create_phase("wf:a", "wf", 1_000).await.unwrap();
    t.create_phase("wf:a:x", "wf:a", 1_000).await.unwrap();
    t.create_phase("wf:b", "wf", 1_000).await.unwrap();

    // The reproduction: wf:a's hold expires, then wf:b asks for more than is left
    // while that hold counts.
    let crashed = t
        .reserve(
            "wf:a",
            800,
            ReserveOptions::new().with_timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();
    clock.advance(Duration::from_secs(2));
    let grant = t
        .reserve("wf:b", 500, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .expect("wf:a's expired hold refused wf:b");
    let wf = store
        .budget(&BudgetId::new("wf").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((wf.reserved, wf.held), (500, 1));
    let crashed = store
        .reservation(crashed.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(crashed.state, ReservationState::Expired);
    assert_eq!(expiry_releases(&store, "wf:a").await, 1);
    assert_eq!(expiry_releases(&store, "wf").await, 1);
    assert_eq!(expiry_releases(&store, "wf:b").await, 0);

    // A due hold two levels down a sibling branch, released by a commit on wf:b: its whole
    // chain (wf:a:x, wf:a, wf) is locked and released, once.
    let deep = t
        .reserve(
            "wf:a:x",
            400,
            ReserveOptions::new().with_timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();
    clock.advance(Duration::from_secs(2));
    t.commit(grant.reservation.id, 500).await.unwrap();
    let deep = store
        .reservation(deep.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deep.state, ReservationState::Expired);
    for (budget, releases) in [("wf:a:x", 1), ("wf:a", 2), ("wf", 2), ("wf:b", 0)] {
        assert_eq!(expiry_releases(&store, budget).await, releases, "{budget}");
    }
    // ... and by a rollback, and the refusal of a reserve that does not fit anyway.
    let held = t
        .reserve(
            "wf:a:x",
            100,
            ReserveOptions::new().with_timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();
    clock.advance(Duration::from_secs(2));
    let refused = t.reserve("wf:b", 600, ReserveOptions::new()).await.unwrap();
    assert_eq!(refused.refused().map(|r| r.available), Some(500));
    let held = store
        .reservation(held.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        held.state,
        ReservationState::Expired,
        "released by the refused reserve"
    );
    let admin = common::admin(&url).await;
    workload::verify_consistency(&store, &admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_sibling_phases_and_sweeps_across_trees_never_deadlock() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let admin = common::admin(&url).await;
    let clock = Arc::new(ManualClock::new(T0));
    // Two stores, so the in-process gate does not serialize everything.
    let stores = [
        open(&url, &schema, ClockSource::Caller).await,
        open(&url, &schema, ClockSource::Caller).await,
    ];
    let t = tracker_at(&stores[0], &clock);
    let trees = ["t1", "t2", "t3"];
    for tree in trees {
        t.create_workflow(tree, 1_000_000).await.unwrap();
        for phase in ["a", "b", "c"] {
            let id = format!("{tree}:{phase}");
            t.create_phase(id.as_str(), tree, 100_000).await.unwrap();
            t.create_phase(format!("{id}:x").as_str(), id.as_str(), 10_000)
                .await
                .unwrap();
        }
    }
    let deadlocks_before = workload::deadlocks(&admin).await;
    let rounds = 150 * tokenbudget_core::testkit::soak_factor();
    let mut tasks = Vec::new();
    for task in 0..6usize {
        let t = tracker_at(&stores[task % 2], &clock);
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                let n = task * 7 + round * 13;
                let tree = ["t1", "t2", "t3"][n % 3];
                let phase = ["a", "b", "c"][(n / 3) % 3];
                let budget = if n % 2 == 0 {
                    format!("{tree}:{phase}")
                } else {
                    format!("{tree}:{phase}:x")
                };
                // Short holds, abandoned every fourth round, so due holds on siblings are
                // always around for the next writer of the tree to release.
                let opts = ReserveOptions::new().with_timeout(Duration::from_millis(5));
                let grant = t.reserve(budget.as_str(), 10, opts).await.unwrap();
                clock.advance(Duration::from_millis(2));
                if let Some(grant) = grant.granted() {
                    match round % 4 {
                        0 => {}
                        1 => drop(t.rollback(grant.reservation.id).await.unwrap()),
                        _ => drop(t.commit(grant.reservation.id, 7).await.unwrap()),
                    }
                }
                if round % 10 == 0 {
                    t.store().sweep_expired(t.clock().now(), 5).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer failed");
    }
    clock.advance(MINUTE);
    while !stores[0]
        .sweep_expired(clock.now(), 1_000)
        .await
        .unwrap()
        .released
        .is_empty()
    {}
    for store in &stores {
        store.list_budgets().await.unwrap();
    }
    drop(stores);
    let store = open(&url, &schema, ClockSource::Caller).await;
    workload::verify_consistency(&store, &admin, &schema).await;
    assert_eq!(
        workload::deadlocks(&admin).await,
        deadlocks_before,
        "a deadlock happened"
    );
    for budget in store.list_budgets().await.unwrap() {
        assert_eq!((budget.reserved, budget.held), (0, 0), "{}", budget.id);
    }
}

/// Three hosts on one database: one with the right time, one ten minutes fast, one ten minutes
/// slow. Each passes its own clock; the store decides with the database's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_with_skewed_clocks_neither_expire_holds_early_nor_overdraw() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let now = tokenbudget_core::SystemClock.now();
    let skew = Duration::from_secs(10 * 60);
    let right = Arc::new(ManualClock::new(now));
    let fast = Arc::new(ManualClock::new(now.checked_add(skew).unwrap()));
    let slow = Arc::new(ManualClock::new(Timestamp::from_micros(
        now.as_micros() - skew.as_micros() as i64,
    )));
    let (one, two) = (
        open(&url, &schema, ClockSource::Database).await,
        open(&url, &schema, ClockSource::Database).await,
    );
    let (a, b, c) = (
        tracker_at(&one, &right),
        tracker_at(&two, &fast),
        tracker_at(&two, &slow),
    );
    a.create_workflow("wf", 1_000).await.unwrap();

    // A hold for a minute from the host with the right time. The fast host, for which that
    // minute ended nine minutes ago, neither expires it by reserving nor by sweeping.
    let first = a
        .reserve("wf", 600, ReserveOptions::new().with_timeout(MINUTE))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let refused = b.reserve("wf", 600, ReserveOptions::new()).await.unwrap();
    assert_eq!(
        refused.refused().map(|r| r.available),
        Some(400),
        "the fast host expired the hold early"
    );
    assert_eq!(
        b.store()
            .sweep_expired(fast.now(), 100)
            .await
            .unwrap()
            .released,
        []
    );
    let committed = a.commit(first.reservation.id, 600).await.unwrap();
    assert!(
        !committed.late,
        "the commit was made late by another host's clock"
    );

    // A hold from the slow host is stamped with the database's time, not with a time ten
    // minutes back whose minute-long hold would be due at once for everyone else.
    let slow_hold = c
        .reserve("wf", 300, ReserveOptions::new().with_timeout(MINUTE))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let stamped = slow_hold.reservation.created_at;
    let off = |t: Timestamp| stamped.as_micros().abs_diff(t.as_micros());
    assert!(
        off(slow.now()) > (skew / 2).as_micros() as u64,
        "stamped with the slow clock"
    );
    assert!(
        off(fast.now()) > (skew / 2).as_micros() as u64,
        "stamped with the fast clock"
    );
    assert_eq!(
        slow_hold.reservation.expires_at.as_micros() - stamped.as_micros(),
        MINUTE.as_micros() as i64
    );
    let refused = b.reserve("wf", 200, ReserveOptions::new()).await.unwrap();
    assert_eq!(
        refused.refused().map(|r| r.available),
        Some(100),
        "overdraft"
    );
    let slow_hold = one
        .reservation(slow_hold.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(slow_hold.state, ReservationState::Held);
    let wf = one
        .budget(&BudgetId::new("wf").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((wf.used, wf.reserved, wf.held), (600, 300, 1));
    // The live views and extend decide by the database's clock too: every host sees the slow
    // host's hold open, and the fast host, whose own clock calls it due, can still extend it.
    for t in [&a, &b, &c] {
        let live = t.status("wf").await.unwrap();
        assert_eq!((live.reserved, live.held), (300, 1), "{live:?}");
        let all = t.list().await.unwrap();
        assert_eq!((all[0].reserved, all[0].held), (300, 1));
    }
    let extended = b
        .extend(slow_hold.id, Duration::from_secs(120))
        .await
        .expect("the fast host extends a hold its own clock calls due");
    assert!(extended.reservation.expires_at > slow_hold.expires_at);

    // The control: deciding with the callers' clocks, the fast host does expire a hold early.
    let control = common::unique_schema();
    let _drop_control = common::SchemaGuard(url.clone(), control.clone());
    let caller = open(&url, &control, ClockSource::Caller).await;
    let (a, b) = (tracker_at(&caller, &right), tracker_at(&caller, &fast));
    a.create_workflow("wf", 1_000).await.unwrap();
    a.reserve("wf", 600, ReserveOptions::new().with_timeout(MINUTE))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let granted = b.reserve("wf", 600, ReserveOptions::new()).await.unwrap();
    assert!(
        granted.granted().is_some(),
        "with the callers' clocks the fast host expires the hold (this test's control)"
    );
}
