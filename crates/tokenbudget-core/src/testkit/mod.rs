//! The conformance suite and property tests every store runs (feature `testkit`).
//!
//! A backend implements [`StoreHarness`] (a fresh, isolated, empty store per call) and
//! expands [`conformance_tests!`](crate::conformance_tests) in an integration test:
//!
//! ```ignore
//! struct Harness;
//! #[async_trait::async_trait]
//! impl tokenbudget_core::testkit::StoreHarness for Harness {
//!     async fn fresh_store(&self) -> tokenbudget_core::DynBudgetStore { /* … */ }
//! }
//! tokenbudget_core::conformance_tests!(Harness);
//! ```
//!
//! Each test is a public function here, so a backend can also call one directly.

mod check;
mod fixture;
mod hammer;
mod model;
mod props;
pub mod suite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::id::SequentialIds;
use crate::memory::MemoryStore;
use crate::store::DynBudgetStore;
use crate::time::{ManualClock, Timestamp};
use crate::tracker::Tracker;

pub use check::{check_log, check_replay_matches_store, LogCheck};
pub use fixture::{check_v3_fixture_kept, V3_HELD_DRAFT, V3_HELD_REVIEW};
pub use hammer::{hammer_hot_budget, hammer_workflow_with_phases};
pub use props::{prop_concurrent_invariants, prop_matches_reference_model};

/// Makes isolated stores for the suite.
#[async_trait]
pub trait StoreHarness: Send + Sync + 'static {
    /// A new, empty store that shares nothing with any other store this harness made.
    async fn fresh_store(&self) -> DynBudgetStore;

    /// How many cases each property test runs. Defaults to 64; `PROPTEST_CASES` overrides.
    fn proptest_cases(&self) -> u32 {
        64
    }
}

/// The in-memory store's harness.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryHarness;

#[async_trait]
impl StoreHarness for MemoryHarness {
    async fn fresh_store(&self) -> DynBudgetStore {
        MemoryStore::shared()
    }

    fn proptest_cases(&self) -> u32 {
        256
    }
}

/// The suite's start time: 2025-01-01T00:00:00Z.
pub const T0: Timestamp = Timestamp::from_micros(1_735_689_600_000_000);

/// A tracker over `store` with a manual clock at [`T0`] and sequential ids.
pub fn tracker(store: DynBudgetStore) -> (Tracker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let tracker = Tracker::builder(store)
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .default_timeout(Duration::from_secs(60))
        .build();
    (tracker, clock)
}

/// The environment variable that lengthens the long-running tests: `TOKENBUDGET_SOAK=10`
/// runs ten times the hammer rounds, kills and processes' rounds. `cargo xtask soak` sets it
/// (and `PROPTEST_CASES`).
pub const SOAK_ENV: &str = "TOKENBUDGET_SOAK";

/// The soak factor: [`SOAK_ENV`] as a whole number of at least 1; 1 when unset, so CI runs
/// each loop at the length it was sized for.
///
/// # Panics
///
/// When the variable is set to anything but a positive whole number: a soak run that
/// silently ran at length 1 would report what it did not do.
pub fn soak_factor() -> usize {
    match std::env::var(SOAK_ENV) {
        Err(_) => 1,
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(factor) if factor >= 1 => factor,
            _ => panic!("{SOAK_ENV}={value:?}: expected a whole number of at least 1"),
        },
    }
}

pub(crate) fn cases(harness: &dyn StoreHarness) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| harness.proptest_cases())
}

/// Expands to one test per conformance behaviour and property, each on a fresh store from
/// `$harness` (an expression whose value implements [`StoreHarness`]).
///
/// The calling crate needs `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@async $harness;
            create_workflow_and_phase,
            create_rejects_bad_input_and_writes_nothing,
            deeper_chains_hold_on_every_level,
            hierarchy_depth_is_bounded,
            reserve_holds_on_budget_and_every_ancestor,
            refusal_names_the_budget_that_lacks_room,
            refusals_and_clamps_are_logged_and_read_newest_first,
            reserve_rejects_bad_input_and_writes_nothing,
            commit_releases_the_unused_difference,
            commit_records_overrun_in_full,
            commit_is_idempotent_and_conflicts_on_a_different_amount,
            rollback_releases_once_and_conflicts_after_commit,
            unknown_reservation_is_a_typed_error,
            exhausted_event_is_appended_once,
            idempotency_key_replays_the_first_answer,
            expired_hold_is_released_by_the_next_operation,
            sweep_releases_each_expired_hold_exactly_once,
            late_commit_is_recorded_as_usage,
            rollback_after_expiry_changes_nothing,
            events_page_by_sequence_number,
            replay_of_the_log_equals_stored_state,
            stored_values_round_trip_exactly,
            background_sweeper_releases_expired_holds,
            expired_hold_on_a_sibling_never_refuses,
            extend_pushes_expiry_of_held_reservations_only,
            charge_records_usage_once_even_past_the_limit,
            caller_chosen_reservation_id_names_the_reservation,
            log_tail_sees_every_event_exactly_once,
            periodic_budget_rolls_over_lazily_once,
            holds_cross_windows_and_commits_count_where_committed,
            each_budget_of_a_chain_has_its_own_period,
            usd_budgets_keep_one_unit_per_chain,
            update_changes_limits_and_close_refuses_new_holds,
            reservations_list_by_subtree_and_live_state,
            hammer_hot_budget,
            hammer_workflow_with_phases,
        );
        $crate::conformance_tests!(@sync $harness;
            prop_matches_reference_model,
            prop_concurrent_invariants,
        );
    };
    (@async $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::testkit::suite::$name(&harness).await;
            }
        )*
    };
    (@sync $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let harness = $harness;
                $crate::testkit::$name(&harness);
            }
        )*
    };
}
