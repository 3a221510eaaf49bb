//! Non-streaming Chat Completions responses -> Anthropic messages.

use serde_json::json;
use tokenbudget_translate::anthropic::StopReason;
use tokenbudget_translate::openai::ChatResponse;
use tokenbudget_translate::{response_usage, translate_response, TranslateError};

fn response(value: serde_json::Value) -> ChatResponse {
    serde_json::from_value(value).unwrap()
}

#[test]
fn a_vllm_response_with_reasoning_text_and_tool_calls() {
    let r = response(json!({
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 1764625400, "model": "Qwen/Qwen3-32B",
        "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "stop_reason": null,
            "message": {"role": "assistant", "reasoning_content": "Need the file.", "content": "Reading.",
                "tool_calls": [
                    {"id": "chatcmpl-tool-1", "type": "function", "function": {"name": "Read", "arguments": "{\"file_path\": \"/a\"}"}},
                    {"type": "function", "function": {"name": "Glob", "arguments": ""}}
                ]}}],
        "usage": {"prompt_tokens": 120, "total_tokens": 150, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 100}}
    }));
    let message = translate_response(&r, "msg_1", "claude-sonnet-4-5").unwrap();
    assert_eq!(
        serde_json::to_value(&message).unwrap(),
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "Need the file.", "signature": ""},
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "chatcmpl-tool-1", "name": "Read", "input": {"file_path": "/a"}},
                {"type": "tool_use", "id": "toolu_msg_1_1", "name": "Glob", "input": {}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "output_tokens": 30, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100},
        })
    );
    let usage = response_usage(&r, &message, 999, &Default::default());
    assert!(!usage.estimated);
    assert_eq!(usage.total(), 150);
}

#[test]
fn stop_reasons_and_ollama_stop_after_calls() {
    let with = |finish: &str, calls: bool| {
        let mut message = json!({"role": "assistant", "content": "x"});
        if calls {
            message["tool_calls"] = json!([{"id": "call_1", "function": {"name": "Read", "arguments": {"file_path": "/a"}}}]);
        }
        let r = response(json!({"choices": [{"message": message, "finish_reason": finish}]}));
        translate_response(&r, "msg_2", "m")
            .unwrap()
            .stop_reason
            .unwrap()
    };
    assert_eq!(with("stop", false), StopReason::EndTurn);
    assert_eq!(with("stop", true), StopReason::ToolUse);
    assert_eq!(with("length", false), StopReason::MaxTokens);
    assert_eq!(with("content_filter", false), StopReason::Refusal);
    assert_eq!(with("tool_calls", true), StopReason::ToolUse);
}

#[test]
fn missing_usage_is_estimated_from_the_answer() {
    let r = response(
        json!({"choices": [{"message": {"content": "The answer is forty-two, as computed."}, "finish_reason": "stop"}]}),
    );
    let message = translate_response(&r, "msg_3", "m").unwrap();
    assert_eq!(message.usage.output_tokens, 0);
    let usage = response_usage(&r, &message, 77, &Default::default());
    assert!(usage.estimated);
    assert_eq!(usage.input_tokens, 77);
    assert!((5..=12).contains(&usage.output_tokens), "{usage:?}");
}

#[test]
fn untranslatable_answers_are_upstream_errors() {
    let empty = response(json!({"choices": null}));
    let err = translate_response(&empty, "msg_4", "m").unwrap_err();
    assert!(matches!(err, TranslateError::Upstream(_)));
    assert_eq!(err.status(), 502);
    assert!(err.to_anthropic_error_json().contains("\"api_error\""));

    let bad_args = json!({"choices": [{"finish_reason": "tool_calls", "message": {"tool_calls": [
        {"id": "c", "function": {"name": "Read", "arguments": "{\"file_path\": "}}]}}]});
    let err = translate_response(&response(bad_args.clone()), "msg_5", "m").unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
    // Cut by the output limit: the half call is dropped and the answer says max_tokens.
    let mut cut = bad_args;
    cut["choices"][0]["finish_reason"] = json!("length");
    let message = translate_response(&response(cut), "msg_6", "m").unwrap();
    assert_eq!(
        (message.content.len(), message.stop_reason),
        (0, Some(StopReason::MaxTokens))
    );
}

#[test]
fn a_json_answer_to_a_stream_request_streams_as_one_chunk() {
    use tokenbudget_translate::{response_as_chunk, FinishCause, StreamStart, StreamTranslator};
    let response: tokenbudget_translate::openai::ChatResponse = serde_json::from_str(
        r#"{"id":"c1","choices":[{"message":{"content":"Let me look.","tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"Bash","arguments":"{\"command\":\"ls\"}"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":12,"completion_tokens":7}}"#,
    )
    .unwrap();
    let mut t = StreamTranslator::new(StreamStart {
        message_id: "msg_x".into(),
        model: "claude-haiku-4-5".into(),
        input_tokens: 3,
        estimator: Default::default(),
    });
    let mut out = Vec::new();
    t.push(&response_as_chunk(&response), &mut out);
    assert!(t.finish(FinishCause::Done, &mut out));
    let sse = String::from_utf8(out).unwrap();
    assert!(sse.contains(r#""text":"Let me look.""#), "{sse}");
    assert!(sse.contains(r#""id":"call_1","name":"Bash""#), "{sse}");
    assert!(sse.contains(r#""stop_reason":"tool_use""#), "{sse}");
    assert_eq!(sse.matches("event: message_stop").count(), 1);
    assert_eq!((t.usage().input_tokens, t.usage().output_tokens), (12, 7));
    assert!(!t.usage().estimated);
}
