#![doc = include_str!("../README.md")]

pub mod aggregate;
pub mod checkpoint;
pub mod dedup;
pub mod discover;
mod error;
pub mod import;
mod memory;
pub mod parse;
pub mod reader;
pub mod record;
pub mod report;
mod store;
pub mod verify;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use aggregate::{AggregateQuery, AggregateRow, GroupBy};
pub use checkpoint::Checkpoint;
pub use error::{Error, Result};
pub use import::{import, ImportOptions, ImportSummary};
pub use memory::MemoryUsageStore;
pub use record::{Usage, UsageRecord};
pub use store::{validate, DynUsageStore, RecordQuery, UsageStore, WriteSummary};
pub use verify::{verify, VerifyReport};
