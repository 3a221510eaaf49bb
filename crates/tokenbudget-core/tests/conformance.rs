//! The shared conformance suite and property tests, on the in-memory store.

tokenbudget_core::conformance_tests!(tokenbudget_core::testkit::MemoryHarness);
