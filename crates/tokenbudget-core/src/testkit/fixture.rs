//! What a database written by the release before schema 4 (periods, units, closed budgets)
//! holds, and the check that a store opened on it kept all of it.
//!
//! Each SQL store commits such a database as a fixture (`tests/fixtures/v3.db` for SQLite,
//! `tests/fixtures/v3.sql`, a `pg_dump --inserts`, for Postgres), written by that release's
//! CLI (commit `e5b040c`) with these commands, one second apart where it says so:
//!
//! ```text
//! tokenbudget budget create wf --limit 10000
//! tokenbudget budget create wf:draft --limit 4000 --parent wf
//! tokenbudget budget create wf:review --limit 3000 --parent wf
//! R=$(tokenbudget reserve wf:draft 1500); tokenbudget commit $R 1234
//! tokenbudget reserve wf:review 700 --id 0190a000-0000-7000-8000-000000000002
//! R=$(tokenbudget reserve wf:review 50); tokenbudget rollback $R
//! tokenbudget charge wf:draft 800 --key import:msg_01 --note "from a log"
//! tokenbudget reserve wf:draft 100 --timeout 1s; sleep 2
//! tokenbudget budget create solo --limit 5
//! tokenbudget reserve wf:draft 10 --id 0190a000-0000-7000-8000-000000000003 --timeout 1h
//! ```
//!
//! The last reserve released the expired 100 first, so the log has 22 events.

use std::time::Duration;

use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::model::{ReservationState, Unit};
use crate::rules::{ChargeCommand, CommitCommand, ReserveCommand, UpdateCommand};
use crate::store::{BudgetStore, ReservationQuery};
use crate::testkit::check::{check_replay_matches_store, LogCheck};
use crate::{EventQuery, RefusalReason};

/// The reservation the fixture still holds 700 with, on `wf:review`.
pub const V3_HELD_REVIEW: &str = "0190a000-0000-7000-8000-000000000002";
/// The reservation the fixture still holds 10 with, on `wf:draft` (for an hour).
pub const V3_HELD_DRAFT: &str = "0190a000-0000-7000-8000-000000000003";

fn bid(s: &str) -> BudgetId {
    BudgetId::new(s).expect("a fixture id")
}

fn rid(s: &str) -> ReservationId {
    s.parse().expect("a fixture id")
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($what:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!("{}: {left:?} != {right:?}", format!($($what)+)));
        }
    }};
}

/// Checks that `store`, freshly opened on the fixture described above (and so migrated),
/// kept every budget, reservation, charge and event, that replaying the log still equals the
/// stored budgets, and that the migrated rows work with what schema 4 added: a charge
/// replays, a limit changes, a closed budget refuses and its held reservation still commits.
///
/// The store must take its clock from the `now` passed to each call (Postgres:
/// `ClockSource::Caller`). Writes to the store.
pub async fn check_v3_fixture_kept(store: &dyn BudgetStore) -> Result<(), String> {
    let e = |what: &'static str| move |err: crate::Error| format!("{what}: {err}");
    let mut budgets = store.list_budgets().await.map_err(e("list"))?;
    budgets.sort_by(|a, b| a.id.cmp(&b.id));
    let rows: Vec<_> = budgets
        .iter()
        .map(|b| {
            let plain = b.unit == Unit::Tokens && b.period.is_none() && b.window_start.is_none();
            (
                b.id.as_str().to_owned(),
                b.limit,
                b.used,
                b.reserved,
                b.held,
                plain && !b.closed,
            )
        })
        .collect();
    let want =
        |id: &str, limit, used, reserved, held| (id.to_owned(), limit, used, reserved, held, true);
    ensure_eq!(
        rows,
        [
            want("solo", 5, 0, 0, 0),
            want("wf", 10_000, 2034, 710, 2),
            want("wf:draft", 4000, 2034, 10, 1),
            want("wf:review", 3000, 0, 700, 1),
        ],
        "budgets (id, limit, used, reserved, held, lifetime tokens and open)"
    );

    let held = store
        .reservation(rid(V3_HELD_DRAFT))
        .await
        .map_err(e("reservation"))?
        .ok_or("the fixture's 10-token hold is gone")?;
    // An instant at which the 1-hour hold still holds and the 1-second one is long expired.
    let now = held
        .created_at
        .checked_add(Duration::from_secs(1))
        .ok_or("a fixture time out of range")?;
    let all = store
        .reservations(ReservationQuery::all(now))
        .await
        .map_err(e("reservations"))?;
    let mut kept: Vec<_> = all
        .iter()
        .map(|r| {
            (
                r.budget_id.as_str().to_owned(),
                r.tokens,
                r.state,
                r.actual,
                r.model.clone(),
            )
        })
        .collect();
    kept.sort_by_key(|k| (k.0.clone(), k.1));
    let r = |b: &str, tokens, state, actual| (b.to_owned(), tokens, state, actual, None);
    use ReservationState::*;
    ensure_eq!(
        kept,
        [
            r("wf:draft", 10, Held, None),
            r("wf:draft", 100, Expired, None),
            r("wf:draft", 1500, Committed, Some(1234)),
            r("wf:review", 50, Released, None),
            r("wf:review", 700, Held, None),
        ],
        "reservations (budget, tokens, state, actual, model)"
    );
    let events = store.events(EventQuery::all()).await.map_err(e("events"))?;
    ensure_eq!(events.len(), 22, "events kept");
    check_replay_matches_store(store, LogCheck { strict_limit: true }).await?;

    let key = IdempotencyKey::new("import:msg_01").map_err(e("key"))?;
    let charge = store
        .charge_by_key(&key)
        .await
        .map_err(e("charge_by_key"))?
        .ok_or("the fixture's charge is gone")?;
    ensure_eq!(
        (
            charge.budget_id.as_str(),
            charge.tokens,
            charge.note.as_deref()
        ),
        ("wf:draft", 800, Some("from a log")),
        "charge"
    );
    let again = store
        .charge(
            ChargeCommand {
                key,
                budget_id: bid("wf:draft"),
                tokens: 800,
                note: Some("from a log".into()),
            },
            now,
        )
        .await
        .map_err(e("charge again"))?;
    ensure_eq!(
        again.replayed,
        true,
        "the charge made before the migration replays"
    );

    // What schema 4 added works on the migrated rows.
    let wf = store
        .update_budget(UpdateCommand::new(bid("wf")).limit(20_000), now)
        .await
        .map_err(e("update"))?;
    ensure_eq!((wf.limit, wf.used), (20_000, 2034), "wf updated");
    store
        .update_budget(UpdateCommand::new(bid("wf:review")).closed(true), now)
        .await
        .map_err(e("close"))?;
    let refused = store
        .reserve(
            ReserveCommand {
                reservation_id: rid("0190a000-0000-7000-8000-0000000000ff"),
                budget_id: bid("wf:review"),
                tokens: 1,
                timeout: Duration::from_secs(60),
                idempotency_key: None,
                model: None,
                asked: None,
            },
            now,
        )
        .await
        .map_err(e("reserve on closed"))?;
    ensure_eq!(
        refused.refused().map(|r| r.reason),
        Some(RefusalReason::Closed),
        "a reserve on the closed budget"
    );
    let committed = store
        .commit(
            CommitCommand {
                reservation_id: rid(V3_HELD_REVIEW),
                actual: 600,
            },
            now,
        )
        .await
        .map_err(e("commit on closed"))?;
    ensure_eq!(
        (committed.reservation.state, committed.late),
        (Committed, false),
        "the migrated hold commits on its closed budget"
    );
    let wf = store
        .budget(&bid("wf"))
        .await
        .map_err(e("budget"))?
        .ok_or("wf is gone")?;
    ensure_eq!((wf.used, wf.reserved), (2634, 10), "wf after the commit");
    check_replay_matches_store(store, LogCheck { strict_limit: true }).await?;
    Ok(())
}
