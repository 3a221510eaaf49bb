//! Creating a budget.

use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::model::{check_amount, Budget, NewBudget, MAX_DEPTH};
use crate::rules::snapshot::{Decision, Snapshot};
use crate::rules::work::Work;
use crate::time::Timestamp;

/// Creates `new` as a workflow budget or under its parent.
///
/// Errors: the limit outside `1..=i64::MAX`, a duplicate id, an unknown parent, a chain deeper
/// than [`MAX_DEPTH`].
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
        let depth = work.chain(parent)?.len() + 1;
        if depth > MAX_DEPTH {
            return Err(Error::HierarchyTooDeep {
                id: new.id.clone(),
                depth,
                max: MAX_DEPTH,
            });
        }
    }
    let budget = Budget {
        id: new.id.clone(),
        parent: new.parent.clone(),
        limit: new.limit,
        used: 0,
        reserved: 0,
        held: 0,
        created_at: now,
    };
    work.insert_budget(
        budget.clone(),
        EventKind::BudgetCreated {
            parent: new.parent.clone(),
            limit: new.limit,
        },
    );
    Ok(Decision {
        changes: work.finish(),
        outcome: budget,
    })
}
