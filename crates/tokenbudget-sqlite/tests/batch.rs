//! Group commit: operations queued together run in one transaction, each seeing the writes of
//! those before it although the batch writes them only at its end.
//!
//! The operations are started together with `tokio::join!` on a current-thread runtime: the
//! first takes the writer connection and spawns the batch's task, which cannot run before
//! `join!` has queued the others, so all of them land in one batch, in order.

use std::time::Duration;

use tokenbudget_core::rules::{
    ChargeCommand, CommitCommand, ExtendCommand, ReserveCommand, RollbackCommand,
};
use tokenbudget_core::testkit::{check_replay_matches_store, LogCheck};
use tokenbudget_core::{
    BudgetId, BudgetStore, Error, EventQuery, IdempotencyKey, NewBudget, ReservationId,
    ReservationState, Timestamp,
};
use tokenbudget_sqlite::SqliteStore;

const T0: Timestamp = Timestamp::from_micros(1_735_689_600_000_000);

fn at(secs: i64) -> Timestamp {
    Timestamp::from_micros(T0.as_micros() + secs * 1_000_000)
}

fn id(s: &str) -> BudgetId {
    BudgetId::new(s).unwrap()
}

fn rid(n: u128) -> ReservationId {
    ReservationId::from_uuid(uuid::Uuid::from_u128(n))
}

fn reserve(n: u128, budget: &str, tokens: u64, timeout_secs: u64) -> ReserveCommand {
    ReserveCommand {
        reservation_id: rid(n),
        budget_id: id(budget),
        tokens,
        timeout: Duration::from_secs(timeout_secs),
        idempotency_key: None,
        model: None,
        asked: None,
    }
}

fn keyed(mut cmd: ReserveCommand, key: &str) -> ReserveCommand {
    cmd.idempotency_key = Some(IdempotencyKey::new(key).unwrap());
    cmd
}

fn commit(n: u128, actual: u64) -> CommitCommand {
    CommitCommand {
        reservation_id: rid(n),
        actual,
    }
}

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("batch.db").to_str().unwrap())
        .await
        .unwrap();
    (dir, store)
}

fn new_budget(name: &str, parent: Option<&str>, limit: u64) -> NewBudget {
    match parent {
        Some(parent) => NewBudget::child(id(name), id(parent), limit),
        None => NewBudget::workflow(id(name), limit),
    }
}

#[tokio::test]
async fn one_batch_sees_its_own_writes_to_existing_rows() {
    let (_dir, store) = open().await;
    store
        .create_budget(new_budget("b", None, 100), T0)
        .await
        .unwrap();
    // Held before the batch: r1 (30, to be committed twice), r2 (20, due at +5 s).
    for cmd in [reserve(1, "b", 30, 60), reserve(2, "b", 20, 5)] {
        assert!(store.reserve(cmd, T0).await.unwrap().granted().is_some());
    }

    let now = at(10);
    let (c1, c1_again, sweep_by_reserve, rb) = tokio::join!(
        store.commit(commit(1, 10), now),
        // The same commit again: the first one is only in the batch's memory so far.
        store.commit(commit(1, 10), now),
        // r2 is due: this reserve's rule releases it (once) on the way.
        store.reserve(reserve(3, "b", 40, 60), now),
        // r2 was released by expiry earlier in the batch: nothing more to release.
        store.rollback(
            RollbackCommand {
                reservation_id: rid(2)
            },
            now
        ),
    );
    let c1 = c1.unwrap();
    assert!(!c1.replayed && !c1.late);
    assert!(c1_again.unwrap().replayed, "the repeat is a replay");
    assert!(sweep_by_reserve.unwrap().granted().is_some());
    let rb = rb.unwrap();
    assert_eq!(rb.released, 0);
    assert_eq!(rb.reservation.state, ReservationState::Expired);

    // A second batch. Were the keyed retry not answered from the batch's memory, the write
    // at its end would break the idempotency key's unique index and the batch would run
    // again writing per operation: the answers below hold either way (the merge itself is
    // tested in `unit.rs`).
    let (first, retry, too_big) = tokio::join!(
        store.reserve(keyed(reserve(4, "b", 10, 60), "k"), now),
        // A retry under the same key with a new id: answered by r4, holding nothing more.
        store.reserve(keyed(reserve(5, "b", 10, 60), "k"), now),
        // 100 - 10 used - 40 - 10 held leaves 40.
        store.reserve(reserve(6, "b", 41, 60), now),
    );
    let first = first.unwrap().granted().cloned().unwrap();
    assert!(!first.replayed);
    let retry = retry.unwrap().granted().cloned().unwrap();
    assert!(retry.replayed, "the keyed retry is a replay");
    assert_eq!(retry.reservation.id, rid(4));
    let refusal = too_big.unwrap().refused().cloned().unwrap();
    assert_eq!(refusal.available, 40);

    let b = store.budget(&id("b")).await.unwrap().unwrap();
    assert_eq!((b.used, b.reserved), (10, 50));
    assert!(store.reservation(rid(5)).await.unwrap().is_none());
    check_replay_matches_store(&store, LogCheck { strict_limit: true })
        .await
        .unwrap();
}

#[tokio::test]
async fn one_batch_creates_then_uses_budgets_and_reservations() {
    let (_dir, store) = open().await;
    let now = T0;
    let (wf, phase, r1, c1, r2, over) = tokio::join!(
        store.create_budget(new_budget("wf", None, 100), now),
        store.create_budget(new_budget("phase", Some("wf"), 60), now),
        store.reserve(reserve(1, "phase", 50, 60), now),
        store.commit(commit(1, 20), now),
        store.reserve(reserve(2, "wf", 80, 60), now),
        // wf: 20 used + 80 held; nothing left on the workflow.
        store.reserve(reserve(3, "phase", 1, 60), now),
    );
    wf.unwrap();
    phase.unwrap();
    assert!(r1.unwrap().granted().is_some());
    assert_eq!(c1.unwrap().reservation.actual, Some(20));
    assert!(r2.unwrap().granted().is_some());
    let refusal = over.unwrap().refused().cloned().unwrap();
    assert_eq!((refusal.budget_id, refusal.available), (id("wf"), 0));

    let wf = store.budget(&id("wf")).await.unwrap().unwrap();
    let phase = store.budget(&id("phase")).await.unwrap().unwrap();
    assert_eq!((wf.used, wf.reserved), (20, 80));
    assert_eq!((phase.used, phase.reserved), (20, 0));
    check_replay_matches_store(&store, LogCheck { strict_limit: true })
        .await
        .unwrap();
}

fn released_events(events: &[tokenbudget_core::Event], budget: &str) -> usize {
    events
        .iter()
        .filter(|e| e.budget_id.as_str() == budget && e.kind.type_name() == "TOKENS_RELEASED")
        .count()
}

/// wf (100) > wf:a (100) > wf:a:x (100), wf:b (100).
async fn tree(store: &SqliteStore) {
    for (name, parent) in [
        ("wf", None),
        ("wf:a", Some("wf")),
        ("wf:a:x", Some("wf:a")),
        ("wf:b", Some("wf")),
    ] {
        store
            .create_budget(new_budget(name, parent, 100), T0)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn one_batch_releases_a_due_hold_on_another_branch_once_and_sees_it_released() {
    let (_dir, store) = open().await;
    tree(&store).await;
    // In the database: r1 on wf:a:x (80, due at +1 s).
    assert!(store
        .reserve(reserve(1, "wf:a:x", 80, 1), T0)
        .await
        .unwrap()
        .granted()
        .is_some());

    let now = at(2);
    let wf = id("wf");
    let (on_b, on_a, again_b, status) = tokio::join!(
        // Another branch: r1 counts on wf, and is released first.
        store.reserve(reserve(2, "wf:b", 90, 60), now),
        // r1 is released in the batch's memory only: this reserve must not release it again.
        store.reserve(reserve(3, "wf:a", 10, 60), now),
        // wf has 100 - 90 - 10 = 0 left.
        store.reserve(reserve(4, "wf:b", 1, 60), now),
        store.status(&wf, now),
    );
    assert!(on_b.unwrap().granted().is_some());
    assert!(on_a.unwrap().granted().is_some());
    let refusal = again_b.unwrap().refused().cloned().unwrap();
    assert_eq!((refusal.budget_id, refusal.available), (id("wf"), 0));
    // status reads outside the batch: before it (r1 left out, live) or after it.
    let status = status.unwrap().unwrap();
    assert!(status.held == 0 || status.held == 2, "{status:?}");

    let r1 = store.reservation(rid(1)).await.unwrap().unwrap();
    assert_eq!(r1.state, ReservationState::Expired);
    let events = store.events(EventQuery::all()).await.unwrap();
    for budget in ["wf", "wf:a", "wf:a:x"] {
        assert_eq!(released_events(&events, budget), 1, "{budget}");
    }
    let wf = store.budget(&id("wf")).await.unwrap().unwrap();
    assert_eq!((wf.used, wf.reserved, wf.held), (0, 100, 2));
    check_replay_matches_store(&store, LogCheck { strict_limit: true })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_hold_made_earlier_in_the_batch_that_is_due_for_a_later_operation_is_released_once() {
    let (_dir, store) = open().await;
    tree(&store).await;
    let (r1, r2, r3, r4) = tokio::join!(
        // Made in the batch, due one second later: the database never sees it held.
        store.reserve(reserve(1, "wf:a:x", 70, 1), T0),
        // Later: r1 (only in the batch's memory, on another branch) is due and released.
        store.reserve(reserve(2, "wf:b", 90, 60), at(2)),
        // Released already: not again.
        store.reserve(reserve(3, "wf:a", 10, 60), at(3)),
        store.reserve(reserve(4, "wf:a", 1, 60), at(3)),
    );
    assert!(r1.unwrap().granted().is_some());
    assert!(r2.unwrap().granted().is_some());
    assert!(r3.unwrap().granted().is_some());
    assert!(r4.unwrap().refused().is_some(), "wf is full");
    let r1 = store.reservation(rid(1)).await.unwrap().unwrap();
    assert_eq!(r1.state, ReservationState::Expired);
    let events = store.events(EventQuery::all()).await.unwrap();
    for budget in ["wf", "wf:a", "wf:a:x"] {
        assert_eq!(released_events(&events, budget), 1, "{budget}");
    }
    let x = store.budget(&id("wf:a:x")).await.unwrap().unwrap();
    assert_eq!((x.reserved, x.held), (0, 0));
    check_replay_matches_store(&store, LogCheck { strict_limit: true })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_extend_in_the_batch_keeps_a_hold_the_database_has_as_due_from_being_released() {
    let (_dir, store) = open().await;
    tree(&store).await;
    assert!(store
        .reserve(reserve(1, "wf:a", 60, 10), T0)
        .await
        .unwrap()
        .granted()
        .is_some());
    let extend = |secs| ExtendCommand {
        reservation_id: rid(1),
        timeout: Duration::from_secs(secs),
    };
    let (extended, refused, extended_again) = tokio::join!(
        // At +5 s r1 still holds: extended to +65 s.
        store.extend(extend(60), at(5)),
        // At +20 s the database still says r1 is due (+10 s); the batch says +65 s: it
        // holds, and the sibling finds only 40.
        store.reserve(reserve(2, "wf:b", 50, 60), at(20)),
        // And can be extended again (held, not due).
        store.extend(extend(100), at(20)),
    );
    let extended = extended.unwrap().reservation;
    assert_eq!(extended.expires_at, at(65));
    let refusal = refused.unwrap().refused().cloned().unwrap();
    assert_eq!((refusal.budget_id, refusal.available), (id("wf"), 40));
    assert_eq!(extended_again.unwrap().reservation.expires_at, at(120));
    let r1 = store.reservation(rid(1)).await.unwrap().unwrap();
    assert_eq!((r1.state, r1.expires_at), (ReservationState::Held, at(120)));
    let events = store.events(EventQuery::all()).await.unwrap();
    assert_eq!(released_events(&events, "wf"), 0);
    check_replay_matches_store(&store, LogCheck { strict_limit: true })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_charge_in_the_batch_is_replayed_or_refused_by_its_key_in_the_same_batch() {
    let (_dir, store) = open().await;
    tree(&store).await;
    let charge = |budget: &str, tokens| ChargeCommand {
        key: IdempotencyKey::new("usage-1").unwrap(),
        budget_id: id(budget),
        tokens,
        note: Some("imported".to_owned()),
    };
    let (first, replay, conflict, over) = tokio::join!(
        store.charge(charge("wf:a", 30), T0),
        // Only in the batch's memory so far: a replay, not a second row.
        store.charge(charge("wf:a", 30), at(1)),
        store.charge(charge("wf:b", 30), at(1)),
        // Another key, past wf:b's room after the first charge: recorded, an overrun on wf.
        store.charge(
            ChargeCommand {
                key: IdempotencyKey::new("usage-2").unwrap(),
                ..charge("wf:b", 90)
            },
            at(1)
        ),
    );
    let first = first.unwrap();
    assert!(!first.replayed);
    let replay = replay.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.charge, first.charge);
    assert!(matches!(conflict, Err(Error::ChargeConflict { .. })));
    assert_eq!(over.unwrap().overrun, 20);
    let stored = store
        .charge_by_key(&IdempotencyKey::new("usage-1").unwrap())
        .await
        .unwrap();
    assert_eq!(stored, Some(first.charge));
    let wf = store.budget(&id("wf")).await.unwrap().unwrap();
    assert_eq!(wf.used, 120);
    // Past the limit on purpose (a charge is a fact): no strict limit here.
    check_replay_matches_store(&store, LogCheck::default())
        .await
        .unwrap();
}
