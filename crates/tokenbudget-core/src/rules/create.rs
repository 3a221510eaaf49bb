//! Creating a budget.

use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::model::{check_amount, Budget, NewBudget, MAX_DEPTH};
use crate::rules::snapshot::{Decision, Snapshot};
use crate::rules::work::Work;
use crate::time::Timestamp;

/// Creates `new` as a workflow budget or under its parent.
///
/// A fixed-length period without an anchor is anchored at `now`; a periodic budget's first
/// window is the one holding `now`.
///
/// Errors: the limit outside `1..=i64::MAX`, a duplicate id, an unknown parent, a unit other
/// than the parent's ([`Error::UnitMismatch`]), a chain deeper than [`MAX_DEPTH`].
pub fn create_budget(
    snapshot: &Snapshot,
    new: &NewBudget,
    now: Timestamp,
) -> Result<Decision<Budget>> {
    check_amount("limit", new.limit, 1)?;
    if snapshot.budgets.contains_key(&new.id) {
        return Err(Error::BudgetExists { id: new.id.clone() });
    }
    let mut work = Work::new(snapshot, now);
    if let Some(parent) = &new.parent {
        if work.budget(parent).is_none() {
            return Err(Error::ParentNotFound {
                id: new.id.clone(),
                parent: parent.clone(),
            });
        }
        let parent_unit = work.budget(parent).map(|p| p.unit).unwrap_or_default();
        if parent_unit != new.unit {
            return Err(Error::UnitMismatch {
                id: new.id.clone(),
                unit: new.unit,
                parent: parent.clone(),
                parent_unit,
            });
        }
        let depth = work.chain(parent)?.len() + 1;
        if depth > MAX_DEPTH {
            return Err(Error::HierarchyTooDeep {
                id: new.id.clone(),
                depth,
                max: MAX_DEPTH,
            });
        }
    }
    let period = new.period.map(|p| p.anchored_at(now));
    let budget = Budget {
        id: new.id.clone(),
        parent: new.parent.clone(),
        limit: new.limit,
        used: 0,
        reserved: 0,
        held: 0,
        created_at: now,
        unit: new.unit,
        period,
        window_start: period.map(|p| p.window_at(now).start),
        closed: false,
    };
    work.insert_budget(
        budget.clone(),
        EventKind::BudgetCreated {
            parent: new.parent.clone(),
            limit: new.limit,
            unit: new.unit,
            period,
        },
    );
    Ok(Decision {
        changes: work.finish(),
        outcome: budget,
    })
}
