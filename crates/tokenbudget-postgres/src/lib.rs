#![doc = include_str!("../README.md")]

mod batch;
mod config;
mod error;
mod gate;
mod ops;
mod pool;
mod rows;
mod schema;
mod sql;
mod store;
mod tx;

pub use config::{ClockSource, Config, DATABASE_URL_ENV};
pub use pool::PoolStatus;
pub use store::PostgresStore;
