#![doc = include_str!("../README.md")]

mod builder;
mod client;
mod error;
mod factories;
mod guard;
mod parse;
mod priced;
mod registry;
mod request;

pub use builder::{TokenBudgetBuilder, DEFAULT_SWEEP_INTERVAL};
pub use client::TokenBudget;
pub use error::{Error, Result};
pub use guard::{Actual, Hold, SpendError, Spent};
pub use parse::redact;
pub use priced::amount_for;
pub use registry::{open, StoreFactory, StoreRegistry};
pub use request::RequestReservation;

// The core: models, the store trait, the tracker and the in-memory store. Its error type is
// `CoreError` here, to leave `Error` to the facade's. The budget rules are not re-exported:
// a crate implementing its own store depends on `tokenbudget-core`, whose `rules` it calls.
pub use tokenbudget_core::Error as CoreError;
pub use tokenbudget_core::{event, id, model, outcome, period, store, time};
pub use tokenbudget_core::{
    format_usd, Every, Period, RecentQuery, RefusalReason, ReservationQuery, Unit, Window,
    MAX_MODEL_LEN,
};
pub use tokenbudget_core::{
    replay, Budget, BudgetId, BudgetStore, Charge, ChargeOutcome, Clock, CommitOutcome,
    DynBudgetStore, Event, EventKind, EventQuery, ExtendOutcome, Grant, IdGenerator,
    IdempotencyKey, LogCursor, LogPage, ManualClock, MemoryStore, NewBudget, Refusal,
    ReleaseReason, Reservation, ReservationId, ReservationState, ReserveOptions, ReserveOutcome,
    RollbackOutcome, SequentialIds, Status, SweepOutcome, SweeperHandle, SystemClock, Timestamp,
    Tracker, TrackerBuilder, UuidV7Ids, DEFAULT_TIMEOUT, MAX_DEPTH, MAX_TOKENS,
};

/// The token counters (crate `tokenbudget-counter`), whole.
pub use tokenbudget_counter as counter;
#[cfg(feature = "tiktoken")]
pub use tokenbudget_counter::OpenAiCounter;
pub use tokenbudget_counter::{
    Blocking, Content, ContentBlock, CounterId, Encoding, Estimator, Exactness, LocalCounter,
    Message, Role, TokenCount, TokenCounter, WithFallback,
};
#[cfg(feature = "claude")]
pub use tokenbudget_counter::{ClaudeConfig, ClaudeCounter, FailOpenClaudeCounter};

/// Prices per token and exact costs in micro-dollars (crate `tokenbudget-prices`), whole.
pub use tokenbudget_prices as prices;

/// The SQLite store (crate `tokenbudget-sqlite`), with feature `sqlite`.
#[cfg(feature = "sqlite")]
pub use tokenbudget_sqlite as sqlite;
#[cfg(feature = "sqlite")]
pub use tokenbudget_sqlite::SqliteStore;

/// The PostgreSQL store (crate `tokenbudget-postgres`), with feature `postgres`.
#[cfg(feature = "postgres")]
pub use tokenbudget_postgres as postgres;
#[cfg(feature = "postgres")]
pub use tokenbudget_postgres::PostgresStore;
