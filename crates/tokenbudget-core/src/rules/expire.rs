//! Releasing expired reservations.

use crate::error::Result;
use crate::outcome::SweepOutcome;
use crate::rules::snapshot::{Decision, Snapshot};
use crate::rules::work::Work;
use crate::time::Timestamp;

/// Releases every reservation in `snapshot.expired` that is still held and due at `now`,
/// each exactly once, with a `TOKENS_RELEASED` event (reason `expired`) on every budget of
/// its chain.
pub fn sweep(snapshot: &Snapshot, now: Timestamp) -> Result<Decision<SweepOutcome>> {
    let mut work = Work::new(snapshot, now);
    let released = work.release_expired(&snapshot.expired)?;
    Ok(Decision {
        changes: work.finish(),
        outcome: SweepOutcome { released },
    })
}
