//! Group commit: operations queued together run in one transaction, each seeing the writes of
//! those before it although the batch writes them only at its end.
//!
//! The operations are started together with `tokio::join!` on a current-thread runtime: the
//! first takes the writer connection and spawns the batch's task, which cannot run before
//! `join!` has queued the others, so all of them land in one batch, in order.

use std::time::Duration;

use tokenbudget_core::rules::{CommitCommand, ReserveCommand, RollbackCommand};
use tokenbudget_core::testkit::{check_replay_matches_store, LogCheck};
use tokenbudget_core::{
    BudgetId, BudgetStore, IdempotencyKey, NewBudget, ReservationId, ReservationState, Timestamp,
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
    NewBudget {
        id: id(name),
        parent: parent.map(id),
        limit,
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
