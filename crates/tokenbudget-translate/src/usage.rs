//! Usage in the shape the gateway settles.

use crate::openai::ChatUsage;

/// Tokens a translated response used, in Anthropic's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens not read from a cache.
    pub input_tokens: u64,
    /// Generated tokens (reasoning included).
    pub output_tokens: u64,
    /// Prompt tokens read from the upstream's cache.
    pub cache_read_input_tokens: u64,
    /// True when the upstream reported nothing and these are the gateway's own counts.
    pub estimated: bool,
}

impl Usage {
    /// Chat Completions usage in Anthropic's terms: `prompt_tokens` includes cached tokens,
    /// Anthropic's `input_tokens` does not.
    pub fn from_chat(usage: ChatUsage) -> Self {
        let cached = usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
        let cached = cached.min(usage.prompt_tokens);
        Usage {
            input_tokens: usage.prompt_tokens - cached,
            output_tokens: usage.completion_tokens,
            cache_read_input_tokens: cached,
            estimated: false,
        }
    }

    /// All tokens the response used.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_input_tokens
    }
}
