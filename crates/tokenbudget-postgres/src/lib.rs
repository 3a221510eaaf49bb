#![doc = include_str!("../README.md")]

mod config;
mod error;
mod gate;
mod ledger;
mod ops;
mod pool;
mod rows;
mod schema;
mod sql;
mod store;
mod tx;

pub use config::{Config, DATABASE_URL_ENV};
pub use ledger::PostgresUsageStore;
pub use pool::PoolStatus;
pub use store::PostgresStore;
