//! Cost = Σ tokens × price per token, in exact integers, rounded up once.

use crate::error::{Error, Result};
use crate::model::ModelPrice;
use crate::money::{MicroUsd, PicoUsd};
use crate::usage::{TokenKind, Usage};

/// Pico-dollars in a micro-dollar.
const PICOS_PER_MICRO: u128 = 1_000_000;

/// What one request's usage costs.
///
/// # Behavior
///
/// - Each kind's amount is `tokens × price per token` in pico-dollars, exact (`u128`).
/// - `total` is the sum of the amounts rounded **up** to a whole micro-dollar, once: 1 token
///   at $0.000003 costs $0.000003; 1 token at $0.0000001 costs $0.000001, not zero.
/// - Kinds with no tokens cost nothing, priced or not; tokens of a kind the model has no price
///   for are [`Error::MissingPrice`], never free.
/// - Past a long-context threshold every kind is priced at the tier's rate where the tier
///   lists one (see [`ModelPrice::tier_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cost {
    /// The table entry that priced the request.
    pub model: String,
    /// The long-context threshold the request exceeded, if it was priced in a tier.
    pub tier_above_input_tokens: Option<u64>,
    /// One line per kind with tokens, in [`TokenKind::ALL`] order.
    pub lines: Vec<CostLine>,
    /// The whole cost, rounded up to a micro-dollar.
    pub total: MicroUsd,
}

/// The cost of one token kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CostLine {
    /// The kind.
    pub kind: TokenKind,
    /// Tokens of it.
    pub tokens: u64,
    /// The price per token applied.
    pub rate: PicoUsd,
    /// `tokens × rate`, exact, in pico-dollars.
    pub picos: u128,
}

pub(crate) fn compute(model: &str, price: &ModelPrice, usage: &Usage) -> Result<Cost> {
    compute_at(model, price, usage, usage.prompt_tokens())
}

/// [`compute`] with the tier chosen by `prompt` instead of the usage's own prompt.
pub(crate) fn compute_at(
    model: &str,
    price: &ModelPrice,
    usage: &Usage,
    prompt: u64,
) -> Result<Cost> {
    let tier = price.tier_for_prompt(prompt);
    let mut lines = Vec::new();
    let mut picos: u128 = 0;
    for kind in TokenKind::ALL {
        let tokens = usage.get(kind);
        if tokens == 0 {
            continue;
        }
        let rate = tier
            .and_then(|t| t.rates.get(kind))
            .or_else(|| price.base.get(kind))
            .ok_or_else(|| Error::MissingPrice {
                model: model.to_owned(),
                kind,
            })?;
        // u64 × u64 always fits in u128; only the sum can overflow.
        let amount = u128::from(tokens) * u128::from(rate.picos());
        picos = picos.checked_add(amount).ok_or_else(|| overflow(model))?;
        lines.push(CostLine {
            kind,
            tokens,
            rate,
            picos: amount,
        });
    }
    let micros = picos.div_ceil(PICOS_PER_MICRO);
    let total = u64::try_from(micros).map_err(|_| overflow(model))?;
    Ok(Cost {
        model: model.to_owned(),
        tier_above_input_tokens: tier.map(|t| t.above_input_tokens),
        lines,
        total: MicroUsd::new(total),
    })
}

fn overflow(model: &str) -> Error {
    Error::Overflow {
        model: model.to_owned(),
    }
}
