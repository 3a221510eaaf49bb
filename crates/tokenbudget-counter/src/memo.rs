//! [`Memo`]: a local counter that remembers the messages it has counted.
//!
//! An agent's session re-sends its whole history on every turn, so a proxy that counts each
//! request counts the same messages again and again; on a long session that is most of the
//! cost of a request. Every local counter here counts messages by the cookbook formula,
//! which is a sum over the messages: `REPLY_PRIMING_TOKENS` plus each message's own share.
//! [`Memo`] keeps each message's share, keyed by a hash of exactly what the share depends on
//! (the role, the name, whether the content is plain text, and every text the counter
//! reads), and adds the shares up.

use std::hash::Hasher as _;

use quick_cache::sync::Cache;
use xxhash_rust::xxh3::Xxh3;

use crate::count::{Exactness, LocalCounter, TokenCount, REPLY_PRIMING_TOKENS};
use crate::{Content, Message};

/// How many message shares a [`Memo`] keeps by default: about 5 MB, a few thousand turns of
/// a few hundred sessions.
pub const MEMO_CAPACITY: usize = 100_000;

/// The shortest bare text [`Memo`] remembers the count of.
pub const MEMO_MIN_TEXT: usize = 256;

/// Wraps a [`LocalCounter`] and remembers each message's share of
/// [`count_messages_sync`](LocalCounter::count_messages_sync).
///
/// # Behavior
/// - Answers exactly what the wrapped counter answers, count and exactness, for every text
///   and every list of messages, as long as the wrapped counter sums per-message shares by
///   the cookbook formula (every [`LocalCounter`] of this crate does; the tests check it).
/// - A message already counted is not counted again while its share is kept: the cost is
///   one pass of hashing over its texts. At most `capacity` shares are kept; the cache
///   evicts the ones least likely to be asked for again.
/// - The hash is XXH3-128 with a seed drawn at construction, so which texts share a key
///   cannot be known or chosen from outside the process; the texts' lengths are hashed too.
/// - [`count_sync`](LocalCounter::count_sync) on a text of at least [`MEMO_MIN_TEXT`] bytes
///   is remembered the same way (a request's tool definitions are such a text); shorter
///   texts are counted every time, which costs about what a hash would.
pub struct Memo<C> {
    inner: C,
    shares: Cache<u128, TokenCount>,
    seed: u64,
}

impl<C: LocalCounter> Memo<C> {
    /// Wraps `inner`, keeping up to [`MEMO_CAPACITY`] message shares.
    pub fn new(inner: C) -> Self {
        Self::with_capacity(inner, MEMO_CAPACITY)
    }

    /// Wraps `inner`, keeping up to `capacity` message shares.
    pub fn with_capacity(inner: C, capacity: usize) -> Self {
        Memo {
            inner,
            shares: Cache::new(capacity.max(1)),
            seed: random_seed(),
        }
    }

    /// The wrapped counter.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// How many message shares are kept now.
    pub fn len(&self) -> usize {
        self.shares.len()
    }

    /// Whether no share is kept.
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
    }

    /// One message's share of a count: the wrapped counter's count of it alone, less the
    /// reply priming every count adds once.
    fn share(&self, message: &Message) -> TokenCount {
        self.remember(self.key(message), || {
            let mut share = self
                .inner
                .count_messages_sync(std::slice::from_ref(message));
            share.tokens = share.tokens.saturating_sub(REPLY_PRIMING_TOKENS);
            share
        })
    }

    /// The count kept under `key`, or `count()` kept there. Callers asking for one key at
    /// once wait for the first one's count instead of counting too.
    fn remember(&self, key: u128, count: impl FnOnce() -> TokenCount) -> TokenCount {
        match self
            .shares
            .get_or_insert_with(&key, || Ok::<_, std::convert::Infallible>(count()))
        {
            Ok(count) => count,
            Err(never) => match never {},
        }
    }

    /// What a message's share depends on, hashed.
    fn key(&self, message: &Message) -> u128 {
        let mut h = Xxh3::with_seed(self.seed);
        let mut text = |t: &str| {
            h.write_u64(t.len() as u64);
            h.write(t.as_bytes());
        };
        text("message");
        text(message.role.as_str());
        match &message.name {
            Some(name) => {
                text("\u{1}");
                text(name);
            }
            None => text("\u{0}"),
        }
        text(match message.content {
            Content::Text(_) => "text",
            Content::Blocks(_) => "blocks",
        });
        message.content.for_each_text(&mut text);
        h.digest128()
    }
}

impl<C: LocalCounter> LocalCounter for Memo<C> {
    fn count_sync(&self, text: &str) -> TokenCount {
        if text.len() < MEMO_MIN_TEXT {
            return self.inner.count_sync(text);
        }
        let mut h = Xxh3::with_seed(self.seed);
        h.write(b"bare text");
        h.write_u64(text.len() as u64);
        h.write(text.as_bytes());
        self.remember(h.digest128(), || self.inner.count_sync(text))
    }

    fn count_messages_sync(&self, messages: &[Message]) -> TokenCount {
        let Some(first) = messages.first() else {
            return self.inner.count_messages_sync(messages);
        };
        let mut total = self.share(first);
        total.tokens += REPLY_PRIMING_TOKENS;
        for message in &messages[1..] {
            let share = self.share(message);
            total.tokens += share.tokens;
            if !share.is_exact() {
                total.exactness = Exactness::Estimated;
            }
        }
        total
    }
}

impl<C> std::fmt::Debug for Memo<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("shares", &self.shares.len())
            .finish_non_exhaustive()
    }
}

/// A seed no caller can predict: std's hasher keys come from the OS's random source.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x7462_6b5f_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContentBlock, Estimator, Role};

    fn session() -> Vec<Message> {
        vec![
            Message::new(Role::System, "You are terse."),
            Message::new(Role::User, "Read the file."),
            Message {
                role: Role::Assistant,
                name: None,
                content: Content::Blocks(vec![ContentBlock::ToolUse {
                    id: "toolu_1".into(),
                    name: "Read".into(),
                    input: serde_json::json!({"file_path": "/src/main.rs"}),
                }]),
            },
            Message {
                role: Role::User,
                name: Some("alice".into()),
                content: Content::Text("fn main() {}\n".repeat(50)),
            },
        ]
    }

    #[test]
    fn answers_what_the_estimator_answers_and_keeps_one_share_per_message() {
        let memo = Memo::new(Estimator::default());
        let messages = session();
        for n in 0..=messages.len() {
            let direct = Estimator::default().count_messages_sync(&messages[..n]);
            assert_eq!(
                memo.count_messages_sync(&messages[..n]),
                direct,
                "{n} messages"
            );
            // Asked again, from the kept shares.
            assert_eq!(
                memo.count_messages_sync(&messages[..n]),
                direct,
                "{n} again"
            );
        }
        assert_eq!(memo.len(), messages.len());
    }

    #[test]
    fn a_message_differing_only_in_role_name_or_shape_is_counted_anew() {
        let memo = Memo::new(Estimator::default());
        let text = Message::new(Role::User, "hello there");
        let as_block = Message {
            role: Role::User,
            name: None,
            content: Content::Blocks(vec![ContentBlock::Text {
                text: "hello there".into(),
            }]),
        };
        let named = Message {
            name: Some("bob".into()),
            ..text.clone()
        };
        let other_role = Message::new(Role::Assistant, "hello there");
        for m in [&text, &as_block, &named, &other_role] {
            memo.count_messages_sync(std::slice::from_ref(m));
        }
        assert_eq!(memo.len(), 4);
    }

    #[test]
    fn a_long_bare_text_is_remembered_and_a_short_one_is_not() {
        let memo = Memo::new(Estimator::default());
        let long = "{\"name\": \"Read\", \"parameters\": {}}, ".repeat(20);
        for text in ["short", long.as_str()] {
            assert_eq!(memo.count_sync(text), Estimator::default().count_sync(text));
            assert_eq!(memo.count_sync(text), Estimator::default().count_sync(text));
        }
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn a_full_cache_still_answers_right() {
        let memo = Memo::with_capacity(Estimator::default(), 1);
        let messages = session();
        assert_eq!(
            memo.count_messages_sync(&messages),
            Estimator::default().count_messages_sync(&messages)
        );
        assert!(memo.len() <= 1);
    }

    #[cfg(feature = "tiktoken")]
    #[test]
    fn keeps_the_exactness_of_the_tokenizer() {
        use crate::{Encoding, OpenAiCounter};
        let memo = Memo::new(OpenAiCounter::new(Encoding::O200kBase));
        let direct = OpenAiCounter::new(Encoding::O200kBase);
        let messages = session();
        // Plain text only: exact. With a tool call: estimated, as the tokenizer says.
        assert_eq!(
            memo.count_messages_sync(&messages[..2]),
            direct.count_messages_sync(&messages[..2])
        );
        assert!(memo.count_messages_sync(&messages[..2]).is_exact());
        assert_eq!(
            memo.count_messages_sync(&messages),
            direct.count_messages_sync(&messages)
        );
        assert!(!memo.count_messages_sync(&messages).is_exact());
    }

    fn message() -> impl proptest::strategy::Strategy<Value = Message> {
        use proptest::prelude::*;
        let text = "[a-zA-Zа-я0-9 \n{}\":,._]{0,300}";
        let role = prop_oneof![
            Just(Role::System),
            Just(Role::User),
            Just(Role::Assistant),
            Just(Role::Tool)
        ];
        let content = prop_oneof![
            text.prop_map(Content::Text),
            proptest::collection::vec(
                prop_oneof![
                    text.prop_map(|text| ContentBlock::Text { text }),
                    (text, text).prop_map(|(name, arg)| ContentBlock::ToolUse {
                        id: "toolu".into(),
                        name,
                        input: serde_json::json!({ "arg": arg }),
                    }),
                ],
                0..4
            )
            .prop_map(Content::Blocks),
        ];
        (role, proptest::option::of("[a-z]{1,8}"), content).prop_map(|(role, name, content)| {
            Message {
                role,
                name,
                content,
            }
        })
    }

    proptest::proptest! {
        /// Any list of messages, counted through one memo after others (so shares are
        /// shared between lists), equals the estimator's and the tokenizer's own count.
        #[test]
        fn a_memo_answers_what_its_counter_answers(
            lists in proptest::collection::vec(proptest::collection::vec(message(), 0..6), 1..4),
        ) {
            let estimator = Memo::with_capacity(Estimator::default(), 8);
            for messages in &lists {
                let expected = Estimator::default().count_messages_sync(messages);
                proptest::prop_assert_eq!(estimator.count_messages_sync(messages), expected);
                proptest::prop_assert_eq!(estimator.count_messages_sync(messages), expected);
            }
            #[cfg(feature = "tiktoken")]
            {
                use crate::{Encoding, OpenAiCounter};
                let tokenizer = Memo::new(OpenAiCounter::new(Encoding::Cl100kBase));
                for messages in &lists {
                    let expected = OpenAiCounter::new(Encoding::Cl100kBase).count_messages_sync(messages);
                    proptest::prop_assert_eq!(tokenizer.count_messages_sync(messages), expected);
                    proptest::prop_assert_eq!(tokenizer.count_messages_sync(messages), expected);
                }
            }
        }
    }
}
