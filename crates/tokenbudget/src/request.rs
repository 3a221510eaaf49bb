//! The answer to "reserve for a request": the reserve outcome and how the prompt was counted.

use tokenbudget_core::{Grant, Refusal, ReserveOutcome};
use tokenbudget_counter::{CounterId, Exactness, TokenCount};

/// What [`TokenBudget::reserve_for_request`](crate::TokenBudget::reserve_for_request)
/// answers: the reserve outcome for `prompt + max_output_tokens`, and how the prompt was
/// counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestReservation {
    /// Granted (the tokens are held) or refused for lack of budget.
    pub outcome: ReserveOutcome,
    /// The prompt's count: tokens, the counter that produced it, exact or estimated.
    pub prompt: TokenCount,
    /// The request's maximum output tokens, as given.
    pub max_output_tokens: u64,
    /// Tokens asked of the budget: `prompt.tokens + max_output_tokens`.
    pub requested: u64,
}

impl RequestReservation {
    /// Whether the prompt count came from the model's tokenizer or is an estimate.
    pub fn exactness(&self) -> Exactness {
        self.prompt.exactness
    }

    /// True when the prompt count is exact.
    pub fn is_exact(&self) -> bool {
        self.prompt.is_exact()
    }

    /// The counter that counted the prompt (the fallback's, when one answered).
    pub fn counter(&self) -> CounterId {
        self.prompt.counter
    }

    /// The grant, if granted.
    pub fn granted(&self) -> Option<&Grant> {
        self.outcome.granted()
    }

    /// The refusal, if refused.
    pub fn refused(&self) -> Option<&Refusal> {
        self.outcome.refused()
    }

    /// `Ok(grant)` or `Err(refusal)`, for `?`.
    pub fn into_result(self) -> Result<Grant, Refusal> {
        self.outcome.into_result()
    }
}
