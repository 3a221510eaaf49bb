//! Budget administration: changing the limit, closing and reopening.

use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::model::{check_amount, Budget};
use crate::rules::snapshot::{Decision, Snapshot, UpdateCommand};
use crate::rules::work::Work;
use crate::time::Timestamp;

/// Applies `cmd` to the budget: `BUDGET_UPDATED` when the limit changes, `BUDGET_CLOSED` or
/// `BUDGET_REOPENED` when the open state changes, nothing for what is already so.
///
/// A limit may be lowered below what is used and held: nothing is taken back, new
/// reservations are refused until the window rolls over or the limit is raised. Closing
/// refuses new reservations on the budget and everything below it; held reservations may
/// still commit or roll back, and charges (usage that already happened) are still recorded.
/// A periodic budget whose window ended is rolled over first, as by every write.
pub fn update_budget(
    snapshot: &Snapshot,
    cmd: &UpdateCommand,
    now: Timestamp,
) -> Result<Decision<Budget>> {
    if let Some(limit) = cmd.limit {
        check_amount("limit", limit, 1)?;
    }
    let mut work = Work::new(snapshot, now);
    let Some(before) = work.budget(&cmd.budget_id).cloned() else {
        return Err(Error::BudgetNotFound {
            id: cmd.budget_id.clone(),
        });
    };
    let mut kinds = Vec::new();
    if let Some(limit) = cmd.limit.filter(|&l| l != before.limit) {
        kinds.push(EventKind::BudgetUpdated {
            limit_before: before.limit,
            limit,
        });
    }
    match cmd.closed {
        Some(true) if !before.closed => kinds.push(EventKind::BudgetClosed {}),
        Some(false) if before.closed => kinds.push(EventKind::BudgetReopened {}),
        _ => {}
    }
    if !kinds.is_empty() {
        work.update_chain(std::slice::from_ref(&cmd.budget_id), |budget| {
            if let Some(limit) = cmd.limit {
                budget.limit = limit;
            }
            if let Some(closed) = cmd.closed {
                budget.closed = closed;
            }
            Ok(std::mem::take(&mut kinds))
        })?;
    }
    let budget = work.budget(&cmd.budget_id).cloned().expect("checked above");
    Ok(Decision {
        changes: work.finish(),
        outcome: budget,
    })
}
