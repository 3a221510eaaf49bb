//! Anthropic requests -> Chat Completions requests, from a real Claude Code payload and
//! from small cases for each rule.

mod common;

use common::fixture;
use serde_json::{json, Value};
use tokenbudget_translate::{
    count_chat, count_tokens, parse_request, translate_request, ChatCounter, MaxTokensField,
    Reasoning, RouteTarget, TranslateError,
};

fn translate(body: Value, target: &RouteTarget) -> Result<Value, TranslateError> {
    let req = parse_request(body.to_string().as_bytes())?;
    Ok(serde_json::to_value(translate_request(&req, target)?).unwrap())
}

fn minimal(messages: Value) -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 100, "messages": messages})
}

#[test]
fn claude_code_request_matches_the_golden_chat_request() {
    let req = parse_request(fixture("claude_code_request.json").as_bytes()).unwrap();
    let target = RouteTarget::new("qwen3-coder-30b").with_reasoning(Reasoning::Effort);
    let chat = serde_json::to_value(translate_request(&req, &target).unwrap()).unwrap();
    let golden: Value = serde_json::from_str(&fixture("claude_code_request.chat.json")).unwrap();
    assert_eq!(
        chat,
        golden,
        "got:\n{}",
        serde_json::to_string_pretty(&chat).unwrap()
    );
    // The golden file itself: what Claude Code needs from a translation.
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
    assert_eq!(chat["reasoning_effort"], "high");
    let text = chat.to_string();
    for gone in [
        "cache_control",
        "$schema",
        "\"format\"",
        "signature",
        "user_id",
        "I should read the file first.",
    ] {
        assert!(!text.contains(gone), "{gone} was forwarded");
    }
}

#[test]
fn thinking_is_dropped_without_reasoning_support_and_sized_with_it() {
    let body = |thinking: Value| {
        let mut b = minimal(json!([{"role": "user", "content": "hi"}]));
        b["thinking"] = thinking;
        b
    };
    let plain = RouteTarget::new("m");
    let effort = RouteTarget::new("m").with_reasoning(Reasoning::Effort);
    let enabled = |n: u32| json!({"type": "enabled", "budget_tokens": n});
    assert!(translate(body(enabled(2048)), &plain)
        .unwrap()
        .get("reasoning_effort")
        .is_none());
    assert_eq!(
        translate(body(enabled(2048)), &effort).unwrap()["reasoning_effort"],
        "low"
    );
    assert_eq!(
        translate(body(enabled(8192)), &effort).unwrap()["reasoning_effort"],
        "medium"
    );
    assert_eq!(
        translate(body(json!({"type": "adaptive"})), &effort).unwrap()["reasoning_effort"],
        "medium"
    );
    assert!(translate(body(json!({"type": "disabled"})), &effort)
        .unwrap()
        .get("reasoning_effort")
        .is_none());
}

#[test]
fn sampling_stop_and_limit_fields() {
    let mut body = minimal(json!([{"role": "user", "content": "hi"}]));
    body["stop_sequences"] = json!(["END", "\n\nHuman:"]);
    body["temperature"] = json!(0.2);
    body["top_p"] = json!(0.9);
    body["top_k"] = json!(40);
    let chat = translate(body.clone(), &RouteTarget::new("m")).unwrap();
    assert_eq!(
        chat,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100,
               "stop": ["END", "\n\nHuman:"], "temperature": 0.2, "top_p": 0.9})
    );
    let target = RouteTarget::new("o3").with_max_tokens_field(MaxTokensField::MaxCompletionTokens);
    let chat = translate(body, &target).unwrap();
    assert_eq!(
        (chat.get("max_tokens"), &chat["max_completion_tokens"]),
        (None, &json!(100))
    );
}

#[test]
fn tool_choice_variants() {
    let tool = json!([{"name": "Read", "input_schema": {"type": "object", "properties": {}}}]);
    let with = |choice: Value| {
        let mut b = minimal(json!([{"role": "user", "content": "hi"}]));
        b["tools"] = tool.clone();
        b["tool_choice"] = choice;
        translate(b, &RouteTarget::new("m")).unwrap()
    };
    assert_eq!(with(json!({"type": "auto"}))["tool_choice"], "auto");
    assert_eq!(with(json!({"type": "any"}))["tool_choice"], "required");
    assert_eq!(with(json!({"type": "none"}))["tool_choice"], "none");
    let named = with(json!({"type": "tool", "name": "Read", "disable_parallel_tool_use": true}));
    assert_eq!(
        named["tool_choice"],
        json!({"type": "function", "function": {"name": "Read"}})
    );
    assert_eq!(named["parallel_tool_calls"], false);
    // No tools: no tool_choice (OpenAI rejects one without tools).
    let mut b = minimal(json!([{"role": "user", "content": "hi"}]));
    b["tool_choice"] = json!({"type": "any"});
    assert!(translate(b, &RouteTarget::new("m"))
        .unwrap()
        .get("tool_choice")
        .is_none());
}

#[test]
fn images_by_base64_and_url_become_image_url_parts() {
    let chat = translate(
        minimal(json!([{"role": "user", "content": [
            {"type": "text", "text": "compare"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        ]}])),
        &RouteTarget::new("m"),
    )
    .unwrap();
    assert_eq!(
        chat["messages"][0]["content"],
        json!([
            {"type": "text", "text": "compare"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        ])
    );
}

#[test]
fn unsupported_content_is_a_400_in_anthropics_shape_naming_the_block() {
    let cases = [
        (
            minimal(json!([{"role": "user", "content": [
                {"type": "text", "text": "read this"},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
            ]}])),
            "messages.0.content.1: document blocks are not supported",
        ),
        (
            minimal(
                json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]}]),
            ),
            "messages.0.content.0: document blocks",
        ),
        (
            minimal(
                json!([{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}]}]),
            ),
            "a tool_use block cannot appear in a user message",
        ),
        (
            minimal(
                json!([{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]),
            ),
            "unknown variant `container_upload`",
        ),
        (
            {
                let mut b = minimal(json!([{"role": "user", "content": "hi"}]));
                b["tools"] =
                    json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]);
                b
            },
            "tools.0: server tool web_search (type web_search_20250305) is not supported",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            "max_tokens: field required",
        ),
    ];
    for (body, want) in cases {
        let err = translate(body, &RouteTarget::new("m")).unwrap_err();
        assert_eq!(err.status(), 400);
        let json: Value = serde_json::from_str(&err.to_anthropic_error_json()).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["error"]["type"], "invalid_request_error");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{message:?} lacks {want:?}");
    }
}

#[test]
fn empty_and_string_contents_are_kept_not_dropped() {
    let chat = translate(
        minimal(json!([
            {"role": "user", "content": ""},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": []},
        ])),
        &RouteTarget::new("m"),
    )
    .unwrap();
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "user", "content": ""},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": ""},
        ])
    );
}

#[test]
fn count_tokens_is_exact_for_openai_models_and_estimated_otherwise() {
    let body = json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hello world"}]});
    let req = parse_request(body.to_string().as_bytes()).unwrap();
    // 3 priming + 3 per message + "user" (1) + "hello world" (2), as the cookbook counts.
    let exact = count_tokens(&req, "gpt-4o").unwrap();
    assert_eq!((exact.input_tokens, exact.exact), (9, true));
    assert_eq!(exact.to_json(), r#"{"input_tokens":9}"#);
    let estimated = count_tokens(&req, "qwen3-coder-30b").unwrap();
    assert!(!estimated.exact);
    assert!((7..=11).contains(&estimated.input_tokens), "{estimated:?}");

    let big = parse_request(fixture("claude_code_request.json").as_bytes()).unwrap();
    let answer = count_tokens(&big, "qwen3-coder-30b").unwrap();
    assert!(!answer.exact);
    // One image (1,600) plus a few hundred tokens of text and tool definitions.
    assert!(answer.input_tokens > 1_600 + 300, "{answer:?}");
    assert!(answer.input_tokens < 1_600 + 3_000, "{answer:?}");
}

#[test]
fn counting_the_translated_request_equals_counting_the_original() {
    // The gateway counts what it already translated (`count_chat`); `count_tokens` answers
    // the `count_tokens` endpoint from the Anthropic request. Both must agree.
    let cases = [
        (fixture("claude_code_request.json"), "qwen3-coder-30b"),
        (fixture("claude_code_request.json"), "gpt-4o"),
        (fixture("claude_code_request.json"), "gpt-4"),
        (
            minimal(json!([{"role": "user", "content": "hello world"}])).to_string(),
            "gpt-4o",
        ),
        (
            minimal(json!([{"role": "user", "content": "hello world"}])).to_string(),
            "gpt-3.5-turbo",
        ),
    ];
    // The gateway's memoizing counter, shared by every case, answers the same, asked the
    // first time and again (then from memory).
    let memo = ChatCounter::default();
    for (body, model) in cases {
        let req = parse_request(body.as_bytes()).unwrap();
        let chat = translate_request(&req, &RouteTarget::new(model)).unwrap();
        let expected = count_tokens(&req, model).unwrap();
        assert_eq!(count_chat(&chat), expected, "{model}");
        for round in 0..2 {
            assert_eq!(
                memo.count_chat(&chat),
                expected,
                "{model}, memo round {round}"
            );
            assert_eq!(
                memo.count_tokens(&req, model).unwrap(),
                expected,
                "{model}, memo round {round}"
            );
        }
    }
}

#[test]
fn a_system_message_among_the_messages_stays_in_its_place() {
    // Claude Code 2.1 sends these (found by `cargo xtask e2e`).
    let req = tokenbudget_translate::parse_request(
        br#"{"model":"m","max_tokens":10,"messages":[
            {"role":"user","content":"hi"},
            {"role":"system","content":[{"type":"text","text":"Be brief."}]},
            {"role":"user","content":"again"}]}"#,
    )
    .unwrap();
    let chat = tokenbudget_translate::translate_request(
        &req,
        &tokenbudget_translate::RouteTarget::new("q"),
    )
    .unwrap();
    let value = serde_json::to_value(&chat).unwrap();
    assert_eq!(
        value["messages"][1],
        serde_json::json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(value["messages"].as_array().unwrap().len(), 3);
}
