//! Admission: reserve the prompt plus `max_tokens` before forwarding, lowering `max_tokens`
//! to what the budget can pay for when there is room for the prompt and a minimum output.

use std::time::Duration;

use tokenbudget::{BudgetId, Grant, ReserveOptions, ReserveOutcome, TokenBudget};

use crate::error::{Error, Result};
use crate::usage::Weights;

/// What a request asks to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The prompt's bound (tokens).
    pub prompt: u64,
    /// The request's `max_tokens`.
    pub max_tokens: u64,
    /// The least output worth forwarding for (tokens).
    pub min_output: u64,
}

/// A granted admission.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The reservation holding the request's worst-case cost.
    pub grant: Grant,
    /// The `max_tokens` to forward (the request's, or lowered).
    pub max_tokens: u64,
    /// True when `max_tokens` was lowered.
    pub clamped: bool,
}

/// The `max_tokens` that `available` can pay for after the prompt, when at least
/// `min_output` fits; `None` when even that does not. Never above `ask.max_tokens`.
pub fn clamp(available: u64, ask: &Ask, weights: &Weights) -> Option<u64> {
    let prompt_cost = weights.prompt_cost(ask.prompt);
    let room = available.checked_sub(prompt_cost)?;
    let per_token = weights.output.max(1);
    let affordable = (room / per_token).min(ask.max_tokens);
    (affordable >= ask.min_output.min(ask.max_tokens)).then_some(affordable)
}

/// The tokens to hold for `ask` with `max_tokens` output.
pub fn hold(ask: &Ask, max_tokens: u64, weights: &Weights) -> u64 {
    weights
        .prompt_cost(ask.prompt)
        .saturating_add(weights.output_cost(max_tokens))
}

/// How many times admission retries with a lower `max_tokens` when a refusal names a budget
/// with less room (concurrent requests can take room between tries; each try is atomic, so
/// stopping early only refuses, it never overdraws).
const TRIES: usize = 4;

/// Reserves for `ask` on `budget`, lowering `max_tokens` when the chain lacks room for all of
/// it. A refusal is [`Error::Refused`] naming the budget and what it has left.
pub async fn admit(
    budgets: &TokenBudget,
    budget: &BudgetId,
    ask: Ask,
    weights: &Weights,
    timeout: Duration,
) -> Result<Admitted> {
    let mut max_tokens = ask.max_tokens;
    let mut last = None;
    for _ in 0..TRIES {
        let tokens = hold(&ask, max_tokens, weights);
        let options = ReserveOptions::new().with_timeout(timeout);
        match budgets.reserve(budget, tokens, options).await? {
            ReserveOutcome::Granted(grant) => {
                return Ok(Admitted {
                    grant,
                    max_tokens,
                    clamped: max_tokens < ask.max_tokens,
                })
            }
            ReserveOutcome::Refused(refusal) => {
                let lower = clamp(refusal.available, &ask, weights).filter(|&m| m < max_tokens);
                last = Some(refusal);
                match lower {
                    Some(m) => max_tokens = m,
                    None => break,
                }
            }
        }
    }
    let refusal = last.ok_or_else(|| Error::Internal("admission made no attempt".into()))?;
    Err(Error::Refused {
        budget: refusal.budget_id.to_string(),
        requested: refusal.requested,
        available: refusal.available,
        prompt: weights.prompt_cost(ask.prompt),
        min_output: ask.min_output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Weights = Weights {
        input: 1,
        cache_write: 1,
        cache_read: 1,
        output: 1,
    };

    fn ask(prompt: u64, max_tokens: u64, min_output: u64) -> Ask {
        Ask {
            prompt,
            max_tokens,
            min_output,
        }
    }

    #[test]
    fn clamp_cases() {
        // (available, prompt, max_tokens, min_output) -> max_tokens to forward
        let cases = [
            (10_000, 1_000, 32_000, 1_000, Some(9_000)),
            (10_000, 1_000, 4_000, 1_000, Some(4_000)),
            (1_999, 1_000, 32_000, 1_000, None),
            (2_000, 1_000, 32_000, 1_000, Some(1_000)),
            (999, 1_000, 32_000, 0, None),
            (1_000, 1_000, 32_000, 0, Some(0)),
            // A request asking for less than the minimum needs only what it asks.
            (1_100, 1_000, 100, 1_000, Some(100)),
        ];
        for (available, prompt, max, min, want) in cases {
            assert_eq!(
                clamp(available, &ask(prompt, max, min), &W),
                want,
                "{available} {prompt} {max} {min}"
            );
        }
    }

    #[test]
    fn weights_scale_the_clamp() {
        let w = Weights { output: 5, ..W };
        assert_eq!(clamp(10_000, &ask(1_000, 32_000, 100), &w), Some(1_800));
        assert_eq!(hold(&ask(1_000, 1_800, 100), 1_800, &w), 10_000);
    }
}
