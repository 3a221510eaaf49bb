//! Streams as LMStudio, vLLM, Ollama and mlx send them, translated whole and split at every
//! byte boundary, checked against the message the Anthropic SDKs would rebuild.

mod common;

use common::{accumulate, events, fixture, translate_sse, validate};
use serde_json::{json, Value};
use tokenbudget_translate::FinishCause;

/// Translates `name` unsplit, then with one cut at every byte offset and with every byte
/// on its own; all must give the same, valid event stream. Returns the rebuilt message.
fn check_fixture(name: &str) -> Value {
    let body = fixture(name);
    let bytes = body.as_bytes();
    let (_, whole) = translate_sse(bytes, &[], FinishCause::Cut);
    let whole_events = events(&whole);
    validate(&whole_events).unwrap_or_else(|e| panic!("{name}: {e}"));
    for cut in 1..bytes.len() {
        let (_, out) = translate_sse(bytes, &[cut], FinishCause::Cut);
        assert_eq!(out, whole, "{name}: cut at byte {cut} changed the output");
    }
    let every: Vec<usize> = (1..bytes.len()).collect();
    let (_, out) = translate_sse(bytes, &every, FinishCause::Cut);
    assert_eq!(out, whole, "{name}: one byte per read changed the output");
    accumulate(&whole_events)
}

#[test]
fn lmstudio_plain_answer() {
    let message = check_fixture("lmstudio_text.sse");
    assert_eq!(
        message,
        json!({
            "content": [{"type": "text", "text": "The build failed: there is no `Cargo.toml` — café ☕ 🦀."}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1843, "output_tokens": 17, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            "errors": [],
        })
    );
}

#[test]
fn lmstudio_tool_call_with_the_id_repeated_on_every_piece() {
    let message = check_fixture("lmstudio_tool_call.sse");
    assert_eq!(
        message["content"],
        json!([
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "365174485", "name": "Bash",
             "input": {"command": "ls -la", "description": "List files \"here\""}},
        ])
    );
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(message["usage"]["output_tokens"], 31);
}

#[test]
fn vllm_reasoning_two_calls_null_ids_and_null_choices_usage_chunk() {
    let message = check_fixture("vllm_reasoning_tools.sse");
    assert_eq!(
        message,
        json!({
            "content": [
                {"type": "thinking", "thinking": "The user wants two files read.", "signature": ""},
                {"type": "text", "text": "Reading both."},
                {"type": "tool_use", "id": "chatcmpl-tool-5b2e9f0c", "name": "Read", "input": {"file_path": "/src/a.rs"}},
                {"type": "tool_use", "id": "chatcmpl-tool-7d4a1c3e", "name": "Read", "input": {"file_path": "/src/b.rs"}},
            ],
            "stop_reason": "tool_use",
            // 3,120 prompt tokens of which 2,048 cached: Anthropic counts those apart.
            "usage": {"input_tokens": 1072, "output_tokens": 68, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2048},
            "errors": [],
        })
    );
}

#[test]
fn ollama_reused_index_zero_with_new_ids_is_two_calls() {
    let message = check_fixture("ollama_tool_calls.sse");
    assert_eq!(
        message["content"],
        json!([
            {"type": "thinking", "thinking": "Two files to write.", "signature": ""},
            {"type": "tool_use", "id": "call_o0f3tq7z", "name": "Write", "input": {"content": "print(\"hello\")", "file_path": "hello.py"}},
            {"type": "tool_use", "id": "call_x9k2mb4d", "name": "Write", "input": {"content": "print(\"world\")", "file_path": "world.py"}},
        ])
    );
    assert_eq!(message["stop_reason"], "tool_use");
}

#[test]
fn old_ollama_without_index_saying_stop_after_a_call_is_tool_use_with_estimated_usage() {
    let body = fixture("ollama_old_no_index.sse");
    let message = check_fixture("ollama_old_no_index.sse");
    assert_eq!(
        message["content"],
        json!([{"type": "tool_use", "id": "call_abc123", "name": "Glob", "input": {"pattern": "**/*.rs"}}])
    );
    assert_eq!(message["stop_reason"], "tool_use");
    let (translator, _) = translate_sse(body.as_bytes(), &[], FinishCause::Cut);
    let usage = translator.usage();
    assert!(
        usage.estimated,
        "no usage chunk: the usage is the gateway's estimate"
    );
    assert_eq!(usage.input_tokens, 100, "the start's prompt count");
    assert!(usage.output_tokens > 0);
    assert_eq!(translator.reported_usage(), None);
    assert_eq!(message["usage"]["output_tokens"], usage.output_tokens);
}

#[test]
fn mlx_calls_without_id_or_index_and_object_arguments() {
    let message = check_fixture("mlx_no_id_no_index.sse");
    assert_eq!(
        message["content"],
        json!([
            {"type": "text", "text": "Searching."},
            {"type": "tool_use", "id": "toolu_test01_0", "name": "Grep", "input": {"pattern": "fn main"}},
            {"type": "tool_use", "id": "toolu_test01_1", "name": "Glob", "input": {"pattern": "*.toml"}},
        ])
    );
    assert_eq!(message["stop_reason"], "tool_use");
}

#[test]
fn a_cut_after_any_event_still_ends_in_one_message_stop_and_never_end_turn_mid_tool_call() {
    for name in [
        "lmstudio_tool_call.sse",
        "vllm_reasoning_tools.sse",
        "mlx_no_id_no_index.sse",
    ] {
        let body = fixture(name);
        let boundaries: Vec<usize> = body.match_indices("\n\n").map(|(i, _)| i + 2).collect();
        for &end in &boundaries {
            let truncated = &body.as_bytes()[..end];
            let done = truncated.ends_with(b"data: [DONE]\n\n");
            let (_, out) = translate_sse(truncated, &[], FinishCause::Cut);
            let evs = events(&out);
            let summary = validate(&evs).unwrap_or_else(|e| panic!("{name} cut at {end}: {e}"));
            assert_eq!(summary.errors, usize::from(!done), "{name} cut at {end}");
        }
    }
}
