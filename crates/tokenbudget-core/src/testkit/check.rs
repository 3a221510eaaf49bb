//! Invariant checks over an event log and a store.

use std::collections::BTreeMap;

use crate::event::{apply, Event, EventKind};
use crate::id::BudgetId;
use crate::model::Budget;
use crate::store::{BudgetStore, EventQuery};

/// What [`check_log`] demands beyond consistency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCheck {
    /// Also demand `used + reserved <= limit` after every event. Holds when every commit was
    /// on time with `actual <= reserved` (no overrun, no late commit).
    pub strict_limit: bool,
}

/// Replays `events` in `seq` order, checking after every event (every prefix of the log):
///
/// - the log is consistent (nothing released that was not held, no unknown budget);
/// - every `TOKENS_RESERVED` had room when it was granted:
///   `used + reserved + tokens <= limit` just before it (in the window then current), on a
///   budget that was open;
/// - with `strict_limit`, `used + reserved <= limit` for the budget it changed.
///
/// Returns the replayed budgets.
pub fn check_log(events: &[Event], check: LogCheck) -> Result<BTreeMap<BudgetId, Budget>, String> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    for pair in sorted.windows(2) {
        if pair[0].seq == pair[1].seq {
            return Err(format!("sequence number {} appears twice", pair[0].seq));
        }
    }
    let mut budgets = BTreeMap::new();
    for event in sorted {
        if let EventKind::TokensReserved { tokens, .. } = &event.kind {
            let budget: &Budget = budgets
                .get(&event.budget_id)
                .ok_or_else(|| format!("event {}: reserve on unknown budget", event.seq))?;
            let wanted =
                u128::from(budget.used) + u128::from(budget.reserved) + u128::from(*tokens);
            if wanted > u128::from(budget.limit) {
                return Err(format!(
                    "event {}: granted {tokens} on {} with used {} + reserved {} and limit {}",
                    event.seq, budget.id, budget.used, budget.reserved, budget.limit
                ));
            }
            if budget.closed {
                return Err(format!(
                    "event {}: granted {tokens} on {}, which is closed",
                    event.seq, budget.id
                ));
            }
        }
        apply(&mut budgets, event).map_err(|e| e.to_string())?;
        let budget = &budgets[&event.budget_id];
        if check.strict_limit
            && u128::from(budget.used) + u128::from(budget.reserved) > u128::from(budget.limit)
        {
            return Err(format!(
                "after event {}: budget {} overdrawn: used {} + reserved {} > limit {}",
                event.seq, budget.id, budget.used, budget.reserved, budget.limit
            ));
        }
    }
    Ok(budgets)
}

/// Checks that replaying the store's whole log rebuilds exactly its stored budgets, and
/// returns them.
pub async fn check_replay_matches_store(
    store: &dyn BudgetStore,
    check: LogCheck,
) -> Result<Vec<Budget>, String> {
    let events = store
        .events(EventQuery::all())
        .await
        .map_err(|e| e.to_string())?;
    let replayed = check_log(&events, check)?;
    let stored = store.list_budgets().await.map_err(|e| e.to_string())?;
    let replayed: Vec<Budget> = replayed.into_values().collect();
    if replayed != stored {
        return Err(format!(
            "replay differs from stored state:\nreplayed: {replayed:#?}\nstored:   {stored:#?}"
        ));
    }
    Ok(stored)
}
