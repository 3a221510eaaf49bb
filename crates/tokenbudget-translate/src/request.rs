//! Anthropic Messages request -> OpenAI Chat Completions request.

use serde::Deserialize;

use crate::anthropic::{
    AnthropicRequest, ContentBlock, ImageSource, InputMessage, MessageContent, Role, System,
    SystemBlock, Thinking, ToolChoice, ToolResultContent,
};
use crate::openai::{
    ChatMessage, ChatRequest, ChatTool, ChatToolChoice, ContentPart, FunctionCall, FunctionDef,
    ImageUrl, NamedFunction, StreamOptions, ToolCall, UserContent,
};
use crate::schema::adapt_schema;
use crate::target::{MaxTokensField, Reasoning, RouteTarget};
use crate::{Result, TranslateError};

/// Separates text blocks that become one Chat Completions string.
const BLOCK_SEPARATOR: &str = "\n\n";
/// Put before a failed tool's output, so the model sees `is_error`.
pub const TOOL_ERROR_PREFIX: &str = "Error: ";

/// Parses a Messages request body, with serde's message (unknown block type, missing field,
/// line and column) as a [`TranslateError::InvalidRequest`].
pub fn parse_request(body: &[u8]) -> Result<AnthropicRequest> {
    serde_json::from_slice(body).map_err(|e| TranslateError::InvalidRequest(e.to_string()))
}

/// [`parse_request`] for a body already parsed into a JSON value (as a proxy does to read
/// its model and size it), borrowed: its strings are copied, which takes about a third of
/// the time of parsing the bytes again, and less than consuming the value (which frees its
/// maps on the way). The caller can drop the value where its time does not count.
pub fn request_from_value(body: &serde_json::Value) -> Result<AnthropicRequest> {
    AnthropicRequest::deserialize(body).map_err(|e| TranslateError::InvalidRequest(e.to_string()))
}

/// Translates a Messages request into a Chat Completions request for `target`.
///
/// # Behavior
/// - `system` (string or text blocks) becomes the first message, a `system` one; an empty
///   system prompt adds none.
/// - Messages keep their order. A user message's `tool_result` blocks become `tool`
///   messages (in block order, before the rest of that message, as Chat Completions requires
///   them right after the assistant's calls); its text and images become one `user` message.
///   Text-only content is a string (every server takes one), blocks joined by a blank line;
///   with images it is a list of parts.
/// - A failed tool result (`is_error: true`) starts with [`TOOL_ERROR_PREFIX`]. Images in
///   a tool result (`tool` messages carry only text) follow in the user message after the
///   tool messages, each after a text part naming the call.
/// - An assistant message's text becomes its `content`, its `tool_use` blocks its
///   `tool_calls` (arguments as compact JSON). Its `thinking` and `redacted_thinking` blocks
///   are dropped: they are the model's own earlier reasoning (Anthropic-signed), which
///   Chat Completions servers reject or ignore; no user data is in them.
/// - `tools` become functions with [`adapt_schema`]'d parameters; `tool_choice` auto/any/
///   tool/none becomes `auto`/`required`/the named function/`none` (dropped when there are
///   no tools); `disable_parallel_tool_use` becomes `parallel_tool_calls: false`.
/// - `max_tokens` goes in the target's field; `stop_sequences` -> `stop`; `temperature` and
///   `top_p` as they are. `top_k` and `metadata` are not forwarded (no standard field; the
///   user id stays with the gateway). `cache_control` markers are dropped.
/// - `thinking` becomes `reasoning_effort` when the target supports it (budget < 4,096:
///   `low`, < 16,384: `medium`, else `high`; adaptive: `medium`) and is dropped otherwise.
/// - A streaming request always asks for `stream_options.include_usage`.
/// - Errors, forwarding nothing: missing `max_tokens`; `document` blocks, or anything but
///   text and images inside a tool result ([`TranslateError::UnsupportedContent`]); blocks in
///   the wrong role ([`TranslateError::MisplacedContent`]); Anthropic server tools
///   ([`TranslateError::UnsupportedTool`]); a client tool without a schema.
pub fn translate_request(req: &AnthropicRequest, target: &RouteTarget) -> Result<ChatRequest> {
    translate_request_owned(req.clone(), target)
}

/// [`translate_request`] taking the request: its texts move into the translation instead of
/// being copied (a proxy that needs only the model afterwards saves a copy of the prompt).
pub fn translate_request_owned(req: AnthropicRequest, target: &RouteTarget) -> Result<ChatRequest> {
    let max_tokens = req.max_tokens.ok_or(TranslateError::MissingMaxTokens)?;
    let tools = translate_tools(&req)?;
    let has_tools = tools.as_ref().is_some_and(|t| !t.is_empty());
    let (tool_choice, parallel_tool_calls) = match (&req.tool_choice, has_tools) {
        (Some(choice), true) => translate_tool_choice(choice),
        _ => (None, None),
    };
    let (max_tokens, max_completion_tokens) = match target.max_tokens_field {
        MaxTokensField::MaxTokens => (Some(max_tokens), None),
        MaxTokensField::MaxCompletionTokens => (None, Some(max_tokens)),
    };
    let stream = req.is_stream();
    let reasoning_effort = reasoning_effort(req.thinking.as_ref(), target.reasoning);
    Ok(ChatRequest {
        model: target.model.clone(),
        messages: messages_of(req.system, req.messages)?,
        max_tokens,
        max_completion_tokens,
        stop: req.stop_sequences.filter(|s| !s.is_empty()),
        temperature: req.temperature,
        top_p: req.top_p,
        tools: tools.filter(|t| !t.is_empty()),
        tool_choice,
        parallel_tool_calls,
        reasoning_effort,
        stream: stream.then_some(true),
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    })
}

/// The system prompt as one string (blocks joined by a blank line).
fn system_text(system: Option<System>) -> String {
    match system {
        None => String::new(),
        Some(System::Text(text)) => text,
        Some(System::Blocks(blocks)) => join_owned(
            blocks
                .into_iter()
                .map(|b| match b {
                    SystemBlock::Text { text } => text,
                })
                .collect(),
        ),
    }
}

pub(crate) fn translate_messages(req: &AnthropicRequest) -> Result<Vec<ChatMessage>> {
    messages_of(req.system.clone(), req.messages.clone())
}

fn messages_of(system: Option<System>, messages: Vec<InputMessage>) -> Result<Vec<ChatMessage>> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    let system = system_text(system);
    if !system.is_empty() {
        out.push(ChatMessage::System { content: system });
    }
    for (index, message) in messages.into_iter().enumerate() {
        match message.role {
            Role::User => user_message(index, message.content, &mut out)?,
            Role::Assistant => out.push(assistant_message(index, message.content)?),
            Role::System => out.push(system_message(index, message.content)?),
        }
    }
    Ok(out)
}

/// A `system` message among the others: a system message in its place. Only text can be
/// carried; anything else is a 400 naming the block.
fn system_message(index: usize, content: MessageContent) -> Result<ChatMessage> {
    let content = match content {
        MessageContent::Text(text) => text,
        MessageContent::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (block, content) in blocks.into_iter().enumerate() {
                match content {
                    ContentBlock::Text { text } => texts.push(text),
                    other => {
                        return Err(TranslateError::MisplacedContent {
                            message: index,
                            block,
                            kind: block_kind(&other),
                            role: "system".into(),
                        })
                    }
                }
            }
            join_owned(texts)
        }
    };
    Ok(ChatMessage::System { content })
}

fn user_message(index: usize, content: MessageContent, out: &mut Vec<ChatMessage>) -> Result<()> {
    let blocks = match content {
        MessageContent::Text(text) => {
            out.push(ChatMessage::User {
                content: UserContent::Text(text),
            });
            return Ok(());
        }
        MessageContent::Blocks(blocks) => blocks,
    };
    let had_tool_results = blocks
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolResult { .. }));
    let mut tool_images: Vec<ContentPart> = Vec::new();
    let mut parts: Vec<ContentPart> = Vec::new();
    for (block_index, block) in blocks.into_iter().enumerate() {
        match block {
            ContentBlock::Text { text } => parts.push(ContentPart::Text { text }),
            ContentBlock::Image { source } => parts.push(image_part(source)),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let text =
                    tool_result_text(index, block_index, &tool_use_id, content, &mut tool_images)?;
                let content = if is_error == Some(true) {
                    format!("{TOOL_ERROR_PREFIX}{text}")
                } else {
                    text
                };
                out.push(ChatMessage::Tool {
                    tool_call_id: tool_use_id,
                    content,
                });
            }
            other @ ContentBlock::Document(_) => {
                return Err(unsupported(index, block_index, &other))
            }
            other @ (ContentBlock::ToolUse { .. }
            | ContentBlock::Thinking { .. }
            | ContentBlock::RedactedThinking { .. }) => {
                return Err(misplaced(index, block_index, &other, "user"))
            }
        }
    }
    if parts.is_empty() && tool_images.is_empty() && had_tool_results {
        return Ok(());
    }
    tool_images.extend(parts);
    out.push(ChatMessage::User {
        content: user_content(tool_images),
    });
    Ok(())
}

/// A string when every part is text, else the parts.
fn user_content(parts: Vec<ContentPart>) -> UserContent {
    if parts.iter().all(|p| matches!(p, ContentPart::Text { .. })) {
        UserContent::Text(join_owned(
            parts
                .into_iter()
                .map(|p| match p {
                    ContentPart::Text { text } => text,
                    ContentPart::ImageUrl { .. } => String::new(),
                })
                .collect(),
        ))
    } else {
        UserContent::Parts(parts)
    }
}

fn tool_result_text(
    index: usize,
    block_index: usize,
    tool_use_id: &str,
    content: Option<ToolResultContent>,
    images: &mut Vec<ContentPart>,
) -> Result<String> {
    let blocks = match content {
        None => return Ok(String::new()),
        Some(ToolResultContent::Text(text)) => return Ok(text),
        Some(ToolResultContent::Blocks(blocks)) => blocks,
    };
    let mut texts = Vec::with_capacity(blocks.len());
    for block in blocks {
        match block {
            ContentBlock::Text { text } => texts.push(text),
            ContentBlock::Image { source } => {
                images.push(ContentPart::Text {
                    text: format!("[image returned by tool call {tool_use_id}]"),
                });
                images.push(image_part(source));
            }
            other => return Err(unsupported(index, block_index, &other)),
        }
    }
    Ok(join_owned(texts))
}

fn assistant_message(index: usize, content: MessageContent) -> Result<ChatMessage> {
    let blocks = match content {
        MessageContent::Text(text) => {
            return Ok(ChatMessage::Assistant {
                content: Some(text),
                tool_calls: None,
            })
        }
        MessageContent::Blocks(blocks) => blocks,
    };
    let mut texts: Vec<String> = Vec::new();
    let mut calls = Vec::new();
    for (block_index, block) in blocks.into_iter().enumerate() {
        match block {
            ContentBlock::Text { text } => texts.push(text),
            ContentBlock::ToolUse { id, name, input } => calls.push(ToolCall {
                id: Some(id),
                kind: "function".into(),
                function: FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            other @ (ContentBlock::Image { .. } | ContentBlock::Document(_)) => {
                return Err(unsupported(index, block_index, &other))
            }
            other @ ContentBlock::ToolResult { .. } => {
                return Err(misplaced(index, block_index, &other, "assistant"))
            }
        }
    }
    let content = if texts.is_empty() && !calls.is_empty() {
        None
    } else {
        Some(join_owned(texts))
    };
    Ok(ChatMessage::Assistant {
        content,
        tool_calls: (!calls.is_empty()).then_some(calls),
    })
}

fn image_part(source: ImageSource) -> ContentPart {
    let url = match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url,
    };
    ContentPart::ImageUrl {
        image_url: ImageUrl { url },
    }
}

pub(crate) fn translate_tools(req: &AnthropicRequest) -> Result<Option<Vec<ChatTool>>> {
    let Some(tools) = &req.tools else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(tools.len());
    for (index, tool) in tools.iter().enumerate() {
        if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
            return Err(TranslateError::UnsupportedTool {
                index,
                name: tool.name.clone(),
                kind: kind.to_owned(),
            });
        }
        let schema = tool
            .input_schema
            .as_ref()
            .ok_or(TranslateError::MissingInputSchema { index })?;
        out.push(ChatTool {
            kind: "function".into(),
            function: FunctionDef {
                name: tool.name.clone(),
                description: tool.description.clone(),
                parameters: adapt_schema(schema),
            },
        });
    }
    Ok(Some(out))
}

fn translate_tool_choice(choice: &ToolChoice) -> (Option<ChatToolChoice>, Option<bool>) {
    let mode = |m: &str| Some(ChatToolChoice::Mode(m.to_owned()));
    let serial = |d: &Option<bool>| (*d == Some(true)).then_some(false);
    match choice {
        ToolChoice::Auto {
            disable_parallel_tool_use,
        } => (mode("auto"), serial(disable_parallel_tool_use)),
        ToolChoice::Any {
            disable_parallel_tool_use,
        } => (mode("required"), serial(disable_parallel_tool_use)),
        ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        } => (
            Some(ChatToolChoice::Function {
                kind: "function".into(),
                function: NamedFunction { name: name.clone() },
            }),
            serial(disable_parallel_tool_use),
        ),
        ToolChoice::None => (mode("none"), None),
    }
}

fn reasoning_effort(thinking: Option<&Thinking>, support: Reasoning) -> Option<String> {
    if support != Reasoning::Effort {
        return None;
    }
    let effort = match thinking? {
        Thinking::Enabled { budget_tokens } if *budget_tokens < 4_096 => "low",
        Thinking::Enabled { budget_tokens } if *budget_tokens < 16_384 => "medium",
        Thinking::Enabled { .. } => "high",
        Thinking::Adaptive => "medium",
        Thinking::Disabled => return None,
    };
    Some(effort.to_owned())
}

/// `pieces` joined by [`BLOCK_SEPARATOR`]; a single piece is moved, not copied.
fn join_owned(mut pieces: Vec<String>) -> String {
    if pieces.len() <= 1 {
        return pieces.pop().unwrap_or_default();
    }
    pieces.join(BLOCK_SEPARATOR)
}

fn block_kind(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text { .. } => "text".into(),
        ContentBlock::Image { .. } => "image".into(),
        ContentBlock::ToolUse { .. } => "tool_use".into(),
        ContentBlock::ToolResult { .. } => "tool_result".into(),
        ContentBlock::Thinking { .. } => "thinking".into(),
        ContentBlock::RedactedThinking { .. } => "redacted_thinking".into(),
        ContentBlock::Document(_) => "document".into(),
    }
}

fn unsupported(message: usize, block: usize, content: &ContentBlock) -> TranslateError {
    TranslateError::UnsupportedContent {
        message,
        block,
        kind: block_kind(content),
    }
}

fn misplaced(message: usize, block: usize, content: &ContentBlock, role: &str) -> TranslateError {
    TranslateError::MisplacedContent {
        message,
        block,
        kind: block_kind(content),
        role: role.to_owned(),
    }
}
