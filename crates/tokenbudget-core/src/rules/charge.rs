//! Charging usage that had no reservation.

use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::model::{check_amount, check_note, Charge};
use crate::outcome::ChargeOutcome;
use crate::rules::snapshot::{ChargeCommand, Decision, Snapshot};
use crate::rules::work::{repeat_differs, Work};
use crate::time::Timestamp;

/// Records `cmd.tokens` as used on the budget and every ancestor, with no reservation.
///
/// Spend is a fact: a charge is recorded even past the limit, each budget's
/// `TOKENS_CHARGED` event saying by how much it overran what that budget had available, and
/// `BUDGET_EXHAUSTED` follows as for a commit. A charge with a key already charged answers
/// the first charge and changes nothing when its budget and tokens are the same, and is
/// [`Error::ChargeConflict`] when they differ (the note is not compared). Due holds of the
/// tree in the snapshot are released first, as for every other write.
pub fn charge(
    snapshot: &Snapshot,
    cmd: &ChargeCommand,
    now: Timestamp,
) -> Result<Decision<ChargeOutcome>> {
    check_amount("tokens", cmd.tokens, 0)?;
    check_note(cmd.note.as_deref())?;
    if let Some(existing) = snapshot.charge.as_ref().filter(|c| c.key == cmd.key) {
        let differs = repeat_differs(
            (&existing.budget_id, existing.tokens),
            (&cmd.budget_id, cmd.tokens),
        );
        if let Some(reason) = differs {
            return Err(Error::ChargeConflict {
                key: cmd.key.clone(),
                reason,
            });
        }
        return Ok(Decision {
            changes: Default::default(),
            outcome: ChargeOutcome {
                charge: existing.clone(),
                overrun: 0,
                replayed: true,
            },
        });
    }

    let mut work = Work::new(snapshot, now);
    if work.budget(&cmd.budget_id).is_none() {
        return Err(Error::BudgetNotFound {
            id: cmd.budget_id.clone(),
        });
    }
    let chain = work.chain(&cmd.budget_id)?;
    work.release_expired(&snapshot.expired)?;
    let mut worst = 0;
    work.add_used(&chain, cmd.tokens, |budget| {
        let overrun = cmd.tokens.saturating_sub(budget.available());
        worst = worst.max(overrun);
        Ok(EventKind::TokensCharged {
            key: cmd.key.clone(),
            origin: cmd.budget_id.clone(),
            tokens: cmd.tokens,
            overrun,
        })
    })?;
    let charge = Charge {
        key: cmd.key.clone(),
        budget_id: cmd.budget_id.clone(),
        tokens: cmd.tokens,
        note: cmd.note.clone(),
        at: now,
    };
    work.insert_charge(charge.clone());
    Ok(Decision {
        changes: work.finish(),
        outcome: ChargeOutcome {
            charge,
            overrun: worst,
            replayed: false,
        },
    })
}
