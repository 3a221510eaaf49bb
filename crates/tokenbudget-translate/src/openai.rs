//! The OpenAI Chat Completions shapes: the request this crate writes, and the response and
//! stream chunks it reads from OpenAI-compatible servers (OpenAI, LMStudio, vLLM, Ollama,
//! llama.cpp, mlx, OpenRouter).
//!
//! The read side is lenient on purpose: every field is optional, `choices: null` reads as
//! no choices, a tool call's `index` and `id` may be missing or null, `arguments` may be a
//! string or (some servers) a JSON object, and reasoning arrives as `reasoning_content`
//! (vLLM, LMStudio, DeepSeek) or `reasoning` (Ollama, OpenRouter).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A `POST /chat/completions` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The upstream model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Output limit (the field most OpenAI-compatible servers read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Output limit under its newer name (OpenAI reasoning models require it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Functions the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ChatTool>>,
    /// How it may call them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ChatToolChoice>,
    /// `false` to allow at most one call per turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `low`, `medium` or `high`, for upstreams that reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Stream as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options; `include_usage` is always on when streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
}

/// `stream_options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask for a final chunk carrying usage.
    pub include_usage: bool,
}

/// A message of a Chat Completions conversation, tagged by `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    /// System instructions.
    System {
        /// The text.
        content: String,
    },
    /// The user.
    User {
        /// Text, or parts when images are present.
        content: UserContent,
    },
    /// The model.
    Assistant {
        /// Its text (`null` when it only calls tools).
        content: Option<String>,
        /// Its tool calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<ToolCall>>,
    },
    /// A tool's answer.
    Tool {
        /// The call it answers.
        tool_call_id: String,
        /// The answer as text.
        content: String,
    },
}

/// A user message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserContent {
    /// Plain text (what every server accepts).
    Text(String),
    /// Text and image parts.
    Parts(Vec<ContentPart>),
}

/// A part of user content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL (`data:` URLs carry inline images).
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
}

/// `image_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// An `https:` or `data:` URL.
    pub url: String,
}

/// A tool call in an assistant message or a non-streaming response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id (missing from some servers' responses).
    #[serde(default)]
    pub id: Option<String>,
    /// Always `"function"`.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The call.
    pub function: FunctionCall,
}

fn function_kind() -> String {
    "function".to_owned()
}

/// A function call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments as JSON text.
    #[serde(default, deserialize_with = "arguments")]
    pub arguments: String,
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTool {
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

/// A function definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatToolChoice {
    /// `"auto"`, `"none"` or `"required"`.
    Mode(String),
    /// `{"type": "function", "function": {"name": …}}`.
    Function {
        /// Always `"function"`.
        #[serde(rename = "type")]
        kind: String,
        /// The function to call.
        function: NamedFunction,
    },
}

/// `{"name": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedFunction {
    /// The function's name.
    pub name: String,
}

/// Token usage as Chat Completions reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUsage {
    /// Prompt tokens, cached ones included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Generated tokens, reasoning included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Cache details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from a cache.
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cached_tokens: u64,
}

/// A non-streaming response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The upstream's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The model that answered.
    #[serde(default)]
    pub model: Option<String>,
    /// The answers (only the first is translated).
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<Choice>,
    /// Usage.
    #[serde(default)]
    pub usage: Option<ChatUsage>,
}

/// One answer of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The message.
    pub message: ResponseMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter`, …
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The assistant message of a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    /// Text.
    #[serde(default)]
    pub content: Option<String>,
    /// Reasoning (vLLM, LMStudio, DeepSeek).
    #[serde(default, alias = "reasoning")]
    pub reasoning_content: Option<String>,
    /// Tool calls.
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One streamed chunk (`data: {…}` of an SSE event).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// The upstream's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The model.
    #[serde(default)]
    pub model: Option<String>,
    /// Deltas; `null` (vLLM's usage chunk) and `[]` (OpenAI's) both read as empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<ChunkChoice>,
    /// Usage: on the final chunk, or on every chunk (vLLM's continuous usage stats).
    #[serde(default)]
    pub usage: Option<ChatUsage>,
    /// An error reported mid-stream (OpenRouter, vLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// A choice's delta.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// The choice index; only choice 0 is translated.
    #[serde(default)]
    pub index: Option<u32>,
    /// What is new.
    #[serde(default)]
    pub delta: Option<Delta>,
    /// Set on the last delta of a choice.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// What a chunk adds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// Text.
    #[serde(default)]
    pub content: Option<String>,
    /// Reasoning text (`reasoning` on Ollama and OpenRouter).
    #[serde(default, alias = "reasoning")]
    pub reasoning_content: Option<String>,
    /// Tool call pieces.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tool_calls: Vec<ToolCallDelta>,
}

/// A piece of a streamed tool call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call (missing on old Ollama and mlx; always 0 on some Ollama parsers).
    #[serde(default)]
    pub index: Option<u32>,
    /// The call's id: on the first piece (OpenAI), on every piece (some servers), null or
    /// missing (vLLM, mlx).
    #[serde(default)]
    pub id: Option<String>,
    /// The function piece.
    #[serde(default)]
    pub function: Option<FunctionDelta>,
}

/// A piece of a streamed function call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDelta {
    /// The name (on the first piece).
    #[serde(default)]
    pub name: Option<String>,
    /// A piece of the arguments' JSON text.
    #[serde(default, deserialize_with = "opt_arguments")]
    pub arguments: Option<String>,
}

fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

fn null_as_zero<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(de)?.unwrap_or(0))
}

/// Arguments as JSON text: a string is taken as is, any other JSON value (servers that send
/// an object) as its compact text, `null` as empty.
fn arguments<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    Ok(opt_arguments(de)?.unwrap_or_default())
}

fn opt_arguments<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(de)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}
