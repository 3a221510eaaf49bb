//! What a response used, and what that costs on a `tokens` budget.

use serde::{Deserialize, Serialize};

/// Token usage as the upstream reported it (or as estimated when a stream was cut).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    pub input: u64,
    /// Input tokens written to the prompt cache (5 minute and 1 hour writes together).
    pub cache_write: u64,
    /// The part of `cache_write` written to the 1 hour cache (Anthropic's
    /// `cache_creation.ephemeral_1h_input_tokens`), priced apart on `usd` budgets.
    #[serde(default)]
    pub cache_write_1h: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Output tokens.
    pub output: u64,
}

impl Usage {
    /// All input kinds together.
    pub fn prompt(&self) -> u64 {
        self.input
            .saturating_add(self.cache_write)
            .saturating_add(self.cache_read)
    }
}

/// Per-kind weights of a `tokens` budget: what one token of each kind costs.
///
/// Defaults to 1 for each kind: a response costs input + cache writes + cache reads + output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// Weight of uncached input tokens. Defaults to 1.
    pub input: u64,
    /// Weight of cache-write tokens. Defaults to 1.
    pub cache_write: u64,
    /// Weight of cache-read tokens. Defaults to 1.
    pub cache_read: u64,
    /// Weight of output tokens. Defaults to 1.
    pub output: u64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            input: 1,
            cache_write: 1,
            cache_read: 1,
            output: 1,
        }
    }
}

impl Weights {
    /// The cost of `usage`, saturating at `u64::MAX`.
    pub fn cost(&self, usage: &Usage) -> u64 {
        usage
            .input
            .saturating_mul(self.input)
            .saturating_add(usage.cache_write.saturating_mul(self.cache_write))
            .saturating_add(usage.cache_read.saturating_mul(self.cache_read))
            .saturating_add(usage.output.saturating_mul(self.output))
    }

    /// The most `prompt_tokens` input tokens can cost, whichever kinds the upstream reports
    /// them as (uncached, cache write or cache read).
    pub fn prompt_cost(&self, prompt_tokens: u64) -> u64 {
        let worst = self.input.max(self.cache_write).max(self.cache_read);
        prompt_tokens.saturating_mul(worst)
    }

    /// The cost of `tokens` output tokens.
    pub fn output_cost(&self, tokens: u64) -> u64 {
        tokens.saturating_mul(self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_weights_add_every_kind() {
        let usage = Usage {
            input: 10,
            cache_write: 20,
            cache_read: 30,
            output: 5,
            ..Usage::default()
        };
        assert_eq!(Weights::default().cost(&usage), 65);
        assert_eq!(usage.prompt(), 60);
    }

    #[test]
    fn weights_multiply_each_kind_and_prompt_cost_takes_the_worst() {
        let w = Weights {
            input: 2,
            cache_write: 3,
            cache_read: 1,
            output: 4,
        };
        let usage = Usage {
            input: 1,
            cache_write: 1,
            cache_read: 1,
            output: 1,
            ..Usage::default()
        };
        assert_eq!(w.cost(&usage), 10);
        assert_eq!(w.prompt_cost(10), 30);
        assert_eq!(w.output_cost(u64::MAX), u64::MAX);
    }
}
