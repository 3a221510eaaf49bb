//! Translation cost per request and per streamed chunk.
//!
//! `cargo bench -p tokenbudget-translate`. The issue's goal: under 1 ms p50 per request,
//! and each chunk passed on as it comes (no buffering).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tokenbudget_translate::anthropic::AnthropicRequest;
use tokenbudget_translate::{
    count_tokens, parse_request, translate_request, translate_request_owned, ChatCounter,
    RouteTarget, StreamStart, StreamTranslator,
};

const CLAUDE_CODE: &str = include_str!("../tests/fixtures/claude_code_request.json");

/// A Claude Code session well under way: the fixture's system prompt and tools, then
/// `turns` tool-use round trips, each with a 2 KB tool result.
fn long_session(turns: usize) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_str(CLAUDE_CODE).unwrap();
    let messages = body["messages"].as_array_mut().unwrap();
    let output = "fn main() { println!(\"hello\"); } // some file content\n".repeat(40);
    for turn in 0..turns {
        let id = format!("toolu_bench_{turn}");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "text", "text": "Let me look at the next file."},
            {"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": format!("/src/file_{turn}.rs")}}
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": output}
        ]}));
    }
    messages.push(json!({"role": "user", "content": "Now summarize."}));
    serde_json::to_vec(&body).unwrap()
}

fn requests(c: &mut Criterion) {
    let target = RouteTarget::new("qwen3-coder-30b");
    let mut group = c.benchmark_group("request");
    for (name, body) in [
        ("claude_code_fixture", CLAUDE_CODE.as_bytes().to_vec()),
        ("session_50_turns", long_session(50)),
        ("session_200_turns", long_session(200)),
    ] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        // What the gateway does per request: parse, translate, serialize the upstream body.
        group.bench_with_input(
            BenchmarkId::new("parse_translate_serialize", name),
            &body,
            |b, body| {
                b.iter(|| {
                    let req = parse_request(body).unwrap();
                    let chat = translate_request(&req, &target).unwrap();
                    serde_json::to_vec(&chat).unwrap()
                })
            },
        );
        // The pieces: the gateway parses every body into a `Value` (pass-through does too).
        group.bench_with_input(BenchmarkId::new("parse_value", name), &body, |b, body| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(body).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("parse_typed", name), &body, |b, body| {
            b.iter(|| parse_request(body).unwrap())
        });
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        group.bench_with_input(
            BenchmarkId::new("typed_from_value", name),
            &value,
            |b, value| {
                b.iter_batched(
                    || value.clone(),
                    |v| serde_json::from_value::<AnthropicRequest>(v).unwrap(),
                    criterion::BatchSize::SmallInput,
                )
            },
        );
        // Borrowing the `Value` (strings copied, nothing freed): the gateway can drop the
        // `Value` off the request's path.
        group.bench_with_input(
            BenchmarkId::new("typed_from_value_ref", name),
            &value,
            |b, value| {
                b.iter(|| <AnthropicRequest as serde::Deserialize>::deserialize(value).unwrap())
            },
        );
        let req = parse_request(&body).unwrap();
        let chat = translate_request(&req, &target).unwrap();
        group.bench_with_input(
            BenchmarkId::new("serialize_only", name),
            &chat,
            |b, chat| b.iter(|| serde_json::to_vec(chat).unwrap()),
        );
        group.bench_with_input(BenchmarkId::new("translate_only", name), &req, |b, req| {
            b.iter(|| translate_request(req, &target).unwrap())
        });
        // What the gateway does: the parsed request moves into the translation.
        group.bench_with_input(BenchmarkId::new("translate_owned", name), &req, |b, req| {
            b.iter_batched(
                || req.clone(),
                |req| translate_request_owned(req, &target).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
        group.bench_with_input(
            BenchmarkId::new("count_tokens_estimator", name),
            &req,
            |b, req| b.iter(|| count_tokens(req, "qwen3-coder-30b").unwrap()),
        );
        // The gateway's counter on the next turn of a session: every message but the new
        // ones was counted on an earlier turn, so it is hashed, not counted.
        let memo = ChatCounter::default();
        memo.count_chat(&chat);
        group.bench_with_input(
            BenchmarkId::new("count_chat_memo_warm", name),
            &chat,
            |b, chat| b.iter(|| memo.count_chat(chat)),
        );
    }
    group.finish();
}

fn chunks(c: &mut Criterion) {
    let start = || StreamStart {
        message_id: "msg_bench".into(),
        model: "claude-sonnet-4-5".into(),
        input_tokens: 1000,
        estimator: Default::default(),
    };
    let text = r#"{"id":"chatcmpl-4n8f2k1x9q7w3e5r","object":"chat.completion.chunk","created":1764625200,"model":"qwen3-coder-30b","system_fingerprint":"qwen3-coder-30b","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}]}"#;
    let args = r#"{"id":"chatcmpl-a1b2c3d4e5f6","object":"chat.completion.chunk","created":1764625300,"model":"qwen3-coder-30b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"365174485","type":"function","function":{"arguments":"ls -la"}}]},"logprobs":null,"finish_reason":null}]}"#;
    let open_call = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"365174485","type":"function","function":{"name":"Bash","arguments":"{\"command\": \""}}]}}]}"#;
    let mut group = c.benchmark_group("chunk");
    group.throughput(Throughput::Elements(1));
    for (name, chunk, setup) in [
        ("text_delta", text, None),
        ("tool_args_delta", args, Some(open_call)),
    ] {
        group.bench_function(BenchmarkId::new("push_data", name), |b| {
            let mut translator = StreamTranslator::new(start());
            // One buffer, cleared after each chunk is sent, as the gateway does.
            let mut out = Vec::with_capacity(1024);
            translator.start(&mut out);
            if let Some(setup) = setup {
                translator.push_data(setup, &mut out);
            }
            b.iter(|| {
                out.clear();
                translator.push_data(chunk, &mut out);
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, requests, chunks);
criterion_main!(benches);
