//! The budget rules, as pure functions: `(locked state, command, now) -> (changes, outcome)`
//! or a typed error.
//!
//! A store's whole job around these functions is:
//!
//! 1. open a transaction and lock what the command touches (see [`Snapshot`] for exactly
//!    what to load for each command),
//! 2. call the rule ([`create_budget`], [`reserve`], [`commit`], [`rollback`], [`extend`],
//!    [`charge`], [`update_budget`], [`sweep`]),
//! 3. on `Ok`, write [`Changes`] (budgets, reservations, events) and commit; on `Err`, roll
//!    back: a rejected command changes nothing.
//!
//! No budget rule lives in a store.

mod charge;
mod create;
mod expire;
mod extend;
mod reserve;
mod settle;
mod snapshot;
mod update;
mod work;

pub use charge::charge;
pub use create::create_budget;
pub use expire::sweep;
pub use extend::extend;
pub use reserve::reserve;
pub use settle::{commit, rollback};
pub use snapshot::{
    Changes, ChargeCommand, CommitCommand, Decision, ExtendCommand, ReserveCommand,
    RollbackCommand, Snapshot, UpdateCommand,
};
pub use update::update_budget;

use std::time::Duration;

/// The shortest reservation timeout accepted.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The longest reservation timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{BudgetId, IdGenerator, SequentialIds};
    use crate::model::NewBudget;
    use crate::outcome::ReserveOutcome;
    use crate::time::Timestamp;

    fn workflow(limit: u64) -> Snapshot {
        let new = NewBudget::workflow(BudgetId::new("wf").unwrap(), limit);
        let created = create_budget(&Snapshot::default(), &new, Timestamp::EPOCH).unwrap();
        Snapshot::with_budgets(created.changes.new_budget)
    }

    #[test]
    fn a_retried_reserve_with_the_same_id_replays_and_holds_nothing_more() {
        let mut snapshot = workflow(100);
        let cmd = ReserveCommand {
            reservation_id: SequentialIds::default().reservation_id(),
            budget_id: BudgetId::new("wf").unwrap(),
            tokens: 60,
            timeout: Duration::from_secs(1),
            idempotency_key: None,
            model: None,
            asked: None,
        };
        let first = reserve(&snapshot, &cmd, Timestamp::EPOCH).unwrap();
        let granted = first.changes.new_reservation.clone().unwrap();
        // The store lost the commit acknowledgement and retries with the state it now reads.
        snapshot.budgets = first
            .changes
            .budgets
            .iter()
            .map(|b| (b.id.clone(), b.clone()))
            .collect();
        snapshot.reservation = Some(granted.clone());
        let retry = reserve(&snapshot, &cmd, Timestamp::EPOCH).unwrap();
        assert!(retry.changes.is_empty(), "a replay writes nothing");
        let ReserveOutcome::Granted(grant) = retry.outcome else {
            panic!("a retry of a granted reserve is granted");
        };
        assert!(grant.replayed);
        assert_eq!(grant.reservation, granted);

        let other = ReserveCommand { tokens: 61, ..cmd };
        assert!(reserve(&snapshot, &other, Timestamp::EPOCH).is_err());
    }

    #[test]
    fn a_rejected_command_returns_before_any_change() {
        let snapshot = workflow(100);
        let cmd = ReserveCommand {
            reservation_id: SequentialIds::default().reservation_id(),
            budget_id: BudgetId::new("wf").unwrap(),
            tokens: 0,
            timeout: Duration::from_secs(1),
            idempotency_key: None,
            model: None,
            asked: None,
        };
        assert!(matches!(
            reserve(&snapshot, &cmd, Timestamp::EPOCH),
            Err(crate::Error::InvalidAmount {
                field: "tokens",
                ..
            })
        ));
    }
}
