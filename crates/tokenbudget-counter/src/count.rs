//! The counting traits and their result type.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Encoding, Message, Result};

/// A token count, with who produced it and whether it is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenCount {
    /// The number of tokens.
    pub tokens: u64,
    /// The counter that produced it.
    pub counter: CounterId,
    /// Exact (the real tokenizer) or estimated.
    pub exactness: Exactness,
}

/// Whether a count came from the real tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exactness {
    /// The model's own tokenizer (or its API) produced the count.
    Exact,
    /// An estimate: the estimator, or a fallback after the exact counter was unavailable.
    Estimated,
}

/// Which counter produced a [`TokenCount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CounterId {
    /// [`OpenAiCounter`](crate::OpenAiCounter) with this encoding.
    Tiktoken(Encoding),
    /// [`ClaudeCounter`](crate::ClaudeCounter): the `count_tokens` API.
    Claude,
    /// [`Estimator`](crate::Estimator), calibrated against this encoding.
    Estimator(Encoding),
}

impl std::fmt::Display for CounterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CounterId::Tiktoken(e) => write!(f, "tiktoken/{e}"),
            CounterId::Claude => f.write_str("claude"),
            CounterId::Estimator(e) => write!(f, "estimator/{e}"),
        }
    }
}

impl TokenCount {
    /// An exact count.
    pub fn exact(tokens: u64, counter: CounterId) -> Self {
        TokenCount {
            tokens,
            counter,
            exactness: Exactness::Exact,
        }
    }

    /// An estimated count.
    pub fn estimated(tokens: u64, counter: CounterId) -> Self {
        TokenCount {
            tokens,
            counter,
            exactness: Exactness::Estimated,
        }
    }

    /// Whether the count is exact.
    pub fn is_exact(&self) -> bool {
        self.exactness == Exactness::Exact
    }
}

/// Counts tokens, possibly over the network. Object safe: share it as
/// `Arc<dyn TokenCounter>`.
///
/// # Behavior
/// - `count("")` is 0 for every local counter.
/// - The result's [`TokenCount::counter`] names the counter that actually answered (the
///   fallback's id when a [`WithFallback`](crate::WithFallback) fell back).
/// - A result is [`Exactness::Exact`] only when the model's tokenizer produced it.
/// - Local counters ([`LocalCounter`]) never return an error and never panic, whatever the
///   input.
#[async_trait]
pub trait TokenCounter: Send + Sync {
    /// The number of tokens in `text`, as the model sees a bare string.
    async fn count(&self, text: &str) -> Result<TokenCount>;

    /// The number of prompt tokens of a chat request made of `messages`, including the
    /// per-message framing of the chat format.
    async fn count_messages(&self, messages: &[Message]) -> Result<TokenCount>;
}

/// A counter that runs in the calling thread, without a runtime, and cannot fail.
///
/// Every `LocalCounter` in this crate also implements [`TokenCounter`], answering with the
/// same numbers.
pub trait LocalCounter: Send + Sync {
    /// The number of tokens in `text`.
    fn count_sync(&self, text: &str) -> TokenCount;

    /// The number of prompt tokens of `messages` (see [`TokenCounter::count_messages`]).
    fn count_messages_sync(&self, messages: &[Message]) -> TokenCount;
}

/// Tokens added per message by the chat format (OpenAI cookbook, gpt-3.5-turbo-0613 and
/// later).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens added when a message has a `name`.
pub const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the reply (`<|start|>assistant<|message|>`).
pub const REPLY_PRIMING_TOKENS: u64 = 3;

/// The cookbook's `num_tokens_from_messages`: 3 per message, the role, the content and the
/// name encoded as text, 1 more per name, and 3 for reply priming.
pub(crate) fn cookbook_messages(messages: &[Message], mut count: impl FnMut(&str) -> u64) -> u64 {
    let mut total = REPLY_PRIMING_TOKENS;
    for message in messages {
        total += TOKENS_PER_MESSAGE + count(message.role.as_str());
        message
            .content
            .for_each_text(&mut |text| total += count(text));
        if let Some(name) = &message.name {
            total += count(name) + TOKENS_PER_NAME;
        }
    }
    total
}

#[async_trait]
impl<T: TokenCounter + ?Sized> TokenCounter for Arc<T> {
    async fn count(&self, text: &str) -> Result<TokenCount> {
        (**self).count(text).await
    }

    async fn count_messages(&self, messages: &[Message]) -> Result<TokenCount> {
        (**self).count_messages(messages).await
    }
}

#[async_trait]
impl<T: TokenCounter + ?Sized> TokenCounter for Box<T> {
    async fn count(&self, text: &str) -> Result<TokenCount> {
        (**self).count(text).await
    }

    async fn count_messages(&self, messages: &[Message]) -> Result<TokenCount> {
        (**self).count_messages(messages).await
    }
}

impl<T: LocalCounter + ?Sized> LocalCounter for Arc<T> {
    fn count_sync(&self, text: &str) -> TokenCount {
        (**self).count_sync(text)
    }

    fn count_messages_sync(&self, messages: &[Message]) -> TokenCount {
        (**self).count_messages_sync(messages)
    }
}

/// Implements [`TokenCounter`] for a [`LocalCounter`] by answering synchronously.
macro_rules! token_counter_from_local {
    ($ty:ty) => {
        #[::async_trait::async_trait]
        impl $crate::TokenCounter for $ty {
            async fn count(&self, text: &str) -> $crate::Result<$crate::TokenCount> {
                Ok($crate::LocalCounter::count_sync(self, text))
            }

            async fn count_messages(
                &self,
                messages: &[$crate::Message],
            ) -> $crate::Result<$crate::TokenCount> {
                Ok($crate::LocalCounter::count_messages_sync(self, messages))
            }
        }
    };
}
pub(crate) use token_counter_from_local;
