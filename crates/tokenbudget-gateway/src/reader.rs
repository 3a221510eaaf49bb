//! Usage read on the side of a response: Anthropic's and OpenAI's, streamed or not.

use serde_json::Value;

use crate::usage::Usage;

/// Which API a response speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Chat Completions.
    OpenAi,
}

/// What has been learnt about a response so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageReader {
    /// Usage as reported so far (Anthropic: `message_start`, then each `message_delta`
    /// replacing what it carries; OpenAI: the final usage chunk).
    pub usage: Usage,
    /// True once the upstream reported input usage (`message_start`, or a usage object).
    pub saw_input: bool,
    /// True once the upstream reported final output usage (`message_delta` / OpenAI usage).
    pub saw_output: bool,
    /// True once the response is complete (`message_stop`, `[DONE]`, or a whole JSON body).
    pub complete: bool,
    /// The message id (`msg_…` / `chatcmpl-…`), for the ledger.
    pub message_id: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// An `error` event's type, if one came.
    pub error: Option<String>,
    /// Bytes of generated text/JSON/thinking seen in deltas: the basis of an output estimate
    /// when no output usage arrives.
    pub delta_bytes: u64,
    /// True when `usage` is the gateway's own count (a translated upstream reported none).
    pub estimated: bool,
}

impl UsageReader {
    /// Takes a translated response's usage as final: the translator's count (the upstream's
    /// report, else its estimate) is all there is to read. `ended_well` is false when the
    /// client was sent an `error` event (or nothing more could be sent).
    pub fn translated(&mut self, usage: &tokenbudget_translate::Usage, ended_well: bool) {
        self.usage = Usage {
            input: usage.input_tokens,
            cache_read: usage.cache_read_input_tokens,
            output: usage.output_tokens,
            ..Usage::default()
        };
        self.saw_input = true;
        self.saw_output = true;
        self.estimated = usage.estimated;
        self.complete = ended_well;
        if !ended_well {
            self.error
                .get_or_insert_with(|| "translated stream ended early".into());
        }
    }

    /// Reads one Anthropic SSE event's JSON data.
    pub fn anthropic_event(&mut self, data: &str) {
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            return;
        };
        match value.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(message) = value.get("message") {
                    self.message(message);
                }
            }
            Some("message_delta") => {
                if let Some(usage) = value.get("usage") {
                    self.anthropic_usage(usage);
                    if usage.get("output_tokens").is_some() {
                        self.saw_output = true;
                    }
                }
            }
            Some("content_block_delta") => {
                if let Some(delta) = value.get("delta") {
                    for field in ["text", "partial_json", "thinking"] {
                        if let Some(text) = delta.get(field).and_then(Value::as_str) {
                            self.delta_bytes = self.delta_bytes.saturating_add(text.len() as u64);
                        }
                    }
                }
            }
            Some("message_stop") => self.complete = true,
            Some("error") => {
                let kind = value
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                self.error = Some(kind.to_owned());
            }
            // ping, content_block_start/stop and event types added later: nothing to read.
            _ => {}
        }
    }

    /// Reads a whole (non-streaming) Anthropic Messages response body.
    pub fn anthropic_body(&mut self, body: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        self.message(&value);
        if value.pointer("/usage/output_tokens").is_some() {
            self.saw_output = true;
            self.complete = true;
        }
    }

    fn message(&mut self, message: &Value) {
        if let Some(id) = message.get("id").and_then(Value::as_str) {
            self.message_id = Some(id.to_owned());
        }
        if let Some(model) = message.get("model").and_then(Value::as_str) {
            self.model = Some(model.to_owned());
        }
        if let Some(usage) = message.get("usage") {
            self.anthropic_usage(usage);
            self.saw_input = true;
        }
    }

    /// Fields present replace what was known: `message_delta` counts are cumulative, so the
    /// last report wins.
    fn anthropic_usage(&mut self, usage: &Value) {
        let field = |name: &str| usage.get(name).and_then(Value::as_u64);
        if let Some(n) = field("input_tokens") {
            self.usage.input = n;
        }
        if let Some(n) = field("cache_creation_input_tokens") {
            self.usage.cache_write = n;
        }
        if let Some(n) = field("cache_read_input_tokens") {
            self.usage.cache_read = n;
        }
        if let Some(n) = usage
            .pointer("/cache_creation/ephemeral_1h_input_tokens")
            .and_then(Value::as_u64)
        {
            self.usage.cache_write_1h = n;
        }
        if let Some(n) = field("output_tokens") {
            self.usage.output = n;
        }
    }

    /// Reads one OpenAI stream chunk's data. Returns true when it is a usage-only chunk (no
    /// choices), the one the gateway hides when it asked for it.
    pub fn openai_event(&mut self, data: &str) -> bool {
        if data.trim() == "[DONE]" {
            self.complete = true;
            return false;
        }
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            return false;
        };
        self.openai_common(&value);
        if let Some(choices) = value.get("choices").and_then(Value::as_array) {
            for choice in choices {
                if let Some(delta) = choice.get("delta") {
                    if let Some(text) = delta.get("content").and_then(Value::as_str) {
                        self.delta_bytes = self.delta_bytes.saturating_add(text.len() as u64);
                    }
                    if let Some(calls) = delta.get("tool_calls") {
                        self.delta_bytes = self
                            .delta_bytes
                            .saturating_add(calls.to_string().len() as u64);
                    }
                }
            }
        }
        if value.get("error").is_some() {
            self.error = Some("error".to_owned());
        }
        let no_choices = value
            .get("choices")
            .is_none_or(|c| c.is_null() || c.as_array().is_some_and(Vec::is_empty));
        no_choices && value.get("usage").is_some_and(|u| !u.is_null())
    }

    /// Reads a whole (non-streaming) Chat Completions body.
    pub fn openai_body(&mut self, body: &[u8]) {
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            self.openai_common(&value);
            if self.saw_output {
                self.complete = true;
            }
        }
    }

    fn openai_common(&mut self, value: &Value) {
        if let Some(id) = value.get("id").and_then(Value::as_str) {
            self.message_id.get_or_insert_with(|| id.to_owned());
        }
        if let Some(model) = value.get("model").and_then(Value::as_str) {
            self.model.get_or_insert_with(|| model.to_owned());
        }
        let Some(usage) = value.get("usage").filter(|u| !u.is_null()) else {
            return;
        };
        let prompt = usage
            .get("prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let cached = usage
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(prompt);
        self.usage.input = prompt - cached;
        self.usage.cache_read = cached;
        self.usage.output = usage
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.saw_input = true;
        self.saw_output = true;
    }

    /// The usage to commit when the response did not complete: what was reported, with
    /// output no lower than an estimate from the deltas seen (one token per 3 bytes, rounded
    /// up: generous, as a cut stream may have been billed for more than reached us), and
    /// input `prompt_bound` when the upstream never reported it.
    pub fn partial(&self, prompt_bound: u64) -> Usage {
        let mut usage = self.usage;
        if !self.saw_input {
            usage.input = prompt_bound;
        }
        if !self.saw_output {
            usage.output = usage.output.max(self.delta_bytes.div_ceil(3));
        }
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"usage":{"input_tokens":100,"cache_creation_input_tokens":20,"cache_read_input_tokens":30,"output_tokens":1}}}"#;

    #[test]
    fn message_start_then_cumulative_deltas_last_wins() {
        let mut r = UsageReader::default();
        r.anthropic_event(START);
        r.anthropic_event(r#"{"type":"ping"}"#);
        r.anthropic_event(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello"}}"#);
        r.anthropic_event(
            r#"{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":7}}"#,
        );
        r.anthropic_event(r#"{"type":"brand_new_event","x":1}"#);
        r.anthropic_event(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}"#);
        assert!(!r.complete);
        r.anthropic_event(r#"{"type":"message_stop"}"#);
        assert!(r.complete && r.saw_input && r.saw_output);
        assert_eq!(
            r.usage,
            Usage {
                input: 100,
                cache_write: 20,
                cache_read: 30,
                output: 12,
                ..Usage::default()
            }
        );
        assert_eq!(r.message_id.as_deref(), Some("msg_1"));
        assert_eq!(r.model.as_deref(), Some("claude-x"));
        assert_eq!(r.delta_bytes, 5);
    }

    #[test]
    fn a_delta_carrying_input_counts_replaces_them() {
        let mut r = UsageReader::default();
        r.anthropic_event(START);
        r.anthropic_event(
            r#"{"type":"message_delta","usage":{"input_tokens":101,"output_tokens":3}}"#,
        );
        assert_eq!(r.usage.input, 101);
        assert_eq!(r.usage.cache_write, 20);
    }

    #[test]
    fn error_event_mid_stream_keeps_input_and_estimates_output() {
        let mut r = UsageReader::default();
        r.anthropic_event(START);
        r.anthropic_event(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"0123456789"}}"#);
        r.anthropic_event(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(r.error.as_deref(), Some("overloaded_error"));
        assert!(!r.complete);
        let partial = r.partial(999);
        assert_eq!(partial.input, 100);
        assert_eq!(partial.output, 4);
    }

    #[test]
    fn nothing_reported_commits_the_prompt_bound() {
        let r = UsageReader::default();
        assert_eq!(r.partial(500).input, 500);
        let mut garbage = UsageReader::default();
        garbage.anthropic_event("not json");
        garbage.anthropic_body(b"{");
        assert_eq!(garbage, UsageReader::default());
    }

    #[test]
    fn anthropic_body_reads_usage() {
        let mut r = UsageReader::default();
        r.anthropic_body(
            br#"{"id":"msg_2","model":"m","usage":{"input_tokens":5,"output_tokens":6}}"#,
        );
        assert!(r.complete);
        assert_eq!(r.usage.prompt() + r.usage.output, 11);
    }

    #[test]
    fn openai_usage_chunk_is_recognised_and_cached_tokens_split_out() {
        let mut r = UsageReader::default();
        assert!(!r.openai_event(
            r#"{"id":"c1","model":"gpt","choices":[{"index":0,"delta":{"content":"hey"}}]}"#
        ));
        assert!(r.openai_event(r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":20}}}"#));
        assert!(!r.openai_event("[DONE]"));
        assert!(r.complete);
        assert_eq!(
            r.usage,
            Usage {
                input: 30,
                cache_write: 0,
                cache_read: 20,
                output: 9,
                ..Usage::default()
            }
        );
        // vLLM sends `choices: null` in its usage chunk.
        let mut v = UsageReader::default();
        assert!(v.openai_event(
            r#"{"id":null,"choices":null,"usage":{"prompt_tokens":1,"completion_tokens":2}}"#
        ));
    }
}
