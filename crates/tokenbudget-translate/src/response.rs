//! OpenAI Chat Completions response -> Anthropic message (non-streaming).

use crate::anthropic::{AnthropicMessage, AnthropicUsage, ResponseBlock, StopReason};
use crate::openai::{ChatChunk, ChatResponse, ChunkChoice, Delta, FunctionDelta, ToolCallDelta};
use crate::stream::clean_id;
use crate::usage::Usage;
use crate::{Result, TranslateError};

/// Translates a non-streaming response into an Anthropic message with id `message_id`,
/// reporting `model` (the name the client asked for).
///
/// # Behavior
/// - The first choice is translated: reasoning (`reasoning_content`/`reasoning`) becomes a
///   `thinking` block, then the text a `text` block (omitted when empty), then each tool call
///   a `tool_use` block (a missing id is made up).
/// - `finish_reason` maps as in the stream (`stop` -> `end_turn`, or `tool_use` when there
///   are tool calls; `length` -> `max_tokens`; `tool_calls` -> `tool_use`;
///   `content_filter` -> `refusal`).
/// - Usage: `input_tokens` is `prompt_tokens` less cached tokens, which become
///   `cache_read_input_tokens`. Without usage, zeros: the gateway then settles its own
///   counts (see [`response_usage`]).
/// - Errors ([`TranslateError::Upstream`]): no choices; tool call arguments that are not
///   JSON (unless the answer was cut by `length`, where the call is dropped as Anthropic
///   would never have sent it).
pub fn translate_response(
    response: &ChatResponse,
    message_id: &str,
    model: &str,
) -> Result<AnthropicMessage> {
    let choice = response
        .choices
        .first()
        .ok_or_else(|| TranslateError::Upstream("the response has no choices".into()))?;
    let truncated = choice.finish_reason.as_deref() == Some("length");
    let message = &choice.message;
    let mut content = Vec::new();
    if let Some(thinking) = message
        .reasoning_content
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        content.push(ResponseBlock::Thinking {
            thinking: thinking.to_owned(),
            signature: String::new(),
        });
    }
    if let Some(text) = message.content.as_deref().filter(|t| !t.is_empty()) {
        content.push(ResponseBlock::Text {
            text: text.to_owned(),
        });
    }
    let mut called = false;
    for (n, call) in message.tool_calls.iter().flatten().enumerate() {
        let arguments = call.function.arguments.trim();
        let input = if arguments.is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            match serde_json::from_str(arguments) {
                Ok(input) => input,
                Err(_) if truncated => continue,
                Err(e) => {
                    return Err(TranslateError::Upstream(format!(
                        "tool call {n} ({}) has arguments that are not JSON: {e}",
                        call.function.name
                    )))
                }
            }
        };
        let id = call
            .id
            .as_deref()
            .filter(|id| !id.is_empty())
            .map(clean_id)
            .unwrap_or_else(|| format!("toolu_{}_{n}", clean_id(message_id)));
        content.push(ResponseBlock::ToolUse {
            id,
            name: call.function.name.clone(),
            input,
        });
        called = true;
    }
    let stop_reason = match choice.finish_reason.as_deref() {
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::Refusal,
        _ if called => StopReason::ToolUse,
        _ => StopReason::EndTurn,
    };
    let usage = response.usage.map(Usage::from_chat).unwrap_or_default();
    Ok(AnthropicMessage {
        id: message_id.to_owned(),
        kind: "message".into(),
        role: "assistant".into(),
        model: model.to_owned(),
        content,
        stop_reason: Some(stop_reason),
        stop_sequence: None,
        usage: AnthropicUsage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: usage.cache_read_input_tokens,
        },
    })
}

/// The usage to settle for a non-streaming response: the upstream's, or (when it reported
/// none) `input_tokens` counted before forwarding and the estimated output of `message`,
/// flagged estimated.
pub fn response_usage(
    response: &ChatResponse,
    message: &AnthropicMessage,
    input_tokens: u64,
    estimator: &tokenbudget_counter::Estimator,
) -> Usage {
    if let Some(usage) = response.usage {
        return Usage::from_chat(usage);
    }
    let output = message
        .content
        .iter()
        .map(|block| match block {
            ResponseBlock::Thinking { thinking, .. } => estimator.estimate(thinking),
            ResponseBlock::Text { text } => estimator.estimate(text),
            ResponseBlock::ToolUse { name, input, .. } => {
                estimator.estimate(name) + estimator.estimate(&input.to_string())
            }
        })
        .sum();
    Usage {
        input_tokens,
        output_tokens: output,
        cache_read_input_tokens: 0,
        estimated: true,
    }
}

/// A whole response as one stream chunk, for servers that answer a stream request with a
/// plain JSON body: feeding it to a [`StreamTranslator`](crate::StreamTranslator) and
/// finishing gives the client the stream it asked for.
///
/// # Behavior
/// - The first choice's reasoning, text and tool calls (each with its position as `index`,
///   its id and its whole arguments) become one delta, with the choice's `finish_reason`
///   and the response's usage. No choices gives a chunk with none.
pub fn response_as_chunk(response: &ChatResponse) -> ChatChunk {
    let choices = response
        .choices
        .first()
        .map(|choice| {
            let message = &choice.message;
            let tool_calls = message
                .tool_calls
                .iter()
                .flatten()
                .enumerate()
                .map(|(n, call)| ToolCallDelta {
                    index: u32::try_from(n).ok(),
                    id: call.id.clone(),
                    function: Some(FunctionDelta {
                        name: Some(call.function.name.clone()),
                        arguments: Some(call.function.arguments.clone()),
                    }),
                })
                .collect();
            vec![ChunkChoice {
                index: Some(0),
                delta: Some(Delta {
                    content: message.content.clone(),
                    reasoning_content: message.reasoning_content.clone(),
                    tool_calls,
                }),
                finish_reason: choice.finish_reason.clone(),
            }]
        })
        .unwrap_or_default();
    ChatChunk {
        id: response.id.clone(),
        model: response.model.clone(),
        choices,
        usage: response.usage,
        error: None,
    }
}
