//! Settling a reservation: commit (record usage) or rollback (release the hold).

use crate::error::{Error, Result};
use crate::event::{EventKind, ReleaseReason};
use crate::model::{check_amount, Reservation, ReservationState};
use crate::outcome::{CommitOutcome, RollbackOutcome};
use crate::rules::snapshot::{CommitCommand, Decision, RollbackCommand, Snapshot};
use crate::rules::work::Work;
use crate::time::Timestamp;

/// Records `cmd.actual` tokens as used on the reservation's budget and every ancestor.
///
/// - Held and on time: the hold is released and `actual` added to `used`; an `actual` above
///   the reservation is recorded in full and reported as overrun.
/// - Expired (now or earlier): the usage is recorded all the same, flagged late.
/// - Already committed with the same amount: a replay, nothing changes. With another amount,
///   or after a rollback: [`Error::ReservationConflict`].
///
/// `BUDGET_EXHAUSTED` is appended for each budget whose `used` reaches its limit by this
/// commit (once per budget: `used` never decreases).
pub fn commit(
    snapshot: &Snapshot,
    cmd: &CommitCommand,
    now: Timestamp,
) -> Result<Decision<CommitOutcome>> {
    check_amount("actual", cmd.actual, 0)?;
    let loaded = target(snapshot, cmd.reservation_id)?;
    let mut work = Work::new(snapshot, now);
    work.release_expired(&snapshot.expired)?;
    work.release_expired(std::slice::from_ref(loaded))?;
    let mut reservation = work.current(loaded);

    let late = match reservation.state {
        ReservationState::Held => false,
        ReservationState::Expired => true,
        ReservationState::Committed => {
            let previous = reservation.actual.unwrap_or_default();
            if previous != cmd.actual {
                return Err(conflict(
                    &reservation,
                    format!(
                        "it was committed with {previous} tokens; a commit with {} differs",
                        cmd.actual
                    ),
                ));
            }
            return Ok(Decision {
                changes: work.finish(),
                outcome: CommitOutcome {
                    overrun: previous.saturating_sub(reservation.tokens),
                    late: reservation.is_late(),
                    replayed: true,
                    reservation,
                },
            });
        }
        ReservationState::Released => {
            return Err(conflict(
                &reservation,
                "it was rolled back, so it cannot be committed".into(),
            ))
        }
    };

    let chain = work.chain(&reservation.budget_id)?;
    let released = if late { 0 } else { reservation.tokens };
    let overrun = cmd.actual.saturating_sub(reservation.tokens);
    let (id, origin, actual) = (reservation.id, reservation.budget_id.clone(), cmd.actual);
    work.add_used(&chain, actual, |budget| {
        if released > 0 {
            budget.reserved = budget
                .reserved
                .checked_sub(released)
                .ok_or_else(|| crate::rules::work::snapshot_bug(&budget.id))?;
            budget.held = budget
                .held
                .checked_sub(1)
                .ok_or_else(|| crate::rules::work::snapshot_bug(&budget.id))?;
        }
        Ok(EventKind::TokensCommitted {
            reservation_id: id,
            origin: origin.clone(),
            tokens: actual,
            released,
            overrun,
            late,
        })
    })?;
    reservation.state = ReservationState::Committed;
    reservation.actual = Some(cmd.actual);
    reservation.settled_at = Some(now);
    work.put_reservation(reservation.clone());
    Ok(Decision {
        changes: work.finish(),
        outcome: CommitOutcome {
            reservation,
            overrun,
            late,
            replayed: false,
        },
    })
}

/// Releases a held reservation's tokens on its budget and every ancestor.
///
/// Rolling back a released or expired reservation changes nothing and answers with its
/// state (`released: 0`); rolling back a committed one is [`Error::ReservationConflict`].
pub fn rollback(
    snapshot: &Snapshot,
    cmd: &RollbackCommand,
    now: Timestamp,
) -> Result<Decision<RollbackOutcome>> {
    let loaded = target(snapshot, cmd.reservation_id)?;
    let mut work = Work::new(snapshot, now);
    work.release_expired(&snapshot.expired)?;
    work.release_expired(std::slice::from_ref(loaded))?;
    let mut reservation = work.current(loaded);
    let released = match reservation.state {
        ReservationState::Held => {
            work.release(&mut reservation, ReleaseReason::Rollback)?;
            work.put_reservation(reservation.clone());
            reservation.tokens
        }
        ReservationState::Released | ReservationState::Expired => 0,
        ReservationState::Committed => {
            return Err(conflict(
                &reservation,
                "it was committed, so it cannot be rolled back".into(),
            ))
        }
    };
    Ok(Decision {
        changes: work.finish(),
        outcome: RollbackOutcome {
            reservation,
            released,
        },
    })
}

pub(crate) fn target(snapshot: &Snapshot, id: crate::id::ReservationId) -> Result<&Reservation> {
    snapshot
        .reservation
        .as_ref()
        .filter(|r| r.id == id)
        .ok_or(Error::ReservationNotFound { id })
}

pub(crate) fn conflict(reservation: &Reservation, reason: String) -> Error {
    Error::ReservationConflict {
        id: reservation.id,
        state: reservation.state,
        reason,
    }
}
