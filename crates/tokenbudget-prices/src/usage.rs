//! What a request used: tokens of each priced kind.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of token with its own price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenKind {
    /// Prompt tokens read fresh (not from, and not written to, the prompt cache).
    Input,
    /// Generated tokens, reasoning included.
    Output,
    /// Prompt tokens written to the cache with the default 5 minute lifetime.
    CacheWrite5m,
    /// Prompt tokens written to the cache with a 1 hour lifetime.
    CacheWrite1h,
    /// Prompt tokens read from the cache.
    CacheRead,
}

impl TokenKind {
    /// Every kind, in the order breakdowns list them.
    pub const ALL: [TokenKind; 5] = [
        TokenKind::Input,
        TokenKind::Output,
        TokenKind::CacheWrite5m,
        TokenKind::CacheWrite1h,
        TokenKind::CacheRead,
    ];

    /// The snake_case name used in JSON: `input`, `output`, `cache_write_5m`,
    /// `cache_write_1h`, `cache_read`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenKind::Input => "input",
            TokenKind::Output => "output",
            TokenKind::CacheWrite5m => "cache_write_5m",
            TokenKind::CacheWrite1h => "cache_write_1h",
            TokenKind::CacheRead => "cache_read",
        }
    }

    /// Whether tokens of this kind are part of the request's input, which is what
    /// long-context tiers are measured on (everything but output).
    pub const fn is_input(self) -> bool {
        !matches!(self, TokenKind::Output)
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tokens one request used (or is estimated to use), by kind.
///
/// The kinds do not overlap: `input` counts only the prompt tokens that were neither read
/// from nor written to the cache. That is Anthropic's `usage.input_tokens`; for OpenAI it is
/// `prompt_tokens` minus `prompt_tokens_details.cached_tokens` (which are `cache_read`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Fresh prompt tokens.
    pub input: u64,
    /// Generated tokens.
    pub output: u64,
    /// Prompt tokens written to the 5 minute cache (Anthropic `cache_creation.ephemeral_5m_input_tokens`).
    pub cache_write_5m: u64,
    /// Prompt tokens written to the 1 hour cache (Anthropic `cache_creation.ephemeral_1h_input_tokens`).
    pub cache_write_1h: u64,
    /// Prompt tokens read from the cache.
    pub cache_read: u64,
}

impl Usage {
    /// `input` fresh prompt tokens and `output` generated ones, no cache.
    pub const fn new(input: u64, output: u64) -> Self {
        Usage {
            input,
            output,
            cache_write_5m: 0,
            cache_write_1h: 0,
            cache_read: 0,
        }
    }

    /// The tokens of `kind`.
    pub const fn get(&self, kind: TokenKind) -> u64 {
        match kind {
            TokenKind::Input => self.input,
            TokenKind::Output => self.output,
            TokenKind::CacheWrite5m => self.cache_write_5m,
            TokenKind::CacheWrite1h => self.cache_write_1h,
            TokenKind::CacheRead => self.cache_read,
        }
    }

    /// The request's whole input: fresh, cache writes and cache reads (what long-context
    /// tiers are measured on). Saturates instead of overflowing.
    pub fn prompt_tokens(&self) -> u64 {
        TokenKind::ALL
            .iter()
            .filter(|k| k.is_input())
            .fold(0u64, |sum, k| sum.saturating_add(self.get(*k)))
    }
}
