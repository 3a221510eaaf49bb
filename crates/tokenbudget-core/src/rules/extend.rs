//! Extending a held reservation's expiry.

use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::model::ReservationState;
use crate::outcome::ExtendOutcome;
use crate::rules::settle::{conflict, target};
use crate::rules::snapshot::{Decision, ExtendCommand, Snapshot};
use crate::rules::work::Work;
use crate::rules::{MAX_TIMEOUT, MIN_TIMEOUT};
use crate::time::Timestamp;

/// Moves a held reservation's expiry to `now + cmd.timeout`, or keeps it where it is when
/// that is already later, with a `RESERVATION_EXTENDED` event on every budget of its chain.
///
/// Only a reservation that still holds can be extended: one past its expiry (released or
/// not yet), committed or rolled back is [`Error::ReservationConflict`], and nothing changes.
/// Due holds of the tree in the snapshot are released in the same decision, as for every
/// other write.
pub fn extend(
    snapshot: &Snapshot,
    cmd: &ExtendCommand,
    now: Timestamp,
) -> Result<Decision<ExtendOutcome>> {
    let wanted = (MIN_TIMEOUT..=MAX_TIMEOUT)
        .contains(&cmd.timeout)
        .then(|| now.checked_add(cmd.timeout))
        .flatten()
        .ok_or(Error::InvalidTimeout {
            timeout: cmd.timeout,
        })?;
    let loaded = target(snapshot, cmd.reservation_id)?;
    let mut reservation = loaded.clone();
    match reservation.state {
        ReservationState::Held if reservation.expires_at > now => {}
        ReservationState::Held | ReservationState::Expired => {
            reservation.state = ReservationState::Expired;
            return Err(conflict(
                &reservation,
                format!(
                    "it expired at {}; only a held reservation can be extended (a late commit \
                     still records its usage)",
                    reservation.expires_at
                ),
            ));
        }
        ReservationState::Committed | ReservationState::Released => {
            return Err(conflict(
                &reservation,
                "it is settled; only a held reservation can be extended".into(),
            ))
        }
    }

    let mut work = Work::new(snapshot, now);
    work.release_expired(&snapshot.expired)?;
    let expires_at = wanted.max(reservation.expires_at);
    let chain = work.chain(&reservation.budget_id)?;
    let (id, origin) = (reservation.id, reservation.budget_id.clone());
    work.update_chain(&chain, |_| {
        Ok(vec![EventKind::ReservationExtended {
            reservation_id: id,
            origin: origin.clone(),
            expires_at,
        }])
    })?;
    reservation.expires_at = expires_at;
    work.put_reservation(reservation.clone());
    Ok(Decision {
        changes: work.finish(),
        outcome: ExtendOutcome { reservation },
    })
}
