//! Chat messages, in the JSON shapes of the Anthropic and OpenAI chat APIs.
//!
//! A JSON array of either API's messages parses into `Vec<Message>`:
//!
//! ```
//! use tokenbudget_counter::{Content, ContentBlock, Message, Role};
//!
//! let messages: Vec<Message> = serde_json::from_str(r#"[
//!     {"role": "system", "content": "Be brief."},
//!     {"role": "user", "name": "alice", "content": "Weather in Paris?"},
//!     {"role": "assistant", "content": [
//!         {"type": "text", "text": "Checking."},
//!         {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
//!     ]},
//!     {"role": "user", "content": [
//!         {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C, cloudy"}
//!     ]}
//! ]"#).unwrap();
//! assert_eq!(messages[1].name.as_deref(), Some("alice"));
//! assert!(matches!(&messages[2].content, Content::Blocks(b) if matches!(b[1], ContentBlock::ToolUse { .. })));
//! ```

use serde::{Deserialize, Deserializer, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// System instructions. The Claude API takes these as its separate `system` field.
    System,
    /// OpenAI's `developer` role (system instructions for reasoning models).
    Developer,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// OpenAI's `tool` role: a tool's output.
    Tool,
}

impl Role {
    /// The role as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// OpenAI's optional participant name (costs one extra token in the cookbook formula).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A string or a list of content blocks. JSON `null` (OpenAI assistant messages that only
    /// call tools) reads as empty text.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: Content,
}

/// A message's content: plain text or typed blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// `"content": "…"`.
    Text(String),
    /// `"content": [{"type": …}, …]`.
    Blocks(Vec<ContentBlock>),
}

/// One content block, tagged by its `type` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentBlock {
    /// `{"type": "text", "text": "…"}`.
    Text {
        /// The text.
        text: String,
    },
    /// `{"type": "tool_use", "id": "…", "name": "…", "input": {…}}`: the model calls a tool.
    ToolUse {
        /// The call's id, echoed by the matching tool result.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments, as JSON.
        input: serde_json::Value,
    },
    /// `{"type": "tool_result", "tool_use_id": "…", "content": …}`: a tool's answer.
    ToolResult {
        /// The id of the tool call this answers.
        tool_use_id: String,
        /// The result, as text or blocks; may be absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Content>,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Content::Text(text.to_owned())
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Text(text)
    }
}

impl From<Vec<ContentBlock>> for Content {
    fn from(blocks: Vec<ContentBlock>) -> Self {
        Content::Blocks(blocks)
    }
}

impl Message {
    /// A message with `role` and `content` and no name.
    pub fn new(role: Role, content: impl Into<Content>) -> Self {
        Message {
            role,
            name: None,
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<Content>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<Content>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<Content>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// The same message with a participant name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl Content {
    /// Calls `f` with each piece of text a local counter counts: each text block, a tool
    /// call's name and its input as compact JSON, and a tool result's content.
    ///
    /// # Note
    /// The pieces are counted separately and summed. How an API serializes tool calls into
    /// tokens is not public, so block content is an approximation for the OpenAI counter;
    /// plain string content is exact.
    pub fn for_each_text(&self, f: &mut dyn FnMut(&str)) {
        match self {
            Content::Text(text) => f(text),
            Content::Blocks(blocks) => {
                for block in blocks {
                    match block {
                        ContentBlock::Text { text } => f(text),
                        ContentBlock::ToolUse { name, input, .. } => {
                            f(name);
                            f(&input.to_string());
                        }
                        ContentBlock::ToolResult { content, .. } => {
                            if let Some(content) = content {
                                content.for_each_text(f);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(de: D) -> Result<Content, D::Error> {
    Ok(Option::<Content>::deserialize(de)?.unwrap_or_default())
}
