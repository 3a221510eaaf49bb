#![doc = include_str!("../README.md")]

mod cost;
mod decimal;
mod error;
mod litellm;
mod model;
mod money;
mod resolve;
mod snapshot;
mod table;
mod usage;

pub use cost::{Cost, CostLine};
pub use error::{Error, Result};
pub use model::{ModelPrice, Rates, Tier};
pub use money::{format_picos, MicroUsd, PicoUsd};
pub use snapshot::{SNAPSHOT_DATE, SNAPSHOT_SOURCE};
pub use table::{PriceTable, Resolved};
pub use usage::{TokenKind, Usage};
