//! `tokenbudget reserve`, `commit`, `rollback`, `extend`, `charge` and `sweep`.

use std::time::Duration;

use serde_json::json;
use tokenbudget::{ReservationId, ReserveOptions, ReserveOutcome, TokenBudget};

use crate::cli::{ChargeArgs, ReserveArgs};
use crate::failure::Failure;
use crate::output::Out;

/// Prints the reservation id (text) or `reservation_id`, `budget_id`, `tokens`, `expires_at`
/// (JSON). A refusal prints `outcome: "refused"` with the budget that lacked room in JSON,
/// and fails with exit code 3.
pub async fn reserve(
    args: ReserveArgs,
    budgets: &TokenBudget,
    out: &mut Out,
) -> Result<(), Failure> {
    let mut options = ReserveOptions::new().with_timeout(args.timeout);
    if let Some(key) = args.idempotency_key {
        options = options.with_idempotency_key(key);
    }
    if let Some(id) = args.id {
        options = options.with_reservation_id(id);
    }
    match budgets.reserve(&args.budget, args.tokens, options).await? {
        ReserveOutcome::Granted(grant) => {
            let r = &grant.reservation;
            out.emit(
                json!({
                    "outcome": "granted",
                    "reservation_id": r.id,
                    "budget_id": r.budget_id,
                    "tokens": r.tokens,
                    "expires_at": r.expires_at,
                    "state": r.state,
                    "replayed": grant.replayed,
                }),
                || r.id.to_string(),
            )
        }
        ReserveOutcome::Refused(refusal) => {
            if out.is_json() {
                out.line(
                    &json!({
                        "outcome": "refused",
                        "budget_id": refusal.budget_id,
                        "requested": refusal.requested,
                        "available": refusal.available,
                    })
                    .to_string(),
                )?;
            }
            Err(Failure::refused(&refusal))
        }
    }
}

/// `reservation_id`, `state` (`committed`), and the usage recorded.
pub async fn commit(
    id: ReservationId,
    actual: u64,
    budgets: &TokenBudget,
    out: &mut Out,
) -> Result<(), Failure> {
    let done = budgets.commit(id, actual).await?;
    let r = &done.reservation;
    out.emit(
        json!({
            "reservation_id": r.id,
            "state": r.state,
            "budget_id": r.budget_id,
            "tokens": r.tokens,
            "actual": r.actual,
            "overrun": done.overrun,
            "late": done.late,
            "replayed": done.replayed,
        }),
        || {
            let mut text = format!(
                "committed {}: {actual} tokens used of {} reserved",
                r.id, r.tokens
            );
            if done.overrun > 0 {
                text.push_str(&format!(" ({} over)", done.overrun));
            }
            if done.late {
                text.push_str(" (after the reservation had expired)");
            }
            if done.replayed {
                text.push_str(" (already committed: nothing changed)");
            }
            text
        },
    )
}

/// `reservation_id`, `state` (`released`, or `expired` when its timeout had released it).
pub async fn rollback(
    id: ReservationId,
    budgets: &TokenBudget,
    out: &mut Out,
) -> Result<(), Failure> {
    let done = budgets.rollback(id).await?;
    let r = &done.reservation;
    out.emit(
        json!({
            "reservation_id": r.id,
            "state": r.state,
            "budget_id": r.budget_id,
            "released": done.released,
        }),
        || {
            if done.released > 0 {
                format!("rolled back {}: {} tokens released", r.id, done.released)
            } else {
                format!("rolled back {}: nothing held ({})", r.id, r.state)
            }
        },
    )
}

/// `reservation_id`, `state` (`held`) and the new `expires_at`.
pub async fn extend(
    id: ReservationId,
    timeout: Duration,
    budgets: &TokenBudget,
    out: &mut Out,
) -> Result<(), Failure> {
    let done = budgets.extend(id, timeout).await?;
    let r = &done.reservation;
    out.emit(
        json!({
            "reservation_id": r.id,
            "state": r.state,
            "budget_id": r.budget_id,
            "tokens": r.tokens,
            "expires_at": r.expires_at,
        }),
        || format!("extended {}: held until {}", r.id, r.expires_at),
    )
}

/// `key`, `budget_id`, `tokens`, `overrun` and `replayed`.
pub async fn charge(args: ChargeArgs, budgets: &TokenBudget, out: &mut Out) -> Result<(), Failure> {
    let done = budgets
        .charge(&args.budget, args.tokens, args.key, args.note)
        .await?;
    let c = &done.charge;
    out.emit(
        json!({
            "key": c.key,
            "budget_id": c.budget_id,
            "tokens": c.tokens,
            "note": c.note,
            "at": c.at,
            "overrun": done.overrun,
            "replayed": done.replayed,
        }),
        || {
            let mut text = format!("charged {} tokens to {}", c.tokens, c.budget_id);
            if done.overrun > 0 {
                text.push_str(&format!(" ({} past what was available)", done.overrun));
            }
            if done.replayed {
                text.push_str(" (already charged with this key: nothing changed)");
            }
            text
        },
    )
}

/// `released`: how many expired reservations were released.
pub async fn sweep(budgets: &TokenBudget, out: &mut Out) -> Result<(), Failure> {
    let released = budgets.sweep_expired().await?;
    out.emit(json!({ "released": released }), || {
        format!("released {released} expired reservations")
    })
}
