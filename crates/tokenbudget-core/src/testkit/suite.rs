//! The conformance suite: one public async function per behaviour, each on a fresh store.
//!
//! Every function panics with a message naming what broke; none sleeps on the clock (time is
//! moved with [`ManualClock`](crate::ManualClock)).

use std::time::Duration;

use crate::error::Error;
use crate::event::{EventKind, ReleaseReason};
use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::model::{NewBudget, ReservationState, Unit, MAX_DEPTH, MAX_TOKENS};
use crate::outcome::{Grant, RefusalReason};
use crate::period::{Period, Window};
use crate::store::{EventQuery, RecentQuery};
use crate::testkit::{check_replay_matches_store, tracker, LogCheck, StoreHarness, T0};
use crate::time::Clock;
use crate::tracker::{ReserveOptions, Tracker};

pub use crate::testkit::hammer::{hammer_hot_budget, hammer_workflow_with_phases};

fn id(s: &str) -> BudgetId {
    BudgetId::new(s).expect("valid test id")
}

async fn grant(tracker: &Tracker, budget: &str, tokens: u64) -> Grant {
    grant_with(tracker, budget, tokens, ReserveOptions::new()).await
}

async fn grant_with(
    tracker: &Tracker,
    budget: &str,
    tokens: u64,
    options: ReserveOptions,
) -> Grant {
    match tracker.reserve(budget, tokens, options).await {
        Ok(outcome) => outcome
            .into_result()
            .unwrap_or_else(|r| panic!("reserve {tokens} on {budget} refused: {r}")),
        Err(err) => panic!("reserve {tokens} on {budget} failed: {err}"),
    }
}

/// A grant that expires `secs` seconds after the clock's now.
async fn grant_expiring(tracker: &Tracker, budget: &str, tokens: u64, secs: u64) -> Grant {
    let options = ReserveOptions::new().with_timeout(Duration::from_secs(secs));
    grant_with(tracker, budget, tokens, options).await
}

async fn event_count(tracker: &Tracker) -> usize {
    tracker
        .store()
        .events(EventQuery::all())
        .await
        .expect("read events")
        .len()
}

async fn used_reserved(tracker: &Tracker, budget: &str) -> (u64, u64) {
    let status = tracker.status(budget).await.expect("status");
    (status.used, status.reserved)
}

async fn workflow_with_phases(tracker: &Tracker, limit: u64, phases: &[(&str, u64)]) {
    tracker
        .create_workflow("wf", limit)
        .await
        .expect("create wf");
    for (phase, phase_limit) in phases {
        tracker
            .create_phase(*phase, "wf", *phase_limit)
            .await
            .expect("create phase");
    }
}

async fn assert_replay(tracker: &Tracker, check: LogCheck) {
    if let Err(err) = check_replay_matches_store(tracker.store().as_ref(), check).await {
        panic!("{err}");
    }
}

/// Workflow and phase budgets are created with their limits, zero totals, and a
/// `BUDGET_CREATED` event naming the parent.
pub async fn create_workflow_and_phase(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    let wf = t.create_workflow("wf", 1_000).await.unwrap();
    assert_eq!(
        (wf.limit, wf.used, wf.reserved, wf.parent),
        (1_000, 0, 0, None)
    );
    assert_eq!(wf.created_at, T0);
    let phase = t.create_phase("wf:plan", "wf", 400).await.unwrap();
    assert_eq!(phase.parent, Some(id("wf")));

    let status = t.status("wf:plan").await.unwrap();
    assert_eq!(
        (
            status.limit,
            status.used,
            status.reserved,
            status.available,
            status.exhausted,
            status.held
        ),
        (400, 0, 0, 400, false, 0)
    );
    let events = t.events("wf:plan", 0).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].kind,
        EventKind::BudgetCreated {
            parent: Some(id("wf")),
            limit: 400,
            unit: Unit::Tokens,
            period: None,
        }
    );
    let listed: Vec<String> = t
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(listed, ["wf", "wf:plan"]);
}

/// Duplicate ids, unknown parents and limits outside `1..=i64::MAX` are typed errors that
/// write nothing.
pub async fn create_rejects_bad_input_and_writes_nothing(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    t.create_workflow("wf", 10).await.unwrap();
    let before = event_count(&t).await;

    let err = t.create_workflow("wf", 10).await.unwrap_err();
    assert!(
        matches!(err, Error::BudgetExists { ref id } if id.as_str() == "wf"),
        "{err}"
    );
    let err = t.create_phase("p", "nope", 10).await.unwrap_err();
    assert!(
        matches!(err, Error::ParentNotFound { ref parent, .. } if parent.as_str() == "nope"),
        "{err}"
    );
    for limit in [0, MAX_TOKENS + 1, u64::MAX] {
        let err = t.create_workflow("w2", limit).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidAmount { field: "limit", .. }),
            "{err}"
        );
    }
    let err = t.create_workflow("bad id!", 10).await.unwrap_err();
    assert!(matches!(err, Error::InvalidBudgetId { .. }), "{err}");

    assert_eq!(
        event_count(&t).await,
        before,
        "a rejected create wrote events"
    );
    assert_eq!(
        t.list().await.unwrap().len(),
        1,
        "a rejected create wrote a budget"
    );
    assert!(
        t.create_workflow("w2", MAX_TOKENS).await.is_ok(),
        "limit i64::MAX is valid"
    );
}

/// Chains deeper than workflow > phase hold on every level.
pub async fn deeper_chains_hold_on_every_level(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    t.create_workflow("a", 100).await.unwrap();
    t.create_phase("a.b", "a", 80).await.unwrap();
    t.create_phase("a.b.c", "a.b", 60).await.unwrap();
    let g = grant(&t, "a.b.c", 50).await;
    for level in ["a", "a.b", "a.b.c"] {
        assert_eq!(used_reserved(&t, level).await, (0, 50), "{level}");
    }
    t.commit(g.reservation.id, 20).await.unwrap();
    for level in ["a", "a.b", "a.b.c"] {
        assert_eq!(used_reserved(&t, level).await, (20, 0), "{level}");
    }
    // The middle level refuses when the leaf still has room.
    t.create_phase("a.b.d", "a.b", 1_000).await.unwrap();
    let refusal = t.reserve("a.b.d", 61, ReserveOptions::new()).await.unwrap();
    assert_eq!(refusal.refused().map(|r| r.budget_id.as_str()), Some("a.b"));
}

/// A chain deeper than `MAX_DEPTH` is refused with `HierarchyTooDeep`.
pub async fn hierarchy_depth_is_bounded(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    t.create_workflow("l1", 10).await.unwrap();
    for level in 2..=MAX_DEPTH {
        t.create_phase(format!("l{level}"), format!("l{}", level - 1), 10)
            .await
            .unwrap();
    }
    let err = t
        .create_phase(format!("l{}", MAX_DEPTH + 1), format!("l{MAX_DEPTH}"), 10)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::HierarchyTooDeep { depth, .. } if depth == MAX_DEPTH + 1),
        "{err}"
    );
    let leaf = format!("l{MAX_DEPTH}");
    grant(&t, &leaf, 10).await;
    assert_eq!(used_reserved(&t, "l1").await, (0, 10));
}

/// A phase reservation holds on the phase and the workflow, with one `TOKENS_RESERVED` per
/// level, and counts as held on both.
pub async fn reserve_holds_on_budget_and_every_ancestor(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 500), ("wf:b", 500)]).await;
    let g = grant(&t, "wf:a", 300).await;
    assert_eq!(g.reservation.state, ReservationState::Held);
    assert_eq!(g.reservation.tokens, 300);
    assert_eq!(g.reservation.budget_id, id("wf:a"));
    assert_eq!(
        g.reservation.expires_at,
        T0.checked_add(Duration::from_secs(60)).unwrap()
    );
    assert!(!g.replayed);

    let wf = t.status("wf").await.unwrap();
    assert_eq!((wf.reserved, wf.available, wf.held), (300, 700, 1));
    let a = t.status("wf:a").await.unwrap();
    assert_eq!((a.reserved, a.available, a.held), (300, 200, 1));
    assert_eq!(t.status("wf:b").await.unwrap().reserved, 0);

    for budget in ["wf", "wf:a"] {
        let events = t.events(budget, 0).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.budget_id, id(budget));
        assert!(
            matches!(&last.kind, EventKind::TokensReserved { reservation_id, origin, tokens: 300, .. }
                if *reservation_id == g.reservation.id && origin.as_str() == "wf:a"),
            "{budget}: {last:?}"
        );
    }
    let stored = t.store().reservation(g.reservation.id).await.unwrap();
    assert_eq!(stored, Some(g.reservation));
}

/// Lack of room is a refusal naming the budget nearest the target that lacks it, with the
/// amounts; nothing is held, and the only write is one `RESERVE_REFUSED` on that budget.
pub async fn refusal_names_the_budget_that_lacks_room(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 700), ("wf:b", 700)]).await;
    grant(&t, "wf:a", 600).await;
    let before = event_count(&t).await;

    let outcome = t.reserve("wf:a", 101, ReserveOptions::new()).await.unwrap();
    let refusal = outcome.refused().expect("phase a is short");
    assert_eq!(
        (
            refusal.budget_id.as_str(),
            refusal.requested,
            refusal.available
        ),
        ("wf:a", 101, 100)
    );

    let outcome = t.reserve("wf:b", 401, ReserveOptions::new()).await.unwrap();
    let refusal = outcome.refused().expect("the workflow is short");
    assert_eq!(
        (
            refusal.budget_id.as_str(),
            refusal.requested,
            refusal.available
        ),
        ("wf", 401, 400)
    );

    let events = t.store().events(EventQuery::all()).await.unwrap();
    let written: Vec<(&str, &EventKind)> = events[before..]
        .iter()
        .map(|e| (e.budget_id.as_str(), &e.kind))
        .collect();
    assert!(
        matches!(
            written.as_slice(),
            [
                ("wf:a", EventKind::ReserveRefused { requested: 101, available: 100, reason: RefusalReason::NoRoom, .. }),
                ("wf", EventKind::ReserveRefused { origin, requested: 401, available: 400, .. }),
            ] if origin.as_str() == "wf:b"
        ),
        "a refusal writes one RESERVE_REFUSED on the refusing budget: {written:?}"
    );
    assert_eq!(used_reserved(&t, "wf").await, (0, 600));
    assert_eq!(used_reserved(&t, "wf:b").await, (0, 0));
    // Exactly the rest fits.
    grant(&t, "wf:b", 400).await;
    assert_eq!(t.status("wf").await.unwrap().available, 0);
}

/// Zero or oversized amounts, unknown budgets and bad timeouts are typed errors that write
/// nothing.
pub async fn reserve_rejects_bad_input_and_writes_nothing(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    t.create_workflow("wf", 100).await.unwrap();
    let before = event_count(&t).await;
    for tokens in [0, MAX_TOKENS + 1, u64::MAX] {
        let err = t
            .reserve("wf", tokens, ReserveOptions::new())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidAmount {
                    field: "tokens",
                    ..
                }
            ),
            "{err}"
        );
    }
    let err = t
        .reserve("ghost", 1, ReserveOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BudgetNotFound { ref id } if id.as_str() == "ghost"),
        "{err}"
    );
    let err = t
        .reserve("bad id", 1, ReserveOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidBudgetId { .. }), "{err}");
    for timeout in [
        Duration::ZERO,
        Duration::from_secs(400 * 24 * 3600),
        Duration::MAX,
    ] {
        let err = t
            .reserve("wf", 1, ReserveOptions::new().with_timeout(timeout))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTimeout { .. }), "{err}");
    }
    assert_eq!(
        event_count(&t).await,
        before,
        "rejected reserves wrote events"
    );
    assert_eq!(used_reserved(&t, "wf").await, (0, 0));
    let err = t
        .commit(ReservationId::from_uuid(uuid::Uuid::nil()), MAX_TOKENS + 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidAmount {
                field: "actual",
                ..
            }
        ),
        "{err}"
    );
}

/// A commit of less than was reserved releases the difference on every level.
pub async fn commit_releases_the_unused_difference(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 500)]).await;
    let g = grant(&t, "wf:a", 300).await;
    let c = t.commit(g.reservation.id, 120).await.unwrap();
    assert_eq!(c.reservation.state, ReservationState::Committed);
    assert_eq!(c.reservation.actual, Some(120));
    assert_eq!((c.overrun, c.late, c.replayed), (0, false, false));
    for budget in ["wf", "wf:a"] {
        let s = t.status(budget).await.unwrap();
        assert_eq!((s.used, s.reserved, s.held), (120, 0, 0), "{budget}");
        let last = t.events(budget, 0).await.unwrap().pop().unwrap();
        assert!(
            matches!(
                last.kind,
                EventKind::TokensCommitted {
                    tokens: 120,
                    released: 300,
                    overrun: 0,
                    late: false,
                    ..
                }
            ),
            "{budget}: {last:?}"
        );
    }
    // Zero usage is a valid commit.
    let g = grant(&t, "wf:a", 10).await;
    t.commit(g.reservation.id, 0).await.unwrap();
    assert_eq!(used_reserved(&t, "wf").await, (120, 0));
}

/// Usage beyond the reservation is recorded in full and reported as overrun.
pub async fn commit_records_overrun_in_full(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 500)]).await;
    let g = grant(&t, "wf:a", 100).await;
    let c = t.commit(g.reservation.id, 650).await.unwrap();
    assert_eq!(c.overrun, 550);
    let a = t.status("wf:a").await.unwrap();
    assert_eq!(
        (a.used, a.reserved, a.available, a.exhausted),
        (650, 0, 0, true)
    );
    assert_eq!(used_reserved(&t, "wf").await, (650, 0));
    let events = t.events("wf:a", 0).await.unwrap();
    assert!(events.iter().any(|e| matches!(
        e.kind,
        EventKind::TokensCommitted {
            tokens: 650,
            overrun: 550,
            ..
        }
    )));
    // An overdrawn phase refuses everything.
    let outcome = t.reserve("wf:a", 1, ReserveOptions::new()).await.unwrap();
    assert_eq!(outcome.refused().map(|r| r.available), Some(0));
}

/// Repeating a commit with the same amount replays it; another amount is a conflict;
/// neither writes anything.
pub async fn commit_is_idempotent_and_conflicts_on_a_different_amount(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    t.create_workflow("wf", 1_000).await.unwrap();
    let g = grant(&t, "wf", 100).await;
    let first = t.commit(g.reservation.id, 80).await.unwrap();
    let before = event_count(&t).await;
    let again = t.commit(g.reservation.id, 80).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.reservation, first.reservation);
    let err = t.commit(g.reservation.id, 81).await.unwrap_err();
    assert!(
        matches!(err, Error::ReservationConflict { id, state: ReservationState::Committed, .. } if id == g.reservation.id),
        "{err}"
    );
    assert_eq!(event_count(&t).await, before);
    assert_eq!(used_reserved(&t, "wf").await, (80, 0));
}

/// Rollback releases the hold once; repeating it changes nothing; commit after rollback and
/// rollback after commit are conflicts.
pub async fn rollback_releases_once_and_conflicts_after_commit(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 500)]).await;
    let g = grant(&t, "wf:a", 200).await;
    let r = t.rollback(g.reservation.id).await.unwrap();
    assert_eq!(
        (r.reservation.state, r.released),
        (ReservationState::Released, 200)
    );
    for budget in ["wf", "wf:a"] {
        let s = t.status(budget).await.unwrap();
        assert_eq!((s.used, s.reserved, s.held), (0, 0, 0), "{budget}");
        let last = t.events(budget, 0).await.unwrap().pop().unwrap();
        assert!(
            matches!(
                last.kind,
                EventKind::TokensReleased {
                    tokens: 200,
                    reason: ReleaseReason::Rollback,
                    ..
                }
            ),
            "{last:?}"
        );
    }
    let before = event_count(&t).await;
    let again = t.rollback(g.reservation.id).await.unwrap();
    assert_eq!(
        (again.reservation.state, again.released),
        (ReservationState::Released, 0)
    );
    let err = t.commit(g.reservation.id, 10).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ReservationConflict {
                state: ReservationState::Released,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(event_count(&t).await, before);

    let g = grant(&t, "wf:a", 50).await;
    t.commit(g.reservation.id, 50).await.unwrap();
    let err = t.rollback(g.reservation.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ReservationConflict {
                state: ReservationState::Committed,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(used_reserved(&t, "wf").await, (50, 0));
}

/// Commit and rollback of an unknown reservation are `ReservationNotFound`; a malformed id
/// does not parse.
pub async fn unknown_reservation_is_a_typed_error(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    t.create_workflow("wf", 10).await.unwrap();
    let ghost: ReservationId = "6f1c2a52-3f4b-4c5d-8e9f-0a1b2c3d4e5f".parse().unwrap();
    let err = t.commit(ghost, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::ReservationNotFound { id } if id == ghost),
        "{err}"
    );
    let err = t.rollback(ghost).await.unwrap_err();
    assert!(
        matches!(err, Error::ReservationNotFound { id } if id == ghost),
        "{err}"
    );
    assert!(matches!(
        "6f1c2a52".parse::<ReservationId>(),
        Err(Error::InvalidReservationId { .. })
    ));
    assert_eq!(t.store().reservation(ghost).await.unwrap(), None);
}

/// `BUDGET_EXHAUSTED` is appended once, on each level whose usage reaches its limit.
pub async fn exhausted_event_is_appended_once(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 100)]).await;
    let g = grant(&t, "wf:a", 60).await;
    t.commit(g.reservation.id, 60).await.unwrap();
    let g = grant(&t, "wf:a", 40).await;
    t.commit(g.reservation.id, 40).await.unwrap();
    let g = t.reserve("wf", 5, ReserveOptions::new()).await.unwrap();
    t.commit(g.granted().unwrap().reservation.id, 5)
        .await
        .unwrap();
    // A further overrun on the exhausted phase does not repeat the event.
    let late = grant(&t, "wf", 1).await;
    t.commit(late.reservation.id, 1).await.unwrap();

    let exhausted = |events: Vec<crate::event::Event>| {
        events
            .into_iter()
            .filter(|e| matches!(e.kind, EventKind::BudgetExhausted { .. }))
            .collect::<Vec<_>>()
    };
    let phase = exhausted(t.events("wf:a", 0).await.unwrap());
    assert_eq!(phase.len(), 1);
    assert_eq!(
        phase[0].kind,
        EventKind::BudgetExhausted {
            used: 100,
            limit: 100
        }
    );
    assert!(exhausted(t.events("wf", 0).await.unwrap()).is_empty());
    assert!(t.status("wf:a").await.unwrap().exhausted);
    assert!(!t.status("wf").await.unwrap().exhausted);
}

/// A repeated idempotency key answers the first reservation and holds nothing more; the
/// same key with another amount or budget is a conflict; a refusal is not remembered.
pub async fn idempotency_key_replays_the_first_answer(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 500), ("wf:b", 500)]).await;
    let key = IdempotencyKey::new("req-42").unwrap();
    let options = ReserveOptions::new().with_idempotency_key(key.clone());
    let first = grant_with(&t, "wf:a", 100, options.clone()).await;
    assert_eq!(first.reservation.idempotency_key.as_ref(), Some(&key));
    let before = event_count(&t).await;
    let again = grant_with(&t, "wf:a", 100, options.clone()).await;
    assert!(again.replayed);
    assert_eq!(again.reservation, first.reservation);
    assert_eq!(used_reserved(&t, "wf").await, (0, 100));
    assert_eq!(event_count(&t).await, before);

    let err = t.reserve("wf:a", 101, options.clone()).await.unwrap_err();
    assert!(
        matches!(err, Error::IdempotencyConflict { existing, .. } if existing == first.reservation.id),
        "{err}"
    );
    let err = t.reserve("wf:b", 100, options.clone()).await.unwrap_err();
    assert!(matches!(err, Error::IdempotencyConflict { .. }), "{err}");

    // After a commit, the replay answers the reservation as it is now.
    t.commit(first.reservation.id, 90).await.unwrap();
    let replay = grant_with(&t, "wf:a", 100, options).await;
    assert_eq!(
        (replay.reservation.state, replay.replayed),
        (ReservationState::Committed, true)
    );

    // A refused reserve stores nothing: the same key is decided afresh once there is room.
    let big = ReserveOptions::new().with_idempotency_key(IdempotencyKey::new("big").unwrap());
    let outcome = t.reserve("wf:b", 600, big.clone()).await.unwrap();
    assert!(outcome.refused().is_some());
    let err = t.reserve("wf:b", 10, big).await;
    let granted = err
        .unwrap()
        .into_result()
        .expect("fresh decision with the same key");
    assert!(!granted.replayed);
}

/// Refusals and clamps are in the log and read back newest first across budgets: a refused
/// reserve appends `RESERVE_REFUSED` on the refusing budget (no room or closed) and still
/// writes the expiry releases it found; a grant for less than it `asked` appends
/// `RESERVE_CLAMPED` on its budget; `recent_events` pages them by `seq`, newest first.
pub async fn refusals_and_clamps_are_logged_and_read_newest_first(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 500), ("wf:b", 500)]).await;
    let clamped = grant_with(
        &t,
        "wf:a",
        400,
        ReserveOptions::new().with_asked(600).with_model("m-1"),
    )
    .await;
    // Asking for what was held is no clamp.
    grant_with(&t, "wf:b", 10, ReserveOptions::new().with_asked(10)).await;
    let refused = t.reserve("wf:a", 200, ReserveOptions::new()).await.unwrap();
    assert_eq!(refused.refused().map(|r| r.available), Some(100));
    // A refusal still writes the expiry releases it found on the way.
    let short = grant_expiring(&t, "wf:b", 300, 5).await;
    clock.advance(Duration::from_secs(5));
    let refused = t.reserve("wf", 700, ReserveOptions::new()).await.unwrap();
    assert_eq!(
        refused
            .refused()
            .map(|r| (r.budget_id.as_str(), r.available)),
        Some(("wf", 590))
    );
    let stored = t.store().reservation(short.reservation.id).await.unwrap();
    assert_eq!(
        stored.map(|r| r.state),
        Some(ReservationState::Expired),
        "the refused reserve's expiry release was written"
    );
    t.close("wf:b").await.unwrap();
    let closed = t.reserve("wf:b", 1, ReserveOptions::new()).await.unwrap();
    assert_eq!(
        closed.refused().map(|r| r.reason),
        Some(RefusalReason::Closed)
    );

    let store = t.store();
    let recent = store
        .recent_events(RecentQuery::refusals_and_clamps(10))
        .await
        .unwrap();
    let shape: Vec<(&str, &str, u64)> = recent
        .iter()
        .map(|e| {
            let amount = match &e.kind {
                EventKind::ReserveRefused { requested, .. } => *requested,
                EventKind::ReserveClamped { asked, .. } => *asked,
                other => panic!("not a refusal or clamp: {other:?}"),
            };
            (e.kind.type_name(), e.budget_id.as_str(), amount)
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("RESERVE_REFUSED", "wf:b", 1),
            ("RESERVE_REFUSED", "wf", 700),
            ("RESERVE_REFUSED", "wf:a", 200),
            ("RESERVE_CLAMPED", "wf:a", 600),
        ]
    );
    assert!(recent.windows(2).all(|w| w[0].seq > w[1].seq));
    assert!(matches!(
        &recent[3].kind,
        EventKind::ReserveClamped { reservation_id, asked: 600, tokens: 400, model: Some(m) }
            if *reservation_id == clamped.reservation.id && m == "m-1"
    ));
    assert!(matches!(
        &recent[0].kind,
        EventKind::ReserveRefused { reason: RefusalReason::Closed, origin, .. } if origin.as_str() == "wf:b"
    ));

    // Pages by `before`, without skipping or repeating.
    let first = store
        .recent_events(RecentQuery::refusals_and_clamps(3))
        .await
        .unwrap();
    let rest = store
        .recent_events(RecentQuery::refusals_and_clamps(3).before(first[2].seq))
        .await
        .unwrap();
    let paged: Vec<u64> = first.iter().chain(&rest).map(|e| e.seq).collect();
    let whole: Vec<u64> = recent.iter().map(|e| e.seq).collect();
    assert_eq!(paged, whole);
    // Any types; none, or an unknown one, matches nothing.
    let created = store
        .recent_events(RecentQuery::of(&["BUDGET_CREATED", "BUDGET_CLOSED"], 10))
        .await
        .unwrap();
    let ids: Vec<(&str, &str)> = created
        .iter()
        .map(|e| (e.kind.type_name(), e.budget_id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("BUDGET_CLOSED", "wf:b"),
            ("BUDGET_CREATED", "wf:b"),
            ("BUDGET_CREATED", "wf:a"),
            ("BUDGET_CREATED", "wf"),
        ]
    );
    for types in [&[][..], &["NOT_A_TYPE"][..]] {
        let none = store
            .recent_events(RecentQuery::of(types, 10))
            .await
            .unwrap();
        assert!(none.is_empty(), "{types:?}: {none:?}");
    }
    // Refusals and clamps change no state: the log still replays to the stored budgets.
    assert_replay(&t, LogCheck::default()).await;
}

/// A hold past its expiry is released by the next operation on its budget, in the same
/// transaction, with `TOKENS_RELEASED` (reason expired) on every level.
pub async fn expired_hold_is_released_by_the_next_operation(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 500)]).await;
    let short = ReserveOptions::new().with_timeout(Duration::from_secs(10));
    let g = grant_with(&t, "wf:a", 400, short).await;
    clock.advance(Duration::from_secs(9));
    assert!(t
        .reserve("wf:a", 200, ReserveOptions::new())
        .await
        .unwrap()
        .refused()
        .is_some());
    clock.advance(Duration::from_secs(1));
    // Due now: the next reserve on the phase releases it first and then fits.
    let next = grant(&t, "wf:a", 450).await;
    assert_eq!(used_reserved(&t, "wf:a").await, (0, 450));
    assert_eq!(used_reserved(&t, "wf").await, (0, 450));
    let stored = t
        .store()
        .reservation(g.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, ReservationState::Expired);
    for budget in ["wf", "wf:a"] {
        let released: Vec<_> = t
            .events(budget, 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::TokensReleased {
                        reason: ReleaseReason::Expired,
                        tokens: 400,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(released.len(), 1, "{budget}");
    }
    // An operation on the workflow releases holds made directly on it.
    let wf_hold = grant_expiring(&t, "wf", 100, 1).await;
    clock.advance(Duration::from_secs(2));
    t.rollback(next.reservation.id).await.unwrap();
    grant(&t, "wf", 1).await;
    let stored = t
        .store()
        .reservation(wf_hold.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, ReservationState::Expired);
    assert_eq!(used_reserved(&t, "wf").await, (0, 1));
    assert_replay(&t, LogCheck { strict_limit: true }).await;
}

/// A sweep releases every expired hold exactly once, however many sweeps run at once.
pub async fn sweep_releases_each_expired_hold_exactly_once(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 10_000, &[("wf:a", 5_000), ("wf:b", 5_000)]).await;
    let short = ReserveOptions::new().with_timeout(Duration::from_secs(5));
    for i in 0..20 {
        let phase = if i % 2 == 0 { "wf:a" } else { "wf:b" };
        grant_with(&t, phase, 10, short.clone()).await;
    }
    let keep = grant(&t, "wf:a", 7).await;
    assert_eq!(t.sweep_expired().await.unwrap(), 0, "nothing is due yet");
    clock.advance(Duration::from_secs(5));
    let sweeps: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move { t.sweep_expired().await })
        })
        .collect();
    let mut total = 0;
    for sweep in sweeps {
        total += sweep.await.expect("sweep task").expect("sweep");
    }
    assert_eq!(total, 20, "each expired hold released exactly once");
    assert_eq!(used_reserved(&t, "wf").await, (0, 7));
    assert_eq!(t.status("wf").await.unwrap().held, 1);
    let released = t
        .store()
        .events(EventQuery::all())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::TokensReleased {
                    reason: ReleaseReason::Expired,
                    ..
                }
            )
        })
        .count();
    assert_eq!(released, 40, "one release per level per reservation");
    let kept = t
        .store()
        .reservation(keep.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.state, ReservationState::Held);
    assert_replay(&t, LogCheck { strict_limit: true }).await;
}

/// A commit after expiry is recorded as usage, flagged late; the hold was released once.
pub async fn late_commit_is_recorded_as_usage(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 500)]).await;
    let short = ReserveOptions::new().with_timeout(Duration::from_secs(1));
    let swept = grant_with(&t, "wf:a", 100, short.clone()).await;
    let unswept = grant_with(&t, "wf:a", 50, short).await;
    clock.advance(Duration::from_secs(1));
    assert_eq!(t.sweep_expired().await.unwrap(), 2);
    let c = t.commit(swept.reservation.id, 120).await.unwrap();
    assert!(c.late);
    assert_eq!(c.overrun, 20);
    assert_eq!(c.reservation.state, ReservationState::Committed);
    assert!(c.reservation.is_late());
    assert_eq!(used_reserved(&t, "wf:a").await, (120, 0));
    assert_eq!(used_reserved(&t, "wf").await, (120, 0));

    // Expired but not yet released when the commit arrives: released and recorded in one go.
    let g = grant_expiring(&t, "wf:a", 30, 1).await;
    clock.advance(Duration::from_secs(3));
    let c = t.commit(g.reservation.id, 30).await.unwrap();
    assert!(c.late);
    assert_eq!(used_reserved(&t, "wf").await, (150, 0));
    let kinds: Vec<_> = t
        .events("wf:a", 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind.reservation_id() == Some(g.reservation.id))
        .map(|e| e.kind.type_name())
        .collect();
    assert_eq!(
        kinds,
        ["TOKENS_RESERVED", "TOKENS_RELEASED", "TOKENS_COMMITTED"]
    );
    // Replaying the late commit changes nothing.
    assert!(t.commit(g.reservation.id, 30).await.unwrap().replayed);
    assert_eq!(
        t.store()
            .reservation(unswept.reservation.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Expired
    );
    assert_replay(&t, LogCheck::default()).await;
}

/// Rolling back an expired reservation answers its state and releases nothing more.
pub async fn rollback_after_expiry_changes_nothing(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    t.create_workflow("wf", 100).await.unwrap();
    let g = grant_expiring(&t, "wf", 60, 1).await;
    clock.advance(Duration::from_secs(2));
    let r = t.rollback(g.reservation.id).await.unwrap();
    assert_eq!(
        (r.reservation.state, r.released),
        (ReservationState::Expired, 0)
    );
    let before = event_count(&t).await;
    let r = t.rollback(g.reservation.id).await.unwrap();
    assert_eq!(
        (r.reservation.state, r.released),
        (ReservationState::Expired, 0)
    );
    assert_eq!(event_count(&t).await, before);
    assert_eq!(used_reserved(&t, "wf").await, (0, 0));
}

/// Events come back in `seq` order, per budget, after a given `seq`.
pub async fn events_page_by_sequence_number(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 500)]).await;
    for _ in 0..3 {
        let g = grant(&t, "wf:a", 10).await;
        t.commit(g.reservation.id, 5).await.unwrap();
    }
    let all = t.events("wf:a", 0).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq strictly increases"
    );
    assert!(all.iter().all(|e| e.budget_id.as_str() == "wf:a"));
    let after = t.events("wf:a", all[3].seq).await.unwrap();
    assert_eq!(after, all[4..]);
    assert!(t.events("wf:a", all[6].seq).await.unwrap().is_empty());
    let page = t
        .store()
        .events(EventQuery {
            budget_id: None,
            after_seq: 0,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert!(matches!(
        t.events("nope", 0).await,
        Err(Error::BudgetNotFound { .. })
    ));
    let json = serde_json::to_value(&all[1]).unwrap();
    assert_eq!(json["type"], "TOKENS_RESERVED");
    assert_eq!(json["budget_id"], "wf:a");
}

/// Replaying the whole event log rebuilds every budget's stored state exactly.
pub async fn replay_of_the_log_equals_stored_state(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 5_000, &[("wf:a", 2_000), ("wf:b", 2_000)]).await;
    t.create_phase("wf:b:x", "wf:b", 500).await.unwrap();
    let a = grant(&t, "wf:a", 300).await;
    let b = grant(&t, "wf:b:x", 200).await;
    let c = grant_expiring(&t, "wf:b", 100, 1).await;
    t.commit(a.reservation.id, 350).await.unwrap();
    t.rollback(b.reservation.id).await.unwrap();
    grant(&t, "wf:a", 50).await;
    clock.advance(Duration::from_secs(2));
    t.sweep_expired().await.unwrap();
    t.commit(c.reservation.id, 90).await.unwrap();
    let budgets = check_replay_matches_store(t.store().as_ref(), LogCheck::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(budgets.len(), 4);
    let wf = budgets.iter().find(|b| b.id.as_str() == "wf").unwrap();
    assert_eq!((wf.used, wf.reserved, wf.held), (440, 50, 1));
}

/// What a store returns equals what was written: full UUIDs, microsecond times, amounts up
/// to `i64::MAX`.
pub async fn stored_values_round_trip_exactly(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    clock.advance(Duration::from_micros(123_457));
    t.create_workflow("big", MAX_TOKENS).await.unwrap();
    let g = grant_with(
        &t,
        "big",
        MAX_TOKENS,
        ReserveOptions::new()
            .with_timeout(Duration::from_micros(1_500_001))
            .with_idempotency_key(IdempotencyKey::new("k ~!@#$%^&*()").unwrap()),
    )
    .await;
    let stored = t
        .store()
        .reservation(g.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, g.reservation);
    assert_eq!(
        stored.created_at,
        T0.checked_add(Duration::from_micros(123_457)).unwrap()
    );
    assert_eq!(
        stored.expires_at.as_micros() - stored.created_at.as_micros(),
        1_500_001
    );
    let c = t.commit(g.reservation.id, MAX_TOKENS).await.unwrap();
    assert_eq!(
        t.store()
            .reservation(g.reservation.id)
            .await
            .unwrap()
            .unwrap(),
        c.reservation
    );
    let status = t.status("big").await.unwrap();
    assert_eq!(
        (status.used, status.reserved, status.exhausted),
        (MAX_TOKENS, 0, true)
    );
    let budget = t.store().budget(&id("big")).await.unwrap().unwrap();
    assert_eq!(budget.created_at, stored.created_at);
    // Usage past i64::MAX cannot be stored: a typed error that writes nothing.
    t.create_workflow("other", 10).await.unwrap();
    let first = grant(&t, "other", 1).await;
    let second = grant(&t, "other", 1).await;
    t.commit(first.reservation.id, MAX_TOKENS).await.unwrap();
    let before = event_count(&t).await;
    let err = t.commit(second.reservation.id, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::Overflow { field: "used", .. }),
        "{err}"
    );
    assert_eq!(event_count(&t).await, before);
    assert_eq!(used_reserved(&t, "other").await, (MAX_TOKENS, 1));
}

/// The background sweeper releases expired holds without any caller operation, and a
/// stopped one releases nothing more.
pub async fn background_sweeper_releases_expired_holds(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    t.create_workflow("wf", 100).await.unwrap();
    let g = grant_expiring(&t, "wf", 40, 1).await;
    let sweeper = t.spawn_sweeper(Duration::from_millis(5));
    let mut completed = sweeper.completed();
    clock.advance(Duration::from_secs(1));
    // A sweep that finishes as number seen + 2 started after the advance: the one in
    // progress when we looked (if any) finishes as seen + 1.
    let seen = *completed.borrow_and_update();
    let guard = tokio::time::timeout(
        Duration::from_secs(120),
        completed.wait_for(|n| *n >= seen + 2),
    );
    guard
        .await
        .expect("hang guard: the sweeper never completed a sweep")
        .expect("the sweeper stopped early");
    let stored = t.store().reservation(g.reservation.id).await.unwrap();
    assert_eq!(stored.unwrap().state, ReservationState::Expired);
    sweeper.stop().await;
    assert_eq!(used_reserved(&t, "wf").await, (0, 0));
    let raw = t.store().budget(&id("wf")).await.unwrap().unwrap();
    assert_eq!((raw.reserved, raw.held), (0, 0), "released in storage too");
    // Stopped (its task has ended): a newly expired hold stays held in storage until
    // someone writes or sweeps.
    let g = grant_expiring(&t, "wf", 10, 1).await;
    clock.advance(Duration::from_secs(1));
    let stored = t.store().reservation(g.reservation.id).await.unwrap();
    assert_eq!(stored.unwrap().state, ReservationState::Held);
}

fn count_kind(events: &[crate::event::Event], type_name: &str) -> usize {
    events
        .iter()
        .filter(|e| e.kind.type_name() == type_name)
        .count()
}

/// A hold that expired on one phase never refuses a reserve on a sibling, although it counts
/// on the workflow above both until released: the reserve releases it first (the CLI
/// scenario of issue 10), exactly once, and status never shows it as open.
pub async fn expired_hold_on_a_sibling_never_refuses(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 1_000), ("wf:b", 1_000)]).await;
    t.create_phase("wf:a:x", "wf:a", 1_000).await.unwrap();
    let a = grant_expiring(&t, "wf:a", 800, 1).await;
    clock.advance(Duration::from_secs(2));
    // Read before any write: the live view leaves the expired hold out everywhere.
    for budget in ["wf", "wf:a"] {
        let status = t.status(budget).await.unwrap();
        assert_eq!(
            (status.reserved, status.held, status.available),
            (0, 0, 1_000),
            "{budget}"
        );
    }
    let listed = t.list().await.unwrap();
    assert!(listed.iter().all(|s| s.reserved == 0 && s.held == 0));

    let b = grant(&t, "wf:b", 500).await;
    let stored = t.store().reservation(a.reservation.id).await.unwrap();
    assert_eq!(stored.unwrap().state, ReservationState::Expired);
    for budget in ["wf", "wf:a"] {
        let events = t.events(budget, 0).await.unwrap();
        assert_eq!(count_kind(&events, "TOKENS_RELEASED"), 1, "{budget}");
    }
    assert_eq!(used_reserved(&t, "wf").await, (0, 500));
    assert_eq!(used_reserved(&t, "wf:a").await, (0, 0));

    // Deeper: a due hold two levels down another branch is released by a commit on this one.
    let x = grant_expiring(&t, "wf:a:x", 400, 1).await;
    clock.advance(Duration::from_secs(2));
    t.commit(b.reservation.id, 500).await.unwrap();
    let stored = t.store().reservation(x.reservation.id).await.unwrap();
    assert_eq!(stored.unwrap().state, ReservationState::Expired);
    let raw = t.store().budget(&id("wf")).await.unwrap().unwrap();
    assert_eq!((raw.used, raw.reserved, raw.held), (500, 0, 0));
    // And it refuses nothing: the rest of the workflow is there.
    grant(&t, "wf:a:x", 500).await;
    // A late commit of the first hold is still recorded, flagged late.
    let late = t.commit(a.reservation.id, 10).await.unwrap();
    assert!(late.late);
    assert_replay(&t, LogCheck::default()).await;
}

/// extend pushes a held reservation's expiry later (never earlier), with an event on every
/// budget of the chain; a reservation past expiry, committed or rolled back cannot be
/// extended, and a refused extend writes nothing.
pub async fn extend_pushes_expiry_of_held_reservations_only(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 1_000), ("wf:b", 1_000)]).await;
    let g = grant_expiring(&t, "wf:a", 600, 10).await;
    clock.advance(Duration::from_secs(5));
    let extended = t
        .extend(g.reservation.id, Duration::from_secs(30))
        .await
        .unwrap();
    let want = clock.now().checked_add(Duration::from_secs(30)).unwrap();
    assert_eq!(extended.reservation.expires_at, want);
    assert_eq!(extended.reservation.state, ReservationState::Held);
    let stored = t.store().reservation(g.reservation.id).await.unwrap();
    assert_eq!(stored.unwrap(), extended.reservation);
    for budget in ["wf", "wf:a"] {
        let events = t.events(budget, 0).await.unwrap();
        assert_eq!(count_kind(&events, "RESERVATION_EXTENDED"), 1, "{budget}");
    }
    // A shorter timeout keeps the later expiry.
    let kept = t
        .extend(g.reservation.id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(kept.reservation.expires_at, want);
    // Past the original expiry it still holds: a sibling cannot take its room.
    clock.advance(Duration::from_secs(20));
    let refused = t.reserve("wf:b", 500, ReserveOptions::new()).await.unwrap();
    assert_eq!(refused.refused().map(|r| r.available), Some(400));
    let committed = t.commit(g.reservation.id, 600).await.unwrap();
    assert!(!committed.late);

    let before = event_count(&t).await;
    let conflict = |r: Result<_, Error>| matches!(r, Err(Error::ReservationConflict { .. }));
    assert!(conflict(
        t.extend(g.reservation.id, Duration::from_secs(5)).await
    ));
    let rolled = grant(&t, "wf:b", 10).await;
    t.rollback(rolled.reservation.id).await.unwrap();
    let before_rolled = event_count(&t).await;
    assert!(conflict(
        t.extend(rolled.reservation.id, Duration::from_secs(5))
            .await
    ));
    assert_eq!(event_count(&t).await, before_rolled);
    let due = grant_expiring(&t, "wf:b", 10, 1).await;
    clock.advance(Duration::from_secs(1));
    let before_due = event_count(&t).await;
    match t.extend(due.reservation.id, Duration::from_secs(5)).await {
        Err(Error::ReservationConflict { state, .. }) => {
            assert_eq!(state, ReservationState::Expired)
        }
        other => panic!("extend of an expired hold: {other:?}"),
    }
    assert_eq!(event_count(&t).await, before_due, "nothing written");
    let ghost = ReservationId::from_uuid(uuid::Uuid::from_u128(7));
    assert!(matches!(
        t.extend(ghost, Duration::from_secs(5)).await,
        Err(Error::ReservationNotFound { .. })
    ));
    let live = grant(&t, "wf:b", 10).await;
    assert!(matches!(
        t.extend(live.reservation.id, Duration::ZERO).await,
        Err(Error::InvalidTimeout { .. })
    ));
    assert!(event_count(&t).await > before);
    assert_replay(&t, LogCheck::default()).await;
}

/// charge records usage that had no reservation, once per key, even past the limit.
pub async fn charge_records_usage_once_even_past_the_limit(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 200), ("wf:b", 1_000)]).await;
    let key = IdempotencyKey::new("import:msg_01:req_01").unwrap();
    let first = t
        .charge("wf:a", 300, key.clone(), Some("imported".into()))
        .await
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.overrun, 100, "100 past wf:a's 200");
    assert_eq!(first.charge.tokens, 300);
    assert_eq!(first.charge.at, clock.now());
    assert_eq!(used_reserved(&t, "wf:a").await, (300, 0));
    assert_eq!(used_reserved(&t, "wf").await, (300, 0));
    assert!(t.status("wf:a").await.unwrap().exhausted);
    let a_events = t.events("wf:a", 0).await.unwrap();
    assert_eq!(count_kind(&a_events, "TOKENS_CHARGED"), 1);
    assert_eq!(count_kind(&a_events, "BUDGET_EXHAUSTED"), 1);
    let wf_events = t.events("wf", 0).await.unwrap();
    assert_eq!(count_kind(&wf_events, "TOKENS_CHARGED"), 1);
    assert_eq!(count_kind(&wf_events, "BUDGET_EXHAUSTED"), 0);
    let stored = t.store().charge_by_key(&key).await.unwrap().unwrap();
    assert_eq!(stored, first.charge);
    assert_eq!(stored.note.as_deref(), Some("imported"));

    let before = event_count(&t).await;
    clock.advance(Duration::from_secs(1));
    let again = t.charge("wf:a", 300, key.clone(), None).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.charge, first.charge);
    assert_eq!(used_reserved(&t, "wf").await, (300, 0));
    for (budget, tokens) in [("wf:a", 301), ("wf:b", 300)] {
        assert!(matches!(
            t.charge(budget, tokens, key.clone(), None).await,
            Err(Error::ChargeConflict { .. })
        ));
    }
    assert_eq!(
        event_count(&t).await,
        before,
        "replays and conflicts write nothing"
    );
    let other = IdempotencyKey::new("other").unwrap();
    assert!(matches!(
        t.charge("nope", 1, other.clone(), None).await,
        Err(Error::BudgetNotFound { .. })
    ));
    assert!(matches!(
        t.charge("wf:b", 1, other.clone(), Some("x".repeat(1025)))
            .await,
        Err(Error::InvalidNote { .. })
    ));
    assert!(t.store().charge_by_key(&other).await.unwrap().is_none());
    // A reservation's idempotency key is another key space.
    let reserve_key = ReserveOptions::new().with_idempotency_key(other.clone());
    grant_with(&t, "wf:b", 10, reserve_key).await;
    let fits = t.charge("wf:b", 5, other, None).await.unwrap();
    assert_eq!(fits.overrun, 0);
    // A charge releases the tree's expired holds first, like every write.
    let due = grant_expiring(&t, "wf:b", 100, 1).await;
    clock.advance(Duration::from_secs(1));
    let key3 = IdempotencyKey::new("k3").unwrap();
    t.charge("wf", 0, key3, None).await.unwrap();
    let stored = t.store().reservation(due.reservation.id).await.unwrap();
    assert_eq!(stored.unwrap().state, ReservationState::Expired);
    assert_replay(&t, LogCheck::default()).await;
}

/// A caller-chosen reservation id names the reservation, so a reserve whose answer was lost
/// can be retried as the same reservation or rolled back by id.
pub async fn caller_chosen_reservation_id_names_the_reservation(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    t.create_workflow("wf", 100).await.unwrap();
    let chosen: ReservationId = "0190a0f0-0000-7000-8000-00000000abcd".parse().unwrap();
    let options = || ReserveOptions::new().with_reservation_id(chosen);
    let first = grant_with(&t, "wf", 60, options()).await;
    assert_eq!(first.reservation.id, chosen);
    assert!(!first.replayed);
    let retry = grant_with(&t, "wf", 60, options()).await;
    assert!(retry.replayed, "the same id again is the same reservation");
    assert_eq!(used_reserved(&t, "wf").await, (0, 60));
    let before = event_count(&t).await;
    assert!(t.reserve("wf", 30, options()).await.is_err());
    assert_eq!(event_count(&t).await, before);
    assert_eq!(t.rollback(chosen).await.unwrap().released, 60);
    assert_eq!(used_reserved(&t, "wf").await, (0, 0));
}

/// A reader tailing the whole log with `log_after` while writers run sees every event exactly
/// once, in an order that never goes back.
pub async fn log_tail_sees_every_event_exactly_once(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    let trees = 4;
    for i in 0..trees {
        t.create_workflow(format!("wf{i}").as_str(), 1_000_000)
            .await
            .unwrap();
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tailer = {
        let (t, done) = (t.clone(), done.clone());
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (crate::store::LogCursor::START, Vec::new());
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = t.log_after(cursor, 7).await.expect("log_after");
                assert!(page.next >= cursor, "the cursor never goes back");
                cursor = page.next;
                let empty = page.events.is_empty();
                seen.extend(page.events.into_iter().map(|e| e.seq));
                // Writers were done before this page was read, and the page was empty: the
                // end, once the tail has reached the log's last event. (An empty page alone is
                // not: Postgres pauses the tail while any transaction on the server that began
                // earlier is still open, another test's included.)
                if finished && empty {
                    let last = t
                        .store()
                        .events(EventQuery::all())
                        .await
                        .expect("events")
                        .last()
                        .map(|e| e.seq);
                    if last.is_none_or(|last| seen.contains(&last)) {
                        return seen;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = (0..trees)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move {
                let budget = format!("wf{i}");
                for n in 0..25u64 {
                    let g = grant(&t, &budget, 10 + n).await;
                    if n % 3 == 0 {
                        t.rollback(g.reservation.id).await.unwrap();
                    } else {
                        t.commit(g.reservation.id, n).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = tokio::time::timeout(std::time::Duration::from_secs(120), tailer)
        .await
        .expect("the tail reaches the last event")
        .unwrap();
    let total = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), total, "no event seen twice");
    let all: Vec<u64> = t
        .store()
        .events(EventQuery::all())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seen, all, "every event seen");
}

fn at(text: &str) -> crate::Timestamp {
    crate::Timestamp::parse(text).expect("valid test time")
}

async fn create_periodic(t: &Tracker, id_: &str, parent: Option<&str>, limit: u64, period: &str) {
    let new = match parent {
        None => NewBudget::workflow(id(id_), limit),
        Some(p) => NewBudget::child(id(id_), id(p), limit),
    };
    let period: Period = period.parse().expect("valid test period");
    t.create_budget(new.with_period(period))
        .await
        .unwrap_or_else(|e| panic!("create {id_}: {e}"));
}

async fn resets(t: &Tracker, budget: &str) -> Vec<EventKind> {
    t.events(budget, 0)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| matches!(k, EventKind::BudgetReset { .. }))
        .collect()
}

/// A periodic budget starts again at 0 when its window ends, lazily: `status` shows the
/// current window before any write, the next write stores it with one `BUDGET_RESET` for
/// the window that closed (however many windows passed), and replay equals the store.
pub async fn periodic_budget_rolls_over_lazily_once(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    // T0 is 2025-01-01T00:00:00Z.
    create_periodic(&t, "wf", None, 1_000, "daily").await;
    let day1 = Window {
        start: at("2025-01-01T00:00:00Z"),
        end: at("2025-01-02T00:00:00Z"),
    };
    assert_eq!(t.status("wf").await.unwrap().window, Some(day1));
    clock.advance(Duration::from_secs(6 * 3600));
    let g = grant(&t, "wf", 900).await;
    t.commit(g.reservation.id, 800).await.unwrap();
    let refused = t.reserve("wf", 300, ReserveOptions::new()).await.unwrap();
    assert_eq!(
        refused.refused().map(|r| (r.available, r.reason)),
        Some((200, RefusalReason::NoRoom)),
        "the window's limit binds within the window"
    );

    // Three days later, no traffic in between: the status already shows the new window.
    clock.set(at("2025-01-04T09:30:00Z"));
    let status = t.status("wf").await.unwrap();
    let day4 = Window {
        start: at("2025-01-04T00:00:00Z"),
        end: at("2025-01-05T00:00:00Z"),
    };
    assert_eq!(
        (status.used, status.available, status.window),
        (0, 1_000, Some(day4))
    );
    assert!(resets(&t, "wf").await.is_empty(), "a read writes nothing");
    assert_eq!(
        t.list().await.unwrap()[0],
        status,
        "list agrees with status"
    );

    grant(&t, "wf", 1_000).await;
    assert_eq!(
        resets(&t, "wf").await,
        [EventKind::BudgetReset {
            window_start: day1.start,
            window_end: day1.end,
            used: 800,
            next_start: day4.start,
        }],
        "one reset to the current window, not one per window that passed"
    );
    let stored = t.store().budget(&id("wf")).await.unwrap().unwrap();
    assert_eq!((stored.used, stored.window_start), (0, Some(day4.start)));
    assert_replay(&t, LogCheck::default()).await;
}

/// A hold made in a window that closed still holds in the next one until it is settled; its
/// commit counts in the window in which it is committed.
pub async fn holds_cross_windows_and_commits_count_where_committed(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    create_periodic(&t, "wf", None, 100, "1h").await;
    let spent = grant(&t, "wf", 30).await;
    t.commit(spent.reservation.id, 30).await.unwrap();
    clock.advance(Duration::from_secs(50 * 60));
    let open = grant_expiring(&t, "wf", 60, 3 * 3600).await;
    clock.advance(Duration::from_secs(20 * 60)); // into the second hour
    let status = t.status("wf").await.unwrap();
    assert_eq!(
        (status.used, status.reserved, status.held, status.available),
        (0, 60, 1, 40),
        "the hold made last window still holds"
    );
    let refused = t.reserve("wf", 41, ReserveOptions::new()).await.unwrap();
    assert!(
        refused.refused().is_some(),
        "the carried hold counts against the new window"
    );
    t.commit(open.reservation.id, 55).await.unwrap();
    let status = t.status("wf").await.unwrap();
    assert_eq!((status.used, status.reserved, status.held), (55, 0, 0));
    assert_eq!(
        resets(&t, "wf").await,
        [EventKind::BudgetReset {
            window_start: T0,
            window_end: at("2025-01-01T01:00:00Z"),
            used: 30,
            next_start: at("2025-01-01T01:00:00Z"),
        }]
    );
    assert_replay(&t, LogCheck::default()).await;
}

/// Each budget of a chain has its own period: a monthly workflow with daily phases rolls
/// the phase over every day while the workflow keeps counting the month.
pub async fn each_budget_of_a_chain_has_its_own_period(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    create_periodic(&t, "wf", None, 1_000, "monthly").await;
    create_periodic(&t, "wf:day", Some("wf"), 400, "daily").await;
    t.create_phase("wf:life", "wf", 10_000).await.unwrap();
    for day in 0..3u64 {
        clock.set(
            T0.checked_add(Duration::from_secs(day * 86_400 + 3_600))
                .unwrap(),
        );
        let g = grant(&t, "wf:day", 400).await;
        t.commit(g.reservation.id, 300).await.unwrap();
        assert_eq!(used_reserved(&t, "wf:day").await, (300, 0), "day {day}");
    }
    assert_eq!(used_reserved(&t, "wf").await, (900, 0));
    // Day 4: the phase has room, the month does not.
    clock.set(at("2025-01-04T01:00:00Z"));
    let refused = t
        .reserve("wf:day", 200, ReserveOptions::new())
        .await
        .unwrap();
    assert_eq!(
        refused
            .refused()
            .map(|r| (r.budget_id.as_str().to_owned(), r.available)),
        Some(("wf".to_owned(), 100))
    );
    assert_eq!(resets(&t, "wf").await, []);
    assert_eq!(resets(&t, "wf:day").await.len(), 3);
    // February: the month starts again.
    clock.set(at("2025-02-01T00:00:00Z"));
    grant(&t, "wf:life", 1_000).await;
    let wf = t.status("wf").await.unwrap();
    assert_eq!(
        (wf.used, wf.reserved, wf.window.map(|w| w.end)),
        (0, 1_000, Some(at("2025-03-01T00:00:00Z")))
    );
    assert_eq!(t.status("wf:life").await.unwrap().window, None);
    assert_replay(&t, LogCheck::default()).await;
}

/// A `usd` budget counts micro-dollars; its children count in its unit (another is
/// `UnitMismatch`, writing nothing); refusals name the unit; a reservation keeps its model.
pub async fn usd_budgets_keep_one_unit_per_chain(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    let usd = |id_: &str, parent: Option<&str>, micros: u64| {
        let new = match parent {
            None => NewBudget::workflow(id(id_), micros),
            Some(p) => NewBudget::child(id(id_), id(p), micros),
        };
        new.with_unit(Unit::Usd)
    };
    t.create_budget(usd("team", None, 20_000_000))
        .await
        .unwrap();
    t.create_budget(usd("team:a", Some("team"), 5_000_000))
        .await
        .unwrap();
    let before = event_count(&t).await;
    let err = t
        .create_budget(NewBudget::child(id("team:t"), id("team"), 100))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::UnitMismatch {
                unit: Unit::Tokens,
                parent_unit: Unit::Usd,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        event_count(&t).await,
        before,
        "a refused create writes nothing"
    );
    assert_eq!(t.status("team:a").await.unwrap().unit, Unit::Usd);

    let g = grant_with(
        &t,
        "team:a",
        1_250_000,
        ReserveOptions::new().with_model("claude-sonnet-4-5"),
    )
    .await;
    let stored = t
        .store()
        .reservation(g.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.model.as_deref(), Some("claude-sonnet-4-5"));
    let refused = t
        .reserve("team:a", 4_000_000, ReserveOptions::new())
        .await
        .unwrap()
        .refused()
        .cloned()
        .expect("no room for $4 of the $3.75 left");
    assert_eq!((refused.unit, refused.available), (Unit::Usd, 3_750_000));
    assert_eq!(
        refused.to_string(),
        "budget team:a has $3.75 available; $4.00 were requested"
    );
    let bad = t
        .reserve("team:a", 1, ReserveOptions::new().with_model(""))
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::InvalidModel { .. }), "{bad}");
    assert_replay(&t, LogCheck::default()).await;
}

/// `update_budget` raises or lowers a limit (below what is used too) with `BUDGET_UPDATED`;
/// closing refuses new reservations on the budget and below it while held ones still commit
/// and charges still land; reopening grants again; a no-op writes nothing.
pub async fn update_changes_limits_and_close_refuses_new_holds(h: &dyn StoreHarness) {
    let (t, _) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 1_000, &[("wf:a", 600)]).await;
    let g = grant(&t, "wf:a", 300).await;
    t.commit(g.reservation.id, 300).await.unwrap();
    let lowered = t.update_limit("wf", 200).await.unwrap();
    assert_eq!((lowered.limit, lowered.used), (200, 300));
    let status = t.status("wf").await.unwrap();
    assert_eq!((status.available, status.exhausted), (0, true));
    assert!(t
        .reserve("wf:a", 1, ReserveOptions::new())
        .await
        .unwrap()
        .refused()
        .is_some());
    t.update_limit("wf", 2_000).await.unwrap();
    let held = grant(&t, "wf:a", 100).await;

    t.close("wf").await.unwrap();
    let refused = t.reserve("wf:a", 10, ReserveOptions::new()).await.unwrap();
    assert_eq!(
        refused
            .refused()
            .map(|r| (r.budget_id.as_str().to_owned(), r.reason)),
        Some(("wf".to_owned(), RefusalReason::Closed)),
        "a closed workflow refuses its phases' reserves"
    );
    assert!(t.status("wf").await.unwrap().closed);
    t.commit(held.reservation.id, 80).await.unwrap();
    let key = IdempotencyKey::new("closed-charge").unwrap();
    t.charge("wf:a", 5, key, None).await.unwrap();
    assert_eq!(used_reserved(&t, "wf").await, (385, 0));

    let before = event_count(&t).await;
    t.close("wf").await.unwrap();
    t.update_limit("wf", 2_000).await.unwrap();
    assert_eq!(
        event_count(&t).await,
        before,
        "updates that change nothing write nothing"
    );
    t.reopen("wf").await.unwrap();
    grant(&t, "wf:a", 10).await;

    let kinds: Vec<&'static str> = t
        .events("wf", 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.type_name())
        .filter(|k| k.starts_with("BUDGET_"))
        .collect();
    assert_eq!(
        kinds,
        [
            "BUDGET_CREATED",
            "BUDGET_UPDATED",
            "BUDGET_UPDATED",
            "BUDGET_CLOSED",
            "BUDGET_REOPENED"
        ]
    );
    let missing = t.update_limit("nope", 5).await.unwrap_err();
    assert!(matches!(missing, Error::BudgetNotFound { .. }), "{missing}");
    let zero = t.update_limit("wf", 0).await.unwrap_err();
    assert!(matches!(zero, Error::InvalidAmount { .. }), "{zero}");
    assert_replay(&t, LogCheck::default()).await;
}

/// `reservations` lists a budget's subtree, filters by the state seen now (a due hold is
/// expired before any write releases it) and pages by id without gaps or repeats.
pub async fn reservations_list_by_subtree_and_live_state(h: &dyn StoreHarness) {
    let (t, clock) = tracker(h.fresh_store().await);
    workflow_with_phases(&t, 10_000, &[("wf:a", 5_000), ("wf:b", 5_000)]).await;
    t.create_workflow("other", 100).await.unwrap();
    let on_wf = grant(&t, "wf", 10).await.reservation.id;
    let a1 = grant(&t, "wf:a", 20).await.reservation.id;
    let a2 = grant_expiring(&t, "wf:a", 30, 1).await.reservation.id;
    let b1 = grant(&t, "wf:b", 40).await.reservation.id;
    t.commit(b1, 40).await.unwrap();
    let elsewhere = grant(&t, "other", 5).await.reservation.id;
    clock.advance(Duration::from_secs(2));

    let ids =
        |list: Vec<crate::model::Reservation>| list.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = ids(t.reservations(None, None, None, usize::MAX).await.unwrap());
    let mut want = vec![on_wf, a1, a2, b1, elsewhere];
    want.sort();
    assert_eq!(all, want);
    let under_a = ids(t
        .reservations(Some(id("wf:a")), None, None, 100)
        .await
        .unwrap());
    assert_eq!(under_a, [a1, a2]);
    let wf_held = ids(t
        .reservations(Some(id("wf")), Some(ReservationState::Held), None, 100)
        .await
        .unwrap());
    assert_eq!(wf_held, [on_wf, a1], "the due hold is not held any more");
    let expired = t
        .reservations(None, Some(ReservationState::Expired), None, 100)
        .await
        .unwrap();
    assert_eq!(ids(expired), [a2]);
    let committed = ids(t
        .reservations(Some(id("wf")), Some(ReservationState::Committed), None, 100)
        .await
        .unwrap());
    assert_eq!(committed, [b1]);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = t.reservations(None, None, after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(paged, want);
    let missing = t
        .reservations(Some(id("nope")), None, None, 10)
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::BudgetNotFound { .. }), "{missing}");
}
