//! Faults: backends terminated mid-workload, COMMIT replies lost, and callers that drop their
//! futures at random points.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::proxy::{through, upstream, Proxy};
use common::workload::{self, XorShift};
use tokenbudget_core::{
    BudgetId, DynBudgetStore, EventKind, EventQuery, ReservationId, ReservationState,
    ReserveOptions, Tracker,
};
use tokenbudget_postgres::PostgresStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_leave_no_partial_state_and_lose_no_acknowledged_operation() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let admin = common::admin(&url).await;
    let config = common::config(&url, &schema).with_max_attempts(10);
    let application_name = config.application_name.clone();
    let store: DynBudgetStore = Arc::new(PostgresStore::open_with(config).await.expect("open"));
    workload::create_budgets(&store, 3).await;

    // Terminate a backend of the store every 10-40 ms (the timeout argument makes each call
    // wait up to 1 s for the backend to be gone) until 30 are gone, while the workload runs.
    let kills = 30 * tokenbudget_core::testkit::soak_factor() as i64;
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (done, url, name) = (done.clone(), url.clone(), application_name.clone());
        tokio::spawn(async move {
            let admin = common::admin(&url).await;
            let mut rng = XorShift(0x5eed);
            let (mut rounds, mut killed) = (0u32, 0i64);
            while killed < kills {
                tokio::time::sleep(Duration::from_millis(10 + rng.below(30))).await;
                let row = admin
                    .query_one(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 1000)) FROM ( \
                             SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                             ORDER BY random() LIMIT 1) AS victim",
                        &[&name],
                    )
                    .await
                    .expect("terminate backends");
                killed += row.get::<_, i64>(0);
                rounds += 1;
            }
            done.store(true, Ordering::Relaxed);
            (rounds, killed)
        })
    };
    let ledger =
        workload::run_instance_until(store.clone(), 6, usize::MAX, done.clone(), 42, true).await;
    let (rounds, killed) = killer.await.expect("killer");
    eprintln!(
        "terminate rounds {rounds}, backends killed {killed}, grants {}, refusals {}, failed ops {}",
        ledger.acks.len(),
        ledger.refusals,
        ledger.errors
    );
    assert!(ledger.acks.len() >= 100, "too few grants acknowledged");

    // The same store recovers by itself: the next operations simply work. They go to a
    // budget created now, since the workload may have filled every one of its own.
    const AFTER: &str = "after-faults";
    let t = Tracker::new(store.clone());
    t.create_workflow(AFTER, 10)
        .await
        .expect("create after the faults");
    let grant = t
        .reserve(AFTER, 1, ReserveOptions::new())
        .await
        .expect("reserve after the faults")
        .into_result()
        .expect("room on the new budget");
    t.commit(grant.reservation.id, 1)
        .await
        .expect("commit after the faults");

    workload::final_sweep(&store).await;
    let mut ledger = ledger;
    ledger.acks.insert(
        grant.reservation.id,
        workload::Ack {
            budget: BudgetId::new(AFTER).unwrap(),
            tokens: 1,
            end: workload::End::Committed(1),
        },
    );
    workload::verify(&store, &admin, &schema, &ledger).await;
    assert_eq!(
        workload::sessions_in_transaction(&admin, &application_name).await,
        0
    );
}

async fn events_of(store: &DynBudgetStore, budget: &str) -> Vec<EventKind> {
    store
        .events(EventQuery::budget(BudgetId::new(budget).unwrap(), 0))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_reply_is_lost_is_recognised_on_retry_not_repeated() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let proxy = Proxy::start(upstream(&url)).await;
    let config = common::config(&through(&url, &proxy), &schema).with_pool_size(1);
    let store: DynBudgetStore = Arc::new(PostgresStore::open_with(config).await.expect("open"));
    let t = Tracker::new(store.clone());

    // create_budget: the retry finds the row its lost attempt wrote.
    proxy.arm();
    let created = t.create_workflow("amb", 1_000).await.expect("create");
    assert_eq!(proxy.fired(), 1, "the COMMIT reply was not lost");
    assert_eq!(created.limit, 1_000);
    assert_eq!(
        events_of(&store, "amb").await.len(),
        1,
        "one BUDGET_CREATED"
    );

    // reserve without an idempotency key: granted once, held once.
    proxy.arm();
    let grant = t
        .reserve("amb", 100, ReserveOptions::new())
        .await
        .expect("reserve")
        .into_result()
        .expect("granted");
    assert_eq!(proxy.fired(), 2);
    // The retry found its own earlier grant: answered as a replay, nothing more held.
    assert!(grant.replayed);
    let status = t.status("amb").await.unwrap();
    assert_eq!((status.reserved, status.held), (100, 1), "held twice");

    // reserve with an idempotency key: the same.
    proxy.arm();
    let keyed = t
        .reserve(
            "amb",
            50,
            ReserveOptions::new().with_idempotency_key("req-1".parse().unwrap()),
        )
        .await
        .expect("reserve with key")
        .into_result()
        .expect("granted");
    assert_eq!(proxy.fired(), 3);
    let status = t.status("amb").await.unwrap();
    assert_eq!((status.reserved, status.held), (150, 2), "held twice");

    // commit: the retry finds the commit that went through.
    proxy.arm();
    let committed = t.commit(grant.reservation.id, 70).await.expect("commit");
    assert_eq!(proxy.fired(), 4);
    assert_eq!(committed.reservation.actual, Some(70));
    assert!(committed.replayed, "the retry found the commit done");
    // rollback: the retry finds the hold already released.
    proxy.arm();
    let rolled_back = t.rollback(keyed.reservation.id).await.expect("rollback");
    assert_eq!(proxy.fired(), 5);
    assert_eq!(rolled_back.reservation.state, ReservationState::Released);
    assert_eq!(rolled_back.released, 0, "the retry found the hold released");

    let status = t.status("amb").await.unwrap();
    assert_eq!((status.used, status.reserved, status.held), (70, 0, 0));
    let kinds: Vec<&str> = events_of(&store, "amb")
        .await
        .iter()
        .map(EventKind::type_name)
        .collect();
    assert_eq!(
        kinds,
        [
            "BUDGET_CREATED",
            "TOKENS_RESERVED",
            "TOKENS_RESERVED",
            "TOKENS_COMMITTED",
            "TOKENS_RELEASED"
        ],
        "every operation happened exactly once"
    );
    let admin = common::admin(&url).await;
    workload::verify_consistency(&store, &admin, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_survives_a_thousand_cancelled_operations() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let config = common::config(&url, &schema)
        .with_pool_size(1)
        .with_wait_timeout(Duration::from_secs(60));
    let application_name = config.application_name.clone();
    let postgres = Arc::new(PostgresStore::open_with(config).await.expect("open"));
    let store: DynBudgetStore = postgres.clone();
    let t = Tracker::new(store.clone());
    t.create_workflow("wf", 1_000_000).await.unwrap();
    t.create_phase("wf:a", "wf", 500_000).await.unwrap();

    let mut rng = XorShift(0xC0FFEE);
    let mut granted: Vec<ReservationId> = Vec::new();
    let (mut cancelled, mut completed) = (0u32, 0u32);
    for _ in 0..1_000 {
        // Mostly shorter than an operation (zero: cancelled at its first wait, whatever the
        // machine's speed), one in eight without a deadline (it completes and drains the
        // queue), so both counts below hold on any machine.
        let deadline = match rng.below(8) {
            0 => Duration::MAX,
            1 | 2 => Duration::ZERO,
            _ => Duration::from_micros(rng.below(3_000)),
        };
        let pick = granted
            .get(rng.below(granted.len() as u64 + 1) as usize)
            .copied();
        let finished = match (rng.below(3), pick) {
            (0, Some(id)) => tokio::time::timeout(deadline, t.commit(id, 1))
                .await
                .map(|_| ()),
            (1, Some(id)) => tokio::time::timeout(deadline, t.rollback(id))
                .await
                .map(|_| ()),
            _ => tokio::time::timeout(deadline, t.reserve("wf:a", 1, ReserveOptions::new()))
                .await
                .map(|outcome| {
                    if let Ok(outcome) = outcome {
                        granted.extend(outcome.granted().map(|g| g.reservation.id));
                    }
                }),
        };
        match finished {
            Ok(()) => completed += 1,
            Err(_) => cancelled += 1,
        }
    }
    eprintln!("cancelled {cancelled}, completed {completed}");
    assert!(
        cancelled >= 150,
        "only {cancelled} operations were cancelled"
    );
    assert!(completed >= 50, "only {completed} operations completed");

    // Operations whose callers gave up still run to their end in their own task: wait until
    // the pool is idle and stays so.
    let mut quiet = 0;
    for _ in 0..600 {
        let status = postgres.pool_status();
        quiet = if status.waiting == 0 && status.available == status.size {
            quiet + 1
        } else {
            0
        };
        if quiet == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        quiet,
        5,
        "the pool never went idle: {:?}",
        postgres.pool_status()
    );
    let admin = common::admin(&url).await;
    assert_eq!(
        workload::sessions_in_transaction(&admin, &application_name).await,
        0,
        "a session was left inside a transaction"
    );
    let sessions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(sessions <= 1, "a pool of one has {sessions} sessions");

    // The next operation works, and nothing is half-written.
    let grant = t
        .reserve("wf:a", 5, ReserveOptions::new())
        .await
        .expect("reserve after the cancellations")
        .into_result()
        .expect("room");
    t.commit(grant.reservation.id, 5).await.expect("commit");
    workload::verify_consistency(&store, &admin, &schema).await;
}

/// Runs `op` again for as long as it fails with a retryable error (restoring the proxy before
/// each retry), as a caller that trusts `is_retryable()` would. Returns the final result and
/// how many times `op` ran.
async fn retrying<T, F, Fut>(proxy: &Proxy, mut op: F) -> (tokenbudget_core::Result<T>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = tokenbudget_core::Result<T>>,
{
    let mut runs = 0;
    loop {
        runs += 1;
        match op().await {
            Err(e) if e.is_retryable() && runs < 10 => proxy.restore(),
            other => return (other, runs),
        }
    }
}

/// The first attempt commits but its reply is lost; every retry then fails to connect. The
/// error must not invite a retry unless repeating the operation is safe, so a caller that
/// retries on `is_retryable()` never holds twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unknown_commit_outcome_only_safe_retries_are_invited() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let proxy = Proxy::start(upstream(&url)).await;
    let config = common::config(&through(&url, &proxy), &schema)
        .with_pool_size(1)
        .with_max_attempts(3)
        .with_retry_delays(Duration::from_millis(1), Duration::from_millis(5));
    let store: DynBudgetStore = Arc::new(PostgresStore::open_with(config).await.expect("open"));
    let t = Tracker::new(store.clone());
    t.create_workflow("wf", 1_000).await.unwrap();
    let held = |reserved, holds| {
        let t = t.clone();
        async move {
            let status = t.status("wf").await.unwrap();
            assert_eq!(
                (status.reserved, status.held),
                (reserved, holds),
                "held twice"
            );
        }
    };

    // Reserve without an idempotency key: a repeat would hold again, so no retry is invited.
    proxy.arm_and_cut();
    let (result, runs) = retrying(&proxy, || t.reserve("wf", 100, ReserveOptions::new())).await;
    proxy.restore();
    let err = result.unwrap_err();
    assert_eq!((runs, proxy.fired()), (1, 1), "{err}");
    assert!(!err.is_retryable(), "{err:?}");
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert!(err.to_string().contains("outcome is unknown"), "{err}");
    held(100, 1).await;

    // With a key, a repeat is a replay: retrying is invited and holds nothing more.
    proxy.arm_and_cut();
    let key: tokenbudget_core::IdempotencyKey = "req-1".parse().unwrap();
    let (result, runs) = retrying(&proxy, || {
        t.reserve(
            "wf",
            50,
            ReserveOptions::new().with_idempotency_key(key.clone()),
        )
    })
    .await;
    let grant = result.unwrap().into_result().unwrap();
    assert_eq!((runs, proxy.fired()), (2, 2));
    assert!(grant.replayed, "the retry found the first grant");
    held(150, 2).await;

    // Commit: an identical repeat is a replay.
    proxy.arm_and_cut();
    let (result, runs) = retrying(&proxy, || t.commit(grant.reservation.id, 30)).await;
    let committed = result.unwrap();
    assert_eq!((runs, proxy.fired()), (2, 3));
    assert!(committed.replayed);
    held(100, 1).await;

    // Create: a repeat by the caller cannot tell its own row from another's, so no retry is
    // invited; the budget exists once.
    proxy.arm_and_cut();
    let (result, runs) = retrying(&proxy, || t.create_workflow("wf2", 10)).await;
    proxy.restore();
    let err = result.unwrap_err();
    assert_eq!((runs, proxy.fired()), (1, 4));
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(
        events_of(&store, "wf2").await.len(),
        1,
        "one BUDGET_CREATED"
    );

    let admin = common::admin(&url).await;
    workload::verify_consistency(&store, &admin, &schema).await;
}
