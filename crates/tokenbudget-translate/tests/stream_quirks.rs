//! The stream translator on quirks, cuts, errors and misuse, chunk by chunk.

mod common;

use common::{accumulate, events, start, validate};
use serde_json::json;
use tokenbudget_translate::openai::ChatChunk;
use tokenbudget_translate::{FinishCause, StreamTranslator, Upstream};

fn chunk(value: serde_json::Value) -> ChatChunk {
    serde_json::from_value(value).expect("chunk")
}

fn run(
    chunks: &[serde_json::Value],
    cause: FinishCause,
) -> (
    StreamTranslator,
    serde_json::Value,
    Vec<(String, serde_json::Value)>,
) {
    let mut t = StreamTranslator::new(start());
    let mut out = Vec::new();
    t.start(&mut out);
    for c in chunks {
        t.push(&chunk(c.clone()), &mut out);
    }
    t.finish(cause, &mut out);
    let evs = events(&out);
    (t, accumulate(&evs), evs)
}

fn call(index: Option<u32>, id: Option<&str>, name: Option<&str>, args: &str) -> serde_json::Value {
    let mut call = json!({"function": {"arguments": args}});
    if let Some(i) = index {
        call["index"] = i.into();
    }
    if let Some(id) = id {
        call["id"] = id.into();
    }
    if let Some(name) = name {
        call["function"]["name"] = name.into();
    }
    json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
}

fn finish_reason(reason: &str) -> serde_json::Value {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

#[test]
fn start_keepalive_and_finish_write_one_message_start_and_one_message_stop_whatever_the_order() {
    let mut t = StreamTranslator::new(start());
    let mut out = Vec::new();
    t.keepalive(&mut out); // before start: message_start comes first
    t.start(&mut out);
    t.keepalive(&mut out);
    t.finish(FinishCause::Timeout, &mut out);
    let written = out.len();
    t.finish(FinishCause::Done, &mut out);
    t.keepalive(&mut out);
    t.push(
        &chunk(json!({"choices": [{"delta": {"content": "late"}}]})),
        &mut out,
    );
    assert_eq!(out.len(), written, "nothing after finish");
    let evs = events(&out);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "ping",
            "error",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(evs[3].1["error"]["type"], "timeout_error");
    let summary = validate(&evs).unwrap();
    assert_eq!((summary.pings, summary.errors), (2, 1));
    assert!(summary.stop_reason.is_null());
}

#[test]
fn ping_bytes_are_anthropics() {
    let mut t = StreamTranslator::new(start());
    let mut out = Vec::new();
    t.start(&mut out);
    let before = out.len();
    t.keepalive(&mut out);
    assert_eq!(
        &out[before..],
        b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
    );
}

#[test]
fn a_cut_inside_a_tool_call_is_an_error_not_end_turn_and_usage_counts_what_was_streamed() {
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"content": "Running it."}}]}),
        call(Some(0), Some("call_1"), Some("Bash"), "{\"command\": \"car"),
    ];
    for cause in [
        FinishCause::Cut,
        FinishCause::Done,
        FinishCause::UpstreamError("boom".into()),
    ] {
        let (t, message, evs) = run(&chunks, cause.clone());
        let summary = validate(&evs).unwrap();
        assert_eq!(summary.errors, 1, "{cause:?}");
        assert_eq!(message["stop_reason"], serde_json::Value::Null, "{cause:?}");
        let usage = t.usage();
        assert!(usage.estimated && usage.output_tokens >= 3, "{usage:?}");
    }
    let (_, message, _) = run(&chunks, FinishCause::Done);
    assert!(
        message["errors"][0]
            .as_str()
            .unwrap()
            .contains("call_1 (Bash)"),
        "{message}"
    );
}

#[test]
fn length_inside_a_tool_call_is_max_tokens() {
    let chunks = [
        call(Some(0), Some("call_1"), Some("Bash"), "{\"command\": \"car"),
        finish_reason("length"),
    ];
    let (_, message, evs) = run(&chunks, FinishCause::Done);
    assert_eq!(message["stop_reason"], "max_tokens");
    assert!(evs.iter().all(|(n, _)| n != "error"));
}

#[test]
fn finish_reasons_map_to_stop_reasons() {
    let text = json!({"choices": [{"index": 0, "delta": {"content": "x"}}]});
    let cases = [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "end_turn"), // no call was streamed
        ("something_new", "end_turn"),
    ];
    for (reason, want) in cases {
        let (_, message, _) = run(&[text.clone(), finish_reason(reason)], FinishCause::Done);
        assert_eq!(message["stop_reason"], want, "{reason}");
    }
    let (_, message, _) = run(&[text], FinishCause::Done);
    assert_eq!(
        message["stop_reason"], "end_turn",
        "no finish_reason at all"
    );
}

#[test]
fn arguments_before_the_name_are_held_until_it_comes() {
    let chunks = [
        call(Some(0), None, None, "{\"a\""),
        call(Some(0), Some("call_9"), Some("Edit"), ": 1}"),
        finish_reason("tool_calls"),
    ];
    let (_, message, evs) = run(&chunks, FinishCause::Done);
    validate(&evs).unwrap();
    assert_eq!(
        message["content"],
        json!([{"type": "tool_use", "id": "call_9", "name": "Edit", "input": {"a": 1}}])
    );
}

#[test]
fn a_call_that_never_gets_a_name_is_an_error() {
    let (_, message, evs) = run(
        &[
            call(Some(0), Some("c"), None, "{}"),
            finish_reason("tool_calls"),
        ],
        FinishCause::Done,
    );
    assert_eq!(validate(&evs).unwrap().errors, 1);
    assert!(message["errors"][0]
        .as_str()
        .unwrap()
        .contains("without a function name"));
}

#[test]
fn interleaved_calls_are_reported_not_merged() {
    let mut t = StreamTranslator::new(start());
    let mut out = Vec::new();
    let pieces = [
        call(Some(0), Some("a"), Some("Read"), "{\"x\":"),
        call(Some(1), Some("b"), Some("Read"), "{\"y\": 2}"),
        call(Some(0), None, None, " 1}"),
    ];
    let mut outcomes = Vec::new();
    for p in &pieces {
        outcomes.push(t.push_data(&p.to_string(), &mut out));
    }
    assert_eq!(outcomes[..2], [Upstream::Continue, Upstream::Continue]);
    let Upstream::Error(message) = &outcomes[2] else {
        panic!("{outcomes:?}")
    };
    assert!(message.contains("interleaved"), "{message}");
    t.finish(FinishCause::UpstreamError(message.clone()), &mut out);
    let evs = events(&out);
    assert_eq!(validate(&evs).unwrap().errors, 1);
}

#[test]
fn repeated_and_unsafe_ids_and_duplicates_become_valid_unique_anthropic_ids() {
    let chunks = [
        call(Some(0), Some("call:1/x"), Some("Read"), "{}"),
        call(Some(0), Some("call:1/x"), None, ""),
        call(Some(1), Some("call_1_x"), Some("Read"), "{}"), // cleans to the same id
        finish_reason("tool_calls"),
    ];
    let (_, message, evs) = run(&chunks, FinishCause::Done);
    validate(&evs).unwrap();
    let ids: Vec<&str> = message["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["call_1_x", "toolu_test01_1"]);
}

#[test]
fn error_chunks_malformed_chunks_and_done_are_reported_by_push_data() {
    let mut t = StreamTranslator::new(start());
    let mut out = Vec::new();
    assert_eq!(t.push_data("", &mut out), Upstream::Continue);
    assert_eq!(
        t.push_data(
            r#"{"error": {"message": "CUDA out of memory", "code": 500}}"#,
            &mut out
        ),
        Upstream::Error("upstream error: CUDA out of memory".into())
    );
    assert!(
        matches!(t.push_data("{not json", &mut out), Upstream::Error(m) if m.starts_with("malformed upstream chunk"))
    );
    assert_eq!(t.push_data(" [DONE] ", &mut out), Upstream::Done);
}

#[test]
fn continuous_usage_last_one_wins_and_cached_tokens_are_split_out() {
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": {"prompt_tokens": 50, "completion_tokens": 1}}),
        json!({"choices": [{"index": 0, "delta": {"content": "b"}}], "usage": {"prompt_tokens": 50, "completion_tokens": 2}}),
        json!({"choices": null, "usage": {"prompt_tokens": 50, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 20}}}),
    ];
    let (t, message, _) = run(&chunks, FinishCause::Done);
    let usage = t.usage();
    assert!(!usage.estimated);
    assert_eq!(
        (
            usage.input_tokens,
            usage.cache_read_input_tokens,
            usage.output_tokens
        ),
        (30, 20, 3)
    );
    assert_eq!(message["usage"]["input_tokens"], 30);
    assert_eq!(message["usage"]["cache_read_input_tokens"], 20);
}

#[test]
fn other_choices_are_ignored_and_kinds_alternate_into_new_blocks() {
    let chunks = [
        json!({"choices": [{"index": 1, "delta": {"content": "other choice"}}]}),
        json!({"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "say"}}]}),
        json!({"choices": [{"index": 0, "delta": {"reasoning": "again"}}]}),
        finish_reason("stop"),
    ];
    let (_, message, evs) = run(&chunks, FinishCause::Done);
    validate(&evs).unwrap();
    assert_eq!(
        message["content"],
        json!([
            {"type": "thinking", "thinking": "think", "signature": ""},
            {"type": "text", "text": "say"},
            {"type": "thinking", "thinking": "again", "signature": ""},
        ])
    );
}

#[test]
fn the_validator_rejects_broken_streams() {
    let ev = |name: &str, data: serde_json::Value| (name.to_owned(), data);
    let start = ev(
        "message_start",
        json!({"type": "message_start", "message": {"role": "assistant", "content": []}}),
    );
    let delta = ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"input_tokens": 1, "output_tokens": 1}}),
    );
    let stop = ev("message_stop", json!({"type": "message_stop"}));
    let block = |i: u64| {
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
        )
    };
    let block_stop = |i: u64| {
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        )
    };
    let good = vec![
        start.clone(),
        block(0),
        block_stop(0),
        delta.clone(),
        stop.clone(),
    ];
    assert!(validate(&good).is_ok());
    let broken = [
        vec![block(0), block_stop(0), delta.clone(), stop.clone()], // no message_start
        vec![start.clone(), block(0), delta.clone(), stop.clone()], // block never stopped
        vec![
            start.clone(),
            block(1),
            block_stop(1),
            delta.clone(),
            stop.clone(),
        ], // index skips 0
        vec![
            start.clone(),
            block(0),
            block_stop(0),
            block(0),
            block_stop(0),
            delta.clone(),
            stop.clone(),
        ], // index repeats
        vec![start.clone(), delta.clone()],                         // no message_stop
        vec![start.clone(), delta.clone(), stop.clone(), stop.clone()], // two message_stop
        vec![start.clone(), stop.clone()],                          // no message_delta
    ];
    for (i, events) in broken.iter().enumerate() {
        assert!(validate(events).is_err(), "broken stream {i} passed");
    }
}
