//! The budget rules, as pure functions: `(locked state, command, now) -> (changes, outcome)`
//! or a typed error.
//!
//! A store's whole job around these functions is:
//!
//! 1. open a transaction and lock what the command touches (see [`Snapshot`] for exactly
//!    what to load for each command),
//! 2. call the rule ([`create_budget`], [`reserve`], [`commit`], [`rollback`], [`sweep`]),
//! 3. on `Ok`, write [`Changes`] (budgets, reservations, events) and commit; on `Err`, roll
//!    back: a rejected command changes nothing.
//!
//! No budget rule lives in a store.

mod create;
mod expire;
mod reserve;
mod settle;
mod snapshot;
mod work;

pub use create::create_budget;
pub use expire::sweep;
pub use reserve::reserve;
pub use settle::{commit, rollback};
pub use snapshot::{Changes, CommitCommand, Decision, ReserveCommand, RollbackCommand, Snapshot};

use std::time::Duration;

/// The shortest reservation timeout accepted.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The longest reservation timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 60 * 60);
