#![doc = include_str!("../README.md")]

pub mod admit;
mod auth;
pub mod bound;
pub mod config;
mod count;
pub mod error;
#[doc(hidden)]
pub mod fake;
mod finalize;
mod forward;
mod gateway;
pub mod journal;
pub mod keys;
pub mod ledger;
pub mod ledger_store;
pub mod logging;
pub mod meter;
pub mod metrics;
pub mod reader;
mod relay;
mod routes;
mod serve;
pub mod tap;
mod translated_stream;
pub mod usage;

pub use config::{OnStoreError, PromptCount, Settings, Timeouts};
pub use error::{ApiError, Error, Result};
pub use gateway::Gateway;
pub use keys::{DynKeyStore, KeyRecord, KeyStore, MemoryKeyStore};
pub use ledger::{LedgerRecord, LedgerSink, MemoryLedger, NoLedger, Settled};
pub use ledger_store::UsageLedger;
pub use serve::{serve, signal};
pub use usage::{Usage, Weights};
