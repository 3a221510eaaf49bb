//! The Anthropic Messages API shapes this crate reads (requests) and writes (responses).
//!
//! Unknown fields are ignored, so new request options from clients do not break parsing;
//! unknown content block types fail to parse with serde's "unknown variant" message, which
//! [`parse_request`](crate::parse_request) turns into a 400.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `POST /v1/messages` (or `/v1/messages/count_tokens`) body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnthropicRequest {
    /// The model the client asked for (routing matches on it).
    pub model: String,
    /// The conversation.
    pub messages: Vec<InputMessage>,
    /// System prompt: a string or text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    /// Required by the Messages API; absent in `count_tokens` bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Custom stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling (no Chat Completions equivalent: not forwarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Extended thinking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    /// Request metadata (`user_id`); read by the gateway, not forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Whether to stream the answer as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

impl AnthropicRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
}

/// The `system` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum System {
    /// `"system": "…"`.
    Text(String),
    /// `"system": [{"type": "text", "text": "…"}, …]`.
    Blocks(Vec<SystemBlock>),
}

/// A system prompt block: only text exists in the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SystemBlock {
    /// A text block (its `cache_control` is ignored).
    Text {
        /// The text.
        text: String,
    },
}

/// Who wrote an input message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user (and tool results).
    User,
    /// The model (and its tool calls).
    Assistant,
    /// Instructions in the middle of the conversation (Claude Code 2.1 sends them).
    System,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputMessage {
    /// Who wrote it.
    pub role: Role,
    /// A string or blocks.
    pub content: MessageContent,
}

/// A message's content.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// `"content": "…"`.
    Text(String),
    /// `"content": [{"type": …}, …]`.
    Blocks(Vec<ContentBlock>),
}

/// A content block, tagged by `type`. `cache_control` and `citations` are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, inline (base64) or by URL.
    Image {
        /// Where the image is.
        source: ImageSource,
    },
    /// The model called a tool (in assistant messages).
    ToolUse {
        /// The call's id (`toolu_…`).
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments.
        input: Value,
    },
    /// A tool's answer (in user messages).
    ToolResult {
        /// The id of the call it answers.
        tool_use_id: String,
        /// A string or text/image blocks; may be absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent>,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// The model's visible reasoning from an earlier turn.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Anthropic's signature over it (meaningless to other models).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Encrypted reasoning from an earlier turn (only Anthropic can read it).
    RedactedThinking {
        /// The opaque payload.
        data: String,
    },
    /// A PDF or text document: Chat Completions has no portable equivalent.
    Document(serde_json::Map<String, Value>),
}

/// An image's source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// Inline bytes.
    Base64 {
        /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
        media_type: String,
        /// The base64 data.
        data: String,
    },
    /// A URL the model fetches.
    Url {
        /// The URL.
        url: String,
    },
}

/// A tool result's content.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    /// Plain text.
    Text(String),
    /// Blocks (text and images are translatable).
    Blocks(Vec<ContentBlock>),
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// The tool's name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of its input; absent for Anthropic's server tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// `custom` (or absent) for client tools; anything else is an Anthropic server tool
    /// (`web_search_20250305`, `bash_20250124`, …).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto {
        /// At most one tool call per turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call some tool.
    Any {
        /// At most one tool call per turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call this tool.
    Tool {
        /// The tool's name.
        name: String,
        /// At most one tool call per turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// No tool calls.
    None,
}

/// `thinking`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Thinking {
    /// Think with up to `budget_tokens`.
    Enabled {
        /// The thinking budget.
        budget_tokens: u32,
    },
    /// The model chooses how much to think.
    Adaptive,
    /// No thinking.
    Disabled,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A natural end.
    EndTurn,
    /// `max_tokens` was reached (or the upstream truncated the answer).
    MaxTokens,
    /// A stop sequence matched.
    StopSequence,
    /// The model called tools and waits for their results.
    ToolUse,
    /// The model refused.
    Refusal,
}

/// A non-streaming response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnthropicMessage {
    /// `msg_…`.
    pub id: String,
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `"assistant"`.
    pub role: String,
    /// The model name reported to the client.
    pub model: String,
    /// The answer's blocks.
    pub content: Vec<ResponseBlock>,
    /// Why it stopped.
    pub stop_reason: Option<StopReason>,
    /// The stop sequence that matched, when known.
    pub stop_sequence: Option<String>,
    /// Token usage.
    pub usage: AnthropicUsage,
}

/// A block of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    /// Reasoning.
    Thinking {
        /// The reasoning text.
        thinking: String,
        /// Empty: no Anthropic signature exists for another model's reasoning.
        signature: String,
    },
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call.
    ToolUse {
        /// The call's id.
        id: String,
        /// The tool.
        name: String,
        /// The arguments.
        input: Value,
    },
}

/// Usage in Anthropic's shape (`input_tokens` excludes cache reads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnthropicUsage {
    /// Prompt tokens not read from a cache.
    pub input_tokens: u64,
    /// Generated tokens (reasoning included).
    pub output_tokens: u64,
    /// Tokens written to a prompt cache (never reported by Chat Completions upstreams).
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    /// Prompt tokens read from a cache.
    #[serde(default)]
    pub cache_read_input_tokens: u64,
}

/// A string or a list of blocks, parsed without buffering (serde's `untagged` would hide the
/// inner error, such as an unknown block type, behind "did not match any variant").
fn string_or_blocks<'de, D, T>(
    de: D,
    text: fn(String) -> T,
    blocks: fn(Vec<ContentBlock>) -> T,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        text: fn(String) -> T,
        blocks: fn(Vec<ContentBlock>) -> T,
    }
    impl<'de, T> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or a list of content blocks")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            Ok((self.text)(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
            Ok((self.text)(v))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(block) = seq.next_element()? {
                out.push(block);
            }
            Ok((self.blocks)(out))
        }
    }
    de.deserialize_any(V { text, blocks })
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        string_or_blocks(de, MessageContent::Text, MessageContent::Blocks)
    }
}

impl<'de> Deserialize<'de> for ToolResultContent {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        string_or_blocks(de, ToolResultContent::Text, ToolResultContent::Blocks)
    }
}
