//! The shared conformance suite and property tests, each test on a fresh schema.

mod common;

tokenbudget_core::conformance_tests!(match common::PgHarness::new() {
    Some(harness) => harness,
    None => return,
});
