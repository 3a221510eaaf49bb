//! The [`UsageStore`](crate::UsageStore) conformance suite and the Claude Code fixture
//! generator (feature `testkit`).
//!
//! A store crate runs the whole suite with one line:
//!
//! ```ignore
//! tokenbudget_ledger::usage_conformance_tests!(MyHarness::default());
//! ```

pub mod fixture;
pub mod suite;

use async_trait::async_trait;

use crate::store::DynUsageStore;

/// Gives the suite a fresh, empty store per test.
#[async_trait]
pub trait UsageHarness: Send + Sync {
    /// A new empty store.
    async fn fresh(&self) -> DynUsageStore;
    /// A second handle on the same database as `store` (another connection or process-like
    /// client), for the concurrency test; the memory store returns the same one.
    async fn same_database(&self, store: &DynUsageStore) -> DynUsageStore;
}

/// One `#[tokio::test]` per suite test, each with the given harness.
#[macro_export]
macro_rules! usage_conformance_tests {
    ($harness:expr) => {
        $crate::usage_conformance_tests!(@each $harness;
            writes_insert_new_keys_and_replace_only_when_superseded,
            merging_is_order_independent_and_idempotent,
            one_batch_with_repeated_keys_merges_as_one_by_one,
            records_and_checkpoint_are_one_transaction,
            checkpoint_is_never_moved_back_on_the_same_prefix,
            invalid_records_are_rejected_and_nothing_is_written,
            checkpoint_round_trips_field_for_field,
            checkpoints_are_listed_once_in_file_order,
            records_are_ordered_and_filtered_by_time,
            records_without_raw_have_empty_raw_usage,
            concurrent_writers_converge_on_the_merged_result,
            estimated_and_budget_round_trip_and_the_budget_is_never_erased,
            a_record_without_request_id_is_shadowed_by_one_with,
            aggregate_equals_grouping_the_records,
            aggregate_buckets_filters_and_order,
            aggregate_leaves_out_shadowed_records,
            aggregate_sum_above_i64_max_is_an_error,
            a_known_project_and_session_are_never_erased_by_an_empty_one,
            shadowing_is_decided_when_writing_in_either_arrival_order,
            shadowed_lists_the_keys_a_stored_record_shadows,
            concurrent_writers_of_a_bare_record_and_its_sibling_shadow_it,
        );
    };
    (@each $harness:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::testkit::suite::$name(&harness).await;
            }
        )+
    };
}
