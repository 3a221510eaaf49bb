//! Exact OpenAI counts: tiktoken's split written out by hand, then tiktoken's merges.

mod cache;
mod classes;
mod engine;
mod ranks;
mod split;

use engine::Engine;

use crate::count::{cookbook_messages, token_counter_from_local};
use crate::{Content, CounterId, Encoding, LocalCounter, Message, TokenCount};

/// Exact token counts for OpenAI models (`cl100k_base`, `o200k_base`).
///
/// The counts equal tiktoken's `encode_ordinary` (Python's on the whole test corpus, and
/// tiktoken-rs's on random text in the property tests): text that looks like a special token
/// (`<|endoftext|>`) is counted as ordinary text.
///
/// # Engine
///
/// tiktoken splits text with a regex, then merges each piece's bytes by rank. Here the split
/// is written out by hand for the two patterns (`src/openai/split.rs`, over Unicode classes
/// taken from the `regex` crate's own tables) and tested piece by piece against tiktoken's
/// regex. A piece that is a whole token costs one hash lookup; other pieces of up to 16
/// bytes run tiktoken's merge loop without allocating, longer ones are counted by the
/// backtracking encoder of [`bpe-openai`](https://crates.io/crates/bpe-openai) (whose
/// vocabulary is used throughout), and in texts over 4 KB a per-call memo remembers the
/// counts of multi-token pieces, since words recur. Every step is linear in the input, so
/// no input can crash or stall a count: a million spaces followed by a letter makes
/// tiktoken's regex overflow its stack, and is counted here at full speed.
///
/// The encoders are process-wide statics, built on first use (tens of milliseconds in a
/// release build, see the counter bench) and shared by every `OpenAiCounter`; constructing
/// a counter is free. Call [`OpenAiCounter::warm_up`] at startup to pay the cost before the
/// first request.
///
/// ```
/// use tokenbudget_counter::{Encoding, LocalCounter, Message, OpenAiCounter};
///
/// let counter = OpenAiCounter::for_model("gpt-4o");
/// assert_eq!(counter.encoding(), Encoding::O200kBase);
/// assert_eq!(counter.count_sync("hello world").tokens, 2);
/// // 3 priming + (3 + "user" + "hello world")
/// assert_eq!(counter.count_messages_sync(&[Message::user("hello world")]).tokens, 9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAiCounter {
    encoding: Encoding,
}

impl OpenAiCounter {
    /// A counter for `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        OpenAiCounter { encoding }
    }

    /// A counter for `model`'s encoding ([`Encoding::for_model`]; unknown models get
    /// [`Encoding::DEFAULT`]).
    pub fn for_model(model: &str) -> Self {
        Self::new(Encoding::for_model(model))
    }

    /// The encoding this counter uses.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Builds the shared encoder now if it has not been built yet.
    pub fn warm_up(&self) {
        Engine::get(self.encoding).warm_up();
    }

    /// The number of tokens in `text`. No token vector is built: each pre-tokenized piece is
    /// counted on its own, in place.
    pub fn count_tokens(&self, text: &str) -> u64 {
        Engine::get(self.encoding).count(text) as u64
    }
}

impl LocalCounter for OpenAiCounter {
    fn count_sync(&self, text: &str) -> TokenCount {
        TokenCount::exact(self.count_tokens(text), CounterId::Tiktoken(self.encoding))
    }

    /// # Note
    /// Exact when every message's content is a string (the cookbook formula). Content blocks
    /// are counted as the sum of their texts (tool calls as name plus JSON input); OpenAI does
    /// not document how it serializes those, so such a result is marked
    /// [`Estimated`](crate::Exactness::Estimated).
    fn count_messages_sync(&self, messages: &[Message]) -> TokenCount {
        let tokens = cookbook_messages(messages, |text| self.count_tokens(text));
        let id = CounterId::Tiktoken(self.encoding);
        if messages
            .iter()
            .all(|m| matches!(m.content, Content::Text(_)))
        {
            TokenCount::exact(tokens, id)
        } else {
            TokenCount::estimated(tokens, id)
        }
    }
}

token_counter_from_local!(OpenAiCounter);
