//! What a request costs in its budget's unit, pure: weighted tokens on a `tokens` budget,
//! the price table's micro-dollars for the model on a `usd` budget.
//!
//! Admission holds the worst case of the prompt bound plus `max_tokens`: on a `usd` budget
//! the prompt is priced as its dearest kind (fresh input, a 5 minute or 1 hour cache write,
//! a cache read: whichever the model's entry prices highest), since the upstream decides
//! which kind each prompt token is. A usage that mixes kinds costs at most that (the price
//! is linear in each kind within a tier, and a smaller prompt never lands in a dearer tier).

use tokenbudget::prices::{PriceTable, TokenKind, Usage as Priced};
use tokenbudget::Unit;

use crate::admit::Ask;
use crate::error::{Error, Result};
use crate::usage::{Usage, Weights};

/// How one request is measured: its budget's unit, and for dollars the model that prices it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meter {
    /// A `tokens` budget: usage times the configured [`Weights`].
    Tokens(Weights),
    /// A `usd` budget: the price table's cost of the usage of this model (micro-dollars).
    Usd {
        /// The model sent upstream (the name the price table is asked for).
        model: String,
    },
}

/// The prompt kinds a usd hold considers, with the usage that puts the whole prompt there.
const PROMPT_KINDS: [TokenKind; 4] = [
    TokenKind::Input,
    TokenKind::CacheWrite5m,
    TokenKind::CacheWrite1h,
    TokenKind::CacheRead,
];

fn with_prompt_as(kind: TokenKind, prompt: u64, output: u64) -> Priced {
    let mut usage = Priced::new(0, output);
    match kind {
        TokenKind::CacheWrite5m => usage.cache_write_5m = prompt,
        TokenKind::CacheWrite1h => usage.cache_write_1h = prompt,
        TokenKind::CacheRead => usage.cache_read = prompt,
        _ => usage.input = prompt,
    }
    usage
}

/// The gateway's usage as the price table reads it: cache writes are 5 minute ones except
/// the part the upstream reported as 1 hour.
pub fn priced(usage: &Usage) -> Priced {
    let one_hour = usage.cache_write_1h.min(usage.cache_write);
    Priced {
        input: usage.input,
        output: usage.output,
        cache_write_5m: usage.cache_write - one_hour,
        cache_write_1h: one_hour,
        cache_read: usage.cache_read,
    }
}

fn price_error(model: &str, e: tokenbudget::prices::Error) -> Error {
    Error::Price {
        model: model.to_owned(),
        reason: e.to_string(),
    }
}

impl Meter {
    /// The meter for a budget counting in `unit`, for a request naming `model`.
    ///
    /// # Errors
    /// On a `usd` budget, [`Error::Price`] when the request names no model or one the table
    /// cannot price: the request is refused before anything is forwarded, never priced at 0.
    pub fn new(
        unit: Unit,
        weights: Weights,
        prices: &PriceTable,
        model: Option<&str>,
    ) -> Result<Self> {
        match unit {
            Unit::Tokens => Ok(Self::Tokens(weights)),
            _ => {
                let model = model.ok_or_else(|| Error::Price {
                    model: String::new(),
                    reason: "the request names no model, and a usd budget prices by model".into(),
                })?;
                // Priced once here so an unknown model is refused now, not at settlement.
                prices
                    .cost(model, &Priced::new(1, 1))
                    .map_err(|e| price_error(model, e))?;
                Ok(Self::Usd {
                    model: model.to_owned(),
                })
            }
        }
    }

    /// The budget's unit.
    pub fn unit(&self) -> Unit {
        match self {
            Self::Tokens(_) => Unit::Tokens,
            Self::Usd { .. } => Unit::Usd,
        }
    }

    /// What `usage` costs.
    ///
    /// # Errors
    /// [`Error::Price`] when the usage has a kind the model's entry has no price for.
    pub fn cost(&self, prices: &PriceTable, usage: &Usage) -> Result<u64> {
        match self {
            Self::Tokens(w) => Ok(w.cost(usage)),
            Self::Usd { model } => prices
                .cost(model, &priced(usage))
                .map(|c| c.micros())
                .map_err(|e| price_error(model, e)),
        }
    }

    /// The most a request with a `prompt`-token prompt and `max_tokens` output can cost.
    ///
    /// # Errors
    /// [`Error::Price`] when the model has no price for fresh input or output.
    pub fn hold(&self, prices: &PriceTable, prompt: u64, max_tokens: u64) -> Result<u64> {
        match self {
            Self::Tokens(w) => Ok(w
                .prompt_cost(prompt)
                .saturating_add(w.output_cost(max_tokens))),
            Self::Usd { model } => {
                let cost = |kind| {
                    prices
                        .cost(model, &with_prompt_as(kind, prompt, max_tokens))
                        .map(|c| c.micros())
                };
                // Fresh input and output must be priced; a cache kind the entry has no price
                // for is one the upstream cannot bill this model for.
                let mut worst = cost(TokenKind::Input).map_err(|e| price_error(model, e))?;
                for kind in &PROMPT_KINDS[1..] {
                    match cost(*kind) {
                        Ok(c) => worst = worst.max(c),
                        Err(tokenbudget::prices::Error::MissingPrice { .. }) => {}
                        Err(e) => return Err(price_error(model, e)),
                    }
                }
                Ok(worst)
            }
        }
    }

    /// The `max_tokens` that `available` can pay for after the prompt, when at least
    /// `ask.min_output` fits (or all of `ask.max_tokens`, when that is less); `None` when
    /// even that does not. Never above `ask.max_tokens`.
    ///
    /// # Errors
    /// As [`Meter::hold`].
    pub fn clamp(&self, prices: &PriceTable, available: u64, ask: &Ask) -> Result<Option<u64>> {
        let least = ask.min_output.min(ask.max_tokens);
        let fits = |m: u64| self.hold(prices, ask.prompt, m).map(|h| h <= available);
        if !fits(least)? {
            return Ok(None);
        }
        // `hold` grows with the output, so the largest output that fits is found by
        // bisection: `lo` always fits, `hi + 1` never does.
        let (mut lo, mut hi) = (least, ask.max_tokens);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid)? {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(Some(lo))
    }

    /// An amount in this meter's unit, as people read it (`1234 tokens`, `$0.0105`).
    pub fn format(&self, amount: u64) -> String {
        self.unit().format(amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(model: &str) -> Meter {
        Meter::new(
            Unit::Usd,
            Weights::default(),
            &PriceTable::embedded(),
            Some(model),
        )
        .unwrap()
    }

    fn ask(prompt: u64, max_tokens: u64, min_output: u64) -> Ask {
        Ask {
            prompt,
            max_tokens,
            min_output,
        }
    }

    #[test]
    fn usd_costs_are_the_price_tables() {
        let prices = PriceTable::embedded();
        let m = usd("claude-sonnet-4-5");
        // $3 / M input, $15 / M output.
        let usage = Usage {
            input: 1_000,
            output: 500,
            ..Usage::default()
        };
        assert_eq!(m.cost(&prices, &usage).unwrap(), 10_500);
        assert_eq!(
            m.cost(&prices, &usage).unwrap(),
            prices
                .cost("claude-sonnet-4-5", &Priced::new(1_000, 500))
                .unwrap()
                .micros()
        );
        assert_eq!(m.format(10_500), "$0.0105");
    }

    #[test]
    fn the_usd_hold_prices_the_prompt_at_its_dearest_kind() {
        let prices = PriceTable::embedded();
        let m = usd("claude-sonnet-4-5");
        let hold = m.hold(&prices, 1_000, 500).unwrap();
        // A 1 hour cache write ($6 / M) is the dearest kind: 6_000 + 7_500.
        assert_eq!(hold, 13_500);
        for usage in [
            Usage {
                input: 1_000,
                output: 500,
                ..Usage::default()
            },
            Usage {
                cache_write: 1_000,
                output: 500,
                ..Usage::default()
            },
            Usage {
                cache_write: 1_000,
                cache_write_1h: 1_000,
                output: 500,
                ..Usage::default()
            },
            Usage {
                cache_read: 600,
                cache_write: 400,
                cache_write_1h: 100,
                output: 500,
                ..Usage::default()
            },
        ] {
            assert!(m.cost(&prices, &usage).unwrap() <= hold, "{usage:?}");
        }
    }

    #[test]
    fn unknown_or_missing_models_are_refused_on_usd_and_ignored_on_tokens() {
        let prices = PriceTable::embedded();
        for model in [None, Some("no-such-model-xyz")] {
            let e = Meter::new(Unit::Usd, Weights::default(), &prices, model).unwrap_err();
            assert!(matches!(e, Error::Price { .. }), "{e}");
        }
        assert_eq!(
            Meter::new(
                Unit::Tokens,
                Weights::default(),
                &prices,
                Some("no-such-model-xyz")
            )
            .unwrap(),
            Meter::Tokens(Weights::default())
        );
    }

    #[test]
    fn the_usd_clamp_finds_the_largest_output_that_fits() {
        let prices = PriceTable::embedded();
        let m = usd("claude-sonnet-4-5");
        let a = ask(1_000, 32_000, 100);
        // 1 000 prompt tokens at $6 / M hold 6 000 µ$; each output token is 15 µ$.
        let cases = [
            (6_000 + 15 * 100 - 1, None),
            (6_000 + 15 * 100, Some(100)),
            (6_000 + 15 * 1_234 + 14, Some(1_234)),
            (u64::MAX / 2, Some(32_000)),
        ];
        for (available, want) in cases {
            let got = m.clamp(&prices, available, &a).unwrap();
            assert_eq!(got, want, "{available}");
            if let Some(out) = got {
                assert!(m.hold(&prices, 1_000, out).unwrap() <= available);
                if out < a.max_tokens {
                    assert!(m.hold(&prices, 1_000, out + 1).unwrap() > available);
                }
            }
        }
    }

    #[test]
    fn the_tokens_clamp_is_the_closed_form() {
        let prices = PriceTable::embedded();
        let m = Meter::Tokens(Weights {
            output: 5,
            ..Weights::default()
        });
        assert_eq!(
            m.clamp(&prices, 10_000, &ask(1_000, 32_000, 100)).unwrap(),
            Some(1_800)
        );
        assert_eq!(m.hold(&prices, 1_000, 1_800).unwrap(), 10_000);
    }
}
