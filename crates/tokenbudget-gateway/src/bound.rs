//! The prompt's upper bound for Claude: never below what the upstream will report.
//!
//! Claude's tokenizer is a byte-level BPE: every token covers at least one byte of the text
//! it encodes, so a text part of N UTF-8 bytes is at most N tokens. What is not text gets the
//! fixed costs Anthropic documents, rounded up:
//! - the tool-use system prompt the API adds when `tools` is present: at most 530 tokens
//!   (the largest figure in the tool-use pricing table; current models list 313-346);
//! - an image: at most 1,600 tokens (the API scales larger images down to about 1.15
//!   megapixels, and an image costs width × height / 750 tokens);
//! - each message's role and framing: 8 tokens, plus 16 for the request.
//!
//! Anything else (documents, unknown block types) is bounded by the UTF-8 size of its JSON.

use serde_json::Value;

/// The tool-use system prompt's documented maximum.
pub const TOOL_SYSTEM_PROMPT: u64 = 530;
/// One image's maximum after the API's scaling.
pub const IMAGE: u64 = 1_600;
/// Per-message framing.
pub const PER_MESSAGE: u64 = 8;
/// Per-request framing.
pub const PER_REQUEST: u64 = 16;

/// An upper bound on the input tokens a Messages request (or a `count_tokens` body) costs.
pub fn claude_prompt_bound(request: &Value) -> u64 {
    prompt_size(request, &|text: &str| text.len() as u64)
}

/// The prompt's size with each text part measured by `measure` (UTF-8 bytes for the bound,
/// an exact tokenizer for OpenAI models, the estimator where the operator opts in) and
/// everything else at its fixed cost. Reads both request shapes: Anthropic Messages and
/// OpenAI Chat Completions (`tool_calls`, `image_url` parts).
pub fn prompt_size(request: &Value, measure: &dyn Fn(&str) -> u64) -> u64 {
    let mut total = PER_REQUEST;
    if let Some(system) = request.get("system") {
        total = total.saturating_add(content(system, measure));
    }
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for message in messages {
            total = total.saturating_add(PER_MESSAGE);
            let Some(fields) = message.as_object() else {
                total = total.saturating_add(json_len(message));
                continue;
            };
            for (name, value) in fields {
                total = total.saturating_add(match name.as_str() {
                    "role" => 0,
                    "content" => content(value, measure),
                    _ => json_len(value),
                });
            }
        }
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        if !tools.is_empty() {
            total = total.saturating_add(TOOL_SYSTEM_PROMPT);
        }
        for tool in tools {
            total = total.saturating_add(json_len(tool));
        }
    }
    for extra in ["tool_choice", "functions", "response_format"] {
        if let Some(value) = request.get(extra) {
            total = total.saturating_add(json_len(value));
        }
    }
    total
}

/// A string, or a list of content blocks.
fn content(value: &Value, measure: &dyn Fn(&str) -> u64) -> u64 {
    match value {
        Value::String(text) => measure(text),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| block(b, measure))
            .fold(0, |sum: u64, n| sum.saturating_add(n)),
        other => json_len(other),
    }
}

fn block(block: &Value, measure: &dyn Fn(&str) -> u64) -> u64 {
    let text = |name: &str| block.get(name).and_then(Value::as_str).map_or(0, measure);
    match block.get("type").and_then(Value::as_str) {
        Some("text") => text("text"),
        Some("thinking") => text("thinking"),
        Some("redacted_thinking") => text("data"),
        Some("image" | "image_url") => IMAGE,
        Some("tool_use") => text("name")
            .saturating_add(text("id"))
            .saturating_add(block.get("input").map_or(0, json_len)),
        Some("tool_result") => text("tool_use_id")
            .saturating_add(block.get("content").map_or(0, |c| content(c, measure))),
        _ => json_len(block),
    }
}

fn json_len(value: &Value) -> u64 {
    serde_json::to_vec(value).map_or(u64::MAX, |v| v.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_bytes_plus_fixed_costs() {
        let request = json!({
            "system": "ab",
            "messages": [
                {"role": "user", "content": "héllo"},
                {"role": "assistant", "content": [{"type": "text", "text": "xyz"}]},
            ]
        });
        // 16 + system 2 + (8 + 6) + (8 + 3)
        assert_eq!(claude_prompt_bound(&request), 43);
    }

    #[test]
    fn tools_images_and_tool_blocks_are_bounded() {
        let request = json!({
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "ok"}]},
            ]}],
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
        });
        let tool_json = serde_json::to_vec(&request["tools"][0]).unwrap().len() as u64;
        assert_eq!(
            claude_prompt_bound(&request),
            PER_REQUEST + PER_MESSAGE + IMAGE + 2 + 2 + TOOL_SYSTEM_PROMPT + tool_json
        );
    }

    #[test]
    fn multibyte_text_counts_bytes_not_chars() {
        // Random Cyrillic: the estimator undercounts it; bytes never do.
        let text = "жщфыъэюяшгдз".repeat(50);
        let request = json!({"messages": [{"role": "user", "content": text.clone()}]});
        assert!(claude_prompt_bound(&request) >= text.len() as u64);
        assert_eq!(text.len(), text.chars().count() * 2);
    }
}
