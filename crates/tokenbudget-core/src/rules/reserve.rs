//! Reserving tokens on a budget and its ancestors, atomically.

use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::model::{check_amount, check_model, Reservation, ReservationState};
use crate::outcome::{Grant, Refusal, RefusalReason, ReserveOutcome};
use crate::rules::snapshot::{Decision, ReserveCommand, Snapshot};
use crate::rules::work::{repeat_differs, Work};
use crate::rules::{MAX_TIMEOUT, MIN_TIMEOUT};
use crate::time::Timestamp;

/// Holds `cmd.tokens` on the budget and every ancestor, or refuses naming the budget nearest
/// the target that lacks room in its current window or is closed.
///
/// Expired holds in the snapshot are released first, in the same decision. A repeated
/// idempotency key returns the first reservation (in its current state) and holds nothing
/// more; the same key with another budget or amount is [`Error::IdempotencyConflict`].
/// A refusal stores no reservation, so a retry with the same key is decided afresh; it
/// appends one `RESERVE_REFUSED` on the refusing budget (and writes the expiry releases and
/// period resets found on the way). A grant for less than `cmd.asked` appends
/// `RESERVE_CLAMPED` on the target after its `TOKENS_RESERVED`. A command whose
/// reservation id already exists (a store retrying after an unknown commit outcome) is
/// answered the same way as a repeated key.
pub fn reserve(
    snapshot: &Snapshot,
    cmd: &ReserveCommand,
    now: Timestamp,
) -> Result<Decision<ReserveOutcome>> {
    check_amount("tokens", cmd.tokens, 1)?;
    check_model(cmd.model.as_deref())?;
    let expires_at = (MIN_TIMEOUT..=MAX_TIMEOUT)
        .contains(&cmd.timeout)
        .then(|| now.checked_add(cmd.timeout))
        .flatten()
        .ok_or(Error::InvalidTimeout {
            timeout: cmd.timeout,
        })?;

    let mut work = Work::new(snapshot, now);
    if let Some(existing) = &snapshot.reservation {
        // A retry of this very command (same reservation id) whose first attempt's commit
        // outcome was unknown to the store: answer what was granted, hold nothing more.
        if existing.id == cmd.reservation_id {
            if existing.budget_id != cmd.budget_id || existing.tokens != cmd.tokens {
                return Err(Error::Storage {
                    backend: "core",
                    message: format!(
                        "reservation id {} is already used by another reservation",
                        cmd.reservation_id
                    ),
                    retryable: false,
                    source: None,
                });
            }
            return replay(work, snapshot, existing);
        }
    }
    if let (Some(key), Some(existing)) = (&cmd.idempotency_key, &snapshot.reservation) {
        if existing.idempotency_key.as_ref() == Some(key) {
            let differs = repeat_differs(
                (&existing.budget_id, existing.tokens),
                (&cmd.budget_id, cmd.tokens),
            );
            if let Some(reason) = differs {
                return Err(Error::IdempotencyConflict {
                    key: key.clone(),
                    existing: existing.id,
                    reason,
                });
            }
            return replay(work, snapshot, existing);
        }
    }

    if work.budget(&cmd.budget_id).is_none() {
        return Err(Error::BudgetNotFound {
            id: cmd.budget_id.clone(),
        });
    }
    let chain = work.chain(&cmd.budget_id)?;
    work.release_expired(&snapshot.expired)?;

    for id in &chain {
        let budget = work.budget(id).expect("chain() checked every link");
        let wanted = u128::from(budget.used) + u128::from(budget.reserved) + u128::from(cmd.tokens);
        let reason = if budget.closed {
            Some(RefusalReason::Closed)
        } else if wanted > u128::from(budget.limit) {
            Some(RefusalReason::NoRoom)
        } else {
            None
        };
        if let Some(reason) = reason {
            let refusal = Refusal {
                budget_id: id.clone(),
                requested: cmd.tokens,
                available: budget.available(),
                reason,
                unit: budget.unit,
            };
            work.note(
                id,
                EventKind::ReserveRefused {
                    reservation_id: cmd.reservation_id,
                    origin: cmd.budget_id.clone(),
                    requested: cmd.tokens,
                    available: refusal.available,
                    reason,
                    model: cmd.model.clone(),
                },
            );
            return Ok(Decision {
                changes: work.finish(),
                outcome: ReserveOutcome::Refused(refusal),
            });
        }
    }

    let reservation = Reservation {
        id: cmd.reservation_id,
        budget_id: cmd.budget_id.clone(),
        tokens: cmd.tokens,
        state: ReservationState::Held,
        created_at: now,
        expires_at,
        idempotency_key: cmd.idempotency_key.clone(),
        actual: None,
        settled_at: None,
        model: cmd.model.clone(),
    };
    work.update_chain(&chain, |budget| {
        // Cannot overflow: reserved + tokens <= limit <= i64::MAX was checked above.
        budget.reserved += cmd.tokens;
        budget.held += 1;
        Ok(vec![EventKind::TokensReserved {
            reservation_id: cmd.reservation_id,
            origin: cmd.budget_id.clone(),
            tokens: cmd.tokens,
            expires_at,
        }])
    })?;
    if let Some(asked) = cmd.asked.filter(|&asked| asked > cmd.tokens) {
        work.note(
            &cmd.budget_id,
            EventKind::ReserveClamped {
                reservation_id: cmd.reservation_id,
                asked,
                tokens: cmd.tokens,
                model: cmd.model.clone(),
            },
        );
    }
    work.insert_reservation(reservation.clone());
    Ok(Decision {
        changes: work.finish(),
        outcome: ReserveOutcome::Granted(Grant {
            reservation,
            replayed: false,
        }),
    })
}

/// Answers a repeated reserve with the reservation it already made, as it stands after the
/// snapshot's due expiries; holds nothing more.
fn replay(
    mut work: Work,
    snapshot: &Snapshot,
    existing: &Reservation,
) -> Result<Decision<ReserveOutcome>> {
    work.release_expired(&snapshot.expired)?;
    let reservation = work.current(existing);
    Ok(Decision {
        changes: work.finish(),
        outcome: ReserveOutcome::Granted(Grant {
            reservation,
            replayed: true,
        }),
    })
}
