#![doc = include_str!("../README.md")]

mod blocking;
#[cfg(feature = "claude")]
mod claude;
mod count;
mod encoding;
mod error;
mod estimate;
mod estimate_tables;
mod estimate_weights;
mod fallback;
mod memo;
mod message;
#[cfg(feature = "tiktoken")]
mod openai;

pub use blocking::Blocking;
#[cfg(feature = "claude")]
pub use claude::{
    ClaudeConfig, ClaudeCounter, FailOpenClaudeCounter, ANTHROPIC_VERSION, API_KEY_ENV,
    DEFAULT_BASE_URL, DEFAULT_TIMEOUT,
};
pub use count::{
    CounterId, Exactness, LocalCounter, TokenCount, TokenCounter, REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE, TOKENS_PER_NAME,
};
pub use encoding::Encoding;
pub use error::{Error, FallbackCause, Result};
pub use estimate::Estimator;
pub use fallback::WithFallback;
pub use memo::{Memo, MEMO_CAPACITY, MEMO_MIN_TEXT};
pub use message::{Content, ContentBlock, Message, Role};
#[cfg(feature = "tiktoken")]
pub use openai::OpenAiCounter;

/// The estimator's feature extraction, for `examples/fit_estimator.rs`. Not a stable API.
#[doc(hidden)]
pub mod estimator_internals {
    pub use crate::estimate::{features, FEATURES, FEATURE_NAMES};
}
