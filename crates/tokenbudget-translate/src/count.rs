//! `count_tokens` answered locally, for translated routes.

use tokenbudget_counter::{
    Content, ContentBlock, Encoding, Estimator, LocalCounter, Memo, Message, OpenAiCounter, Role,
};

use crate::anthropic::AnthropicRequest;
use crate::openai::{ChatMessage, ChatRequest, ChatTool, ContentPart, UserContent};
use crate::request::{translate_messages, translate_tools};
use crate::Result;

/// Tokens counted for each image: about what Anthropic charges for the largest image it
/// accepts without resizing (~1.15 megapixels / 750). The image's size is not decoded.
pub const IMAGE_TOKENS: u64 = 1_600;

/// A local `count_tokens` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCountAnswer {
    /// The prompt's tokens.
    pub input_tokens: u64,
    /// True only when the routed model's tokenizer counted plain-text messages (no tools,
    /// no images, no tool calls).
    pub exact: bool,
}

impl TokenCountAnswer {
    /// The response body of `POST /v1/messages/count_tokens`: `{"input_tokens": N}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "input_tokens": self.input_tokens }).to_string()
    }
}

/// Counts the prompt of `req` as it will reach `upstream_model`: the translated messages
/// and tool definitions, with the model's own tokenizer when it is an OpenAI-family name
/// ([`Encoding::try_for_model`]), else the [`Estimator`].
///
/// # Behavior
/// - Counts what is sent: the system prompt, each message with the cookbook's per-message
///   framing, tool calls (name and arguments), tool results, the adapted tool definitions as
///   JSON, and [`IMAGE_TOKENS`] per image.
/// - Fails like [`translate_request`](crate::translate_request) on untranslatable content
///   (a 400), but does not require `max_tokens`.
pub fn count_tokens(req: &AnthropicRequest, upstream_model: &str) -> Result<TokenCountAnswer> {
    let messages = translate_messages(req)?;
    let tools = translate_tools(req)?.unwrap_or_default();
    Ok(count_translated(
        &messages,
        &tools,
        &*plain_counter(upstream_model),
    ))
}

/// Counts a request already translated for its upstream (`chat.model`), as
/// [`count_tokens`] counts its Anthropic original, without translating it again: the
/// gateway translates once, sends, and counts while the upstream works on the answer.
///
/// # Behavior
/// - Counts the messages and tool definitions as sent (after any schema adaptation), with
///   `chat.model`'s tokenizer when it is an OpenAI-family name, else the [`Estimator`].
pub fn count_chat(chat: &ChatRequest) -> TokenCountAnswer {
    count_translated(
        &chat.messages,
        chat.tools.as_deref().unwrap_or_default(),
        &*plain_counter(&chat.model),
    )
}

/// [`count_chat`] and [`count_tokens`] for a process that counts many requests of the same
/// sessions: each counter is wrapped in a [`Memo`], so a message counted once (an agent
/// re-sends its whole history every turn) costs a hash, not a count, the next time.
///
/// # Behavior
/// - Answers exactly what [`count_chat`] and [`count_tokens`] answer.
/// - Keeps up to `capacity` message shares per tokenizer (and per estimator).
#[derive(Debug)]
pub struct ChatCounter {
    cl100k: Memo<OpenAiCounter>,
    o200k: Memo<OpenAiCounter>,
    estimator: Memo<Estimator>,
}

impl Default for ChatCounter {
    fn default() -> Self {
        Self::with_capacity(tokenbudget_counter::MEMO_CAPACITY)
    }
}

impl ChatCounter {
    /// Counters keeping up to `capacity` message shares each.
    pub fn with_capacity(capacity: usize) -> Self {
        ChatCounter {
            cl100k: Memo::with_capacity(OpenAiCounter::new(Encoding::Cl100kBase), capacity),
            o200k: Memo::with_capacity(OpenAiCounter::new(Encoding::O200kBase), capacity),
            estimator: Memo::with_capacity(Estimator::default(), capacity),
        }
    }

    /// [`count_chat`], remembering what it counted.
    pub fn count_chat(&self, chat: &ChatRequest) -> TokenCountAnswer {
        count_translated(
            &chat.messages,
            chat.tools.as_deref().unwrap_or_default(),
            self.counter(&chat.model),
        )
    }

    /// [`count_tokens`], remembering what it counted.
    pub fn count_tokens(
        &self,
        req: &AnthropicRequest,
        upstream_model: &str,
    ) -> Result<TokenCountAnswer> {
        let messages = translate_messages(req)?;
        let tools = translate_tools(req)?.unwrap_or_default();
        Ok(count_translated(
            &messages,
            &tools,
            self.counter(upstream_model),
        ))
    }

    fn counter(&self, model: &str) -> &dyn LocalCounter {
        match Encoding::try_for_model(model) {
            Some(Encoding::Cl100kBase) => &self.cl100k,
            Some(Encoding::O200kBase) => &self.o200k,
            // An encoding added to the counter crate after this was written: the tests of
            // `count_chat` and `ChatCounter` answering alike fail until it is added here.
            _ => &self.estimator,
        }
    }
}

/// The counter for `model`: its tokenizer when it is an OpenAI-family name, else the
/// estimator.
fn plain_counter(model: &str) -> Box<dyn LocalCounter> {
    match Encoding::try_for_model(model) {
        Some(encoding) => Box::new(OpenAiCounter::new(encoding)),
        None => Box::new(Estimator::default()),
    }
}

fn count_translated(
    messages: &[ChatMessage],
    tools: &[ChatTool],
    counter: &dyn LocalCounter,
) -> TokenCountAnswer {
    let mut images = 0u64;
    let mut plain = tools.is_empty();
    let counted: Vec<Message> = messages
        .iter()
        .map(|m| {
            let (message, pieces_plain) = counter_message(m, &mut images);
            plain &= pieces_plain;
            message
        })
        .collect();
    let count = counter.count_messages_sync(&counted);
    // The tool definitions are one text, the same on every turn of a session (a memo keeps
    // its count too).
    let tools_count = if tools.is_empty() {
        0
    } else {
        counter
            .count_sync(&serde_json::to_string(tools).unwrap_or_default())
            .tokens
    };
    TokenCountAnswer {
        input_tokens: count.tokens + tools_count + images * IMAGE_TOKENS,
        exact: count.is_exact() && plain && images == 0,
    }
}

/// The counter's view of a message, and whether it is a plain string.
fn counter_message(message: &ChatMessage, images: &mut u64) -> (Message, bool) {
    let text = |role: Role, text: &str| (Message::new(role, text), true);
    match message {
        ChatMessage::System { content } => text(Role::System, content),
        ChatMessage::Tool { content, .. } => text(Role::Tool, content),
        ChatMessage::User {
            content: UserContent::Text(content),
        } => text(Role::User, content),
        ChatMessage::User {
            content: UserContent::Parts(parts),
        } => {
            let blocks = parts
                .iter()
                .filter_map(|part| match part {
                    ContentPart::Text { text } => Some(ContentBlock::Text { text: text.clone() }),
                    ContentPart::ImageUrl { .. } => {
                        *images += 1;
                        None
                    }
                })
                .collect::<Vec<_>>();
            (Message::new(Role::User, Content::Blocks(blocks)), false)
        }
        ChatMessage::Assistant {
            content,
            tool_calls,
        } => {
            let Some(calls) = tool_calls.as_ref().filter(|c| !c.is_empty()) else {
                return text(Role::Assistant, content.as_deref().unwrap_or_default());
            };
            let mut blocks = Vec::with_capacity(calls.len() * 2 + 1);
            if let Some(content) = content {
                blocks.push(ContentBlock::Text {
                    text: content.clone(),
                });
            }
            for call in calls {
                blocks.push(ContentBlock::Text {
                    text: call.function.name.clone(),
                });
                blocks.push(ContentBlock::Text {
                    text: call.function.arguments.clone(),
                });
            }
            (
                Message::new(Role::Assistant, Content::Blocks(blocks)),
                false,
            )
        }
    }
}
