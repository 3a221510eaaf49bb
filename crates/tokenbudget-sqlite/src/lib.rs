#![doc = include_str!("../README.md")]

mod batch;
mod config;
mod error;
mod ledger;
mod ops;
mod queue;
mod retry;
mod schema;
mod sql;
mod store;
mod unit;

pub use config::{Config, Synchronous};
pub use ledger::SqliteUsageStore;
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;
