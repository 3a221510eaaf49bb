#![doc = include_str!("../README.md")]

pub mod error;
pub mod event;
pub mod id;
mod memory;
pub mod model;
pub mod outcome;
pub mod period;
pub mod rules;
pub mod store;
mod sweeper;
pub mod time;
mod tracker;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, Result};
pub use event::{replay, Event, EventKind, NewEvent, ReleaseReason};
pub use id::{BudgetId, IdGenerator, IdempotencyKey, ReservationId, SequentialIds, UuidV7Ids};
pub use memory::MemoryStore;
pub use model::{
    format_usd, Budget, Charge, NewBudget, Reservation, ReservationState, Status, Unit, MAX_DEPTH,
    MAX_MODEL_LEN, MAX_NOTE_LEN, MAX_TOKENS,
};
pub use outcome::{
    ChargeOutcome, CommitOutcome, ExtendOutcome, Grant, Refusal, RefusalReason, ReserveOutcome,
    RollbackOutcome, SweepOutcome,
};
pub use period::{Every, Period, Window};
pub use store::{
    BudgetStore, DynBudgetStore, EventQuery, LogCursor, LogPage, RecentQuery, ReservationQuery,
};
pub use sweeper::SweeperHandle;
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use tracker::{ReserveOptions, Tracker, TrackerBuilder, DEFAULT_TIMEOUT};
