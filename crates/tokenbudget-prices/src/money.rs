//! Money as integers: [`MicroUsd`] for amounts, [`PicoUsd`] for prices per token.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::decimal::{format_scaled, parse_scaled, DecimalError};
use crate::error::Error;

/// An amount of US dollars in whole micro-dollars (10⁻⁶ $): what a budget holds and what a
/// request costs.
///
/// # Behavior
///
/// - `Display` writes dollars with a `$`, at least two decimals and at most six, dropping
///   trailing zeros beyond the second: `$20.00`, `$1.50`, `$0.0105`, `$0.000123`. It is exact:
///   nothing is rounded.
/// - `FromStr` reads dollars: `20`, `20.5`, `0.000001`, with an optional leading `$` (so
///   every `Display` output parses back to the same amount). More than six decimals, a sign,
///   an exponent, spaces or a value above [`MicroUsd::MAX`] are [`Error::InvalidAmount`].
/// - serde reads and writes the integer number of micro-dollars (`20000000` for $20).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MicroUsd(u64);

impl MicroUsd {
    /// No money.
    pub const ZERO: MicroUsd = MicroUsd(0);
    /// The largest amount: about 18.4 trillion dollars.
    pub const MAX: MicroUsd = MicroUsd(u64::MAX);
    /// Micro-dollars in one dollar.
    pub const PER_DOLLAR: u64 = 1_000_000;

    /// `micros` micro-dollars.
    pub const fn new(micros: u64) -> Self {
        MicroUsd(micros)
    }

    /// Whole dollars, or `None` when that exceeds [`MicroUsd::MAX`].
    pub const fn from_dollars(dollars: u64) -> Option<Self> {
        match dollars.checked_mul(Self::PER_DOLLAR) {
            Some(micros) => Some(MicroUsd(micros)),
            None => None,
        }
    }

    /// The number of micro-dollars.
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub const fn checked_add(self, other: MicroUsd) -> Option<MicroUsd> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(MicroUsd(v)),
            None => None,
        }
    }

    /// `self - other`, or `None` when `other` is larger.
    pub const fn checked_sub(self, other: MicroUsd) -> Option<MicroUsd> {
        match self.0.checked_sub(other.0) {
            Some(v) => Some(MicroUsd(v)),
            None => None,
        }
    }
}

impl From<MicroUsd> for u64 {
    fn from(m: MicroUsd) -> u64 {
        m.0
    }
}

impl fmt::Display for MicroUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", format_scaled(u128::from(self.0), 6, 2))
    }
}

impl FromStr for MicroUsd {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidAmount {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let number = text.strip_prefix('$').unwrap_or(text);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (number.contains('.') && !digits(frac)) {
            return Err(invalid(
                "expected dollars such as 20, 20.5 or 0.000001 (digits, up to 6 decimals)",
            ));
        }
        if frac.len() > 6 {
            return Err(invalid(
                "more than 6 decimals (the unit is one micro-dollar)",
            ));
        }
        // Leading zeros are harmless in an amount; JSON's grammar forbids them, so drop them.
        let int = int.trim_start_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        let canonical = if frac.is_empty() {
            int.to_owned()
        } else {
            format!("{int}.{frac}")
        };
        match parse_scaled(&canonical, 6) {
            Ok(micros) => Ok(MicroUsd(micros)),
            Err(DecimalError::TooLarge) => Err(invalid("too large")),
            Err(e) => Err(invalid(&e.reason("micro-dollars"))),
        }
    }
}

/// A price per token in whole pico-dollars (10⁻¹² $): `3e-06` $/token is `PicoUsd(3_000_000)`.
///
/// One pico-dollar per token is one micro-dollar per million tokens, so
/// [`PicoUsd::per_million_tokens`] is exact. `Display` writes dollars per token
/// (`$0.000003`), exactly.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct PicoUsd(u64);

impl PicoUsd {
    /// `picos` pico-dollars.
    pub const fn new(picos: u64) -> Self {
        PicoUsd(picos)
    }

    /// The number of pico-dollars.
    pub const fn picos(self) -> u64 {
        self.0
    }

    /// The price of a million tokens at this price per token.
    pub const fn per_million_tokens(self) -> MicroUsd {
        MicroUsd(self.0)
    }

    /// Parses a LiteLLM price: the JSON number text of dollars per token, exactly.
    pub(crate) fn from_json_number(text: &str) -> Result<Self, DecimalError> {
        parse_scaled(text, 12).map(PicoUsd)
    }
}

impl fmt::Display for PicoUsd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", format_scaled(u128::from(self.0), 12, 2))
    }
}

/// `picos` pico-dollars as dollars, exactly (`$0.0025`): for cost breakdowns, whose lines are
/// exact before the total is rounded.
pub fn format_picos(picos: u128) -> String {
    format!("${}", format_scaled(picos, 12, 2))
}
