//! Translated routes: the gateway in front of the in-process fake's OpenAI-compatible side,
//! in each dialect and failure mode, with the budget checked after each.

mod common;

use common::start;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokenbudget_gateway::fake::{Dialect, Fake, Mode};
use tokenbudget_gateway::{Settings, Settled};

/// Routes `claude-haiku-*` to the fake's `/v1` as `qwen3-coder-30b`; pings every 20 ms.
fn routed(s: &mut Settings) {
    let file = Settings::from_toml(&format!(
        r#"
keepalive = "20ms"
[upstreams.local]
kind = "openai"
url = "{}/v1"
[[routes]]
match = "claude-haiku-*"
upstream = "local"
model = "qwen3-coder-30b"
"#,
        s.anthropic_url
    ))
    .unwrap();
    s.routes = file.routes;
    s.keepalive = file.keepalive;
}

fn haiku(text: &str, stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 1000,
        "stream": stream,
        "tools": [{"name": "Bash", "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}],
        "messages": [{"role": "user", "content": text}],
    })
}

/// (event name, data) of each SSE event.
fn events(sse: &str) -> Vec<(String, Value)> {
    sse.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("");
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// Exactly one message_stop, last, and message_start first.
fn well_formed(events: &[(String, Value)]) {
    let names = names(events);
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "message_stop").count(), 1);
    let starts = names
        .iter()
        .filter(|n| **n == "content_block_start")
        .count();
    let stops = names.iter().filter(|n| **n == "content_block_stop").count();
    assert_eq!(starts, stops, "{names:?}");
}

fn stop_reason(events: &[(String, Value)]) -> Value {
    events
        .iter()
        .find(|(n, _)| n == "message_delta")
        .map(|(_, d)| d["delta"]["stop_reason"].clone())
        .unwrap()
}

#[tokio::test]
async fn a_text_answer_is_translated_and_the_reported_usage_committed_once() {
    let h = start(100_000, routed).await;
    let response = h.messages(&haiku("Say hello.", true)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let ev = events(&response.text().await.unwrap());
    well_formed(&ev);
    assert_eq!(stop_reason(&ev), "end_turn");
    let text: String = ev
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, "Hello from the fake upstream.");
    h.settled().await;
    let status = h.status("team").await;
    // The fake reports 25 input and one token per word.
    assert_eq!((status.used, status.reserved, status.held), (30, 0, 0));
    let records = h.ledger.records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].settled, records[0].estimated),
        (Settled::Completed, false)
    );
    assert_eq!(records[0].model.as_deref(), Some("qwen3-coder-30b"));
    let (headers, sent) = h.fake.received().pop().unwrap();
    assert_eq!(sent["model"], "qwen3-coder-30b");
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert!(
        headers.get("authorization").is_none(),
        "no key configured, none sent"
    );
    assert!(headers.get("anthropic-version").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn tool_calls_in_every_dialect_become_one_tool_use_block_and_settle_once() {
    let h = start(1_000_000, routed).await;
    h.fake.set_mode(Mode::ToolLoop);
    let args = json!({"command": "echo Hello from the fake upstream.", "description": "Echo"});
    let mut expected_used = 0;
    for (n, dialect) in [
        Dialect::OpenAi,
        Dialect::Ollama,
        Dialect::Vllm,
        Dialect::Mlx,
    ]
    .into_iter()
    .enumerate()
    {
        h.fake.set_dialect(dialect);
        let sse = h
            .messages(&haiku(&format!("run it {n}"), true))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let ev = events(&sse);
        well_formed(&ev);
        assert_eq!(stop_reason(&ev), "tool_use", "{dialect:?}: {sse}");
        let blocks: Vec<&Value> = ev
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"])
            .collect();
        assert_eq!(blocks.len(), 1, "{dialect:?}: one call, one block: {sse}");
        assert_eq!(
            (blocks[0]["type"].as_str(), blocks[0]["name"].as_str()),
            (Some("tool_use"), Some("Bash"))
        );
        if dialect == Dialect::Mlx {
            // No id from mlx: one is made up.
            assert!(blocks[0]["id"].as_str().unwrap().starts_with("toolu_"));
        }
        let json: String = ev
            .iter()
            .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap(),
            args,
            "{dialect:?}"
        );
        h.settled().await;
        let status = h.status("team").await;
        assert_eq!(
            (status.reserved, status.held),
            (0, 0),
            "{dialect:?}: nothing left held"
        );
        let records = h.ledger.records();
        assert_eq!(records.len(), n + 1, "{dialect:?}: settled once");
        let record = records.last().unwrap();
        assert_eq!(
            record.settled,
            Settled::Completed,
            "{dialect:?}: {record:?}"
        );
        if dialect == Dialect::Mlx {
            // mlx reports no usage: the gateway's own count, flagged.
            assert!(record.estimated && record.usage.input > 0 && record.usage.output > 0);
        } else {
            assert!(!record.estimated);
            assert_eq!(record.cost, 25 + Fake::output_tokens(&args.to_string()));
        }
        expected_used += record.cost;
        assert_eq!(status.used, expected_used, "{dialect:?}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn pings_keep_the_client_alive_until_a_slow_first_byte() {
    let h = start(100_000, routed).await;
    // A model loading for 40 s: the fake holds its first byte until this test has seen
    // three pings; pings every 20 ms, so no test waits 40 s.
    let gate = h.fake.hold_first_byte();
    let response = h.messages(&haiku("Say hello.", true)).send().await.unwrap();
    let mut body = response.bytes_stream();
    let mut sse = String::new();
    let mut released = false;
    while let Some(chunk) = body.next().await {
        sse.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        if !released && sse.matches("event: ping").count() >= 3 {
            gate.notify_one();
            released = true;
        }
    }
    assert!(released);
    let ev = events(&sse);
    well_formed(&ev);
    let names = names(&ev);
    let first_content = names
        .iter()
        .position(|n| *n == "content_block_start")
        .unwrap();
    assert_eq!(names[0], "message_start");
    assert!(
        names[1..first_content]
            .iter()
            .filter(|n| **n == "ping")
            .count()
            >= 3
            && names[1..first_content].iter().all(|n| *n == "ping"),
        "message_start, then pings, then the answer: {names:?}"
    );
    assert_eq!(stop_reason(&ev), "end_turn");
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!((status.used, status.held), (30, 0));
    h.shutdown().await;
}

#[tokio::test]
async fn a_cut_mid_answer_ends_with_an_error_and_commits_what_was_used() {
    let h = start(100_000, routed).await;
    h.fake.set_mode(Mode::Cut);
    let sse = h
        .messages(&haiku("Say hello.", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ev = events(&sse);
    well_formed(&ev);
    let names = names(&ev);
    let error = names
        .iter()
        .position(|n| *n == "error")
        .expect("an error event");
    assert!(error < names.len() - 1);
    assert_eq!(stop_reason(&ev), Value::Null, "not end_turn: {sse}");
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!((status.reserved, status.held), (0, 0));
    let records = h.ledger.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].settled, Settled::Partial);
    assert!(records[0].estimated);
    // The prompt as counted, and the text streamed before the cut: never zero.
    assert!(records[0].usage.input > 0 && records[0].usage.output > 0);
    assert_eq!(status.used, records[0].cost);
    h.shutdown().await;
}

#[tokio::test]
async fn an_upstream_500_is_an_error_event_and_nothing_is_spent() {
    let h = start(100_000, routed).await;
    h.fake.set_mode(Mode::Status(500));
    let response = h.messages(&haiku("Say hello.", true)).send().await.unwrap();
    let ev = events(&response.text().await.unwrap());
    well_formed(&ev);
    let (_, error) = ev.iter().find(|(n, _)| n == "error").unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("500: fake failure"),
        "{error}"
    );
    // Non-streaming: the upstream's status, Anthropic's shape.
    let response = h
        .messages(&haiku("Say hello.", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!((status.used, status.reserved, status.held), (0, 0, 0));
    let records = h.ledger.records();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.settled == Settled::RolledBack));
    h.shutdown().await;
}

#[tokio::test]
async fn non_streaming_tool_calls_translate_and_settle() {
    let h = start(100_000, routed).await;
    h.fake.set_mode(Mode::ToolLoop);
    let response = h.messages(&haiku("run it", false)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(message["content"][0]["name"], "Bash");
    assert_eq!(message["model"], "claude-haiku-4-5");
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!(status.held, 0);
    assert_eq!(status.used, h.ledger.records()[0].cost);
    h.shutdown().await;
}

#[tokio::test]
async fn count_tokens_is_answered_locally_and_models_lists_the_routes() {
    let h = start(100_000, routed).await;
    let count: Value = h
        .client
        .post(format!("{}/v1/messages/count_tokens", h.url))
        .header("x-api-key", &h.key)
        .json(&json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Say hello."}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(count["input_tokens"].as_u64().unwrap() > 0, "{count}");
    assert!(h.fake.received().is_empty(), "nothing was sent upstream");
    let models: Value = h
        .client
        .get(format!("{}/v1/models", h.url))
        .header("x-api-key", &h.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "claude-haiku-*");
    assert_eq!(models["data"][0]["upstream_model"], "qwen3-coder-30b");
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    // An unrouted model still passes through to the default Anthropic upstream.
    let response = h
        .messages(&common::request("Say hello.", 1000, false))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert!(h.fake.received()[0].1.get("max_tokens").is_some());
    h.shutdown().await;
}

#[tokio::test]
async fn a_long_request_is_sent_whole_and_a_clamp_lowers_max_tokens_upstream() {
    // Long enough (over 64 KB) that the upstream body is written beside admission.
    let long = "fn main() { println!(\"hello\"); } // \u{43a}\u{43e}\u{434}\n".repeat(2_000);
    let mut body = haiku(&long, true);
    body["max_tokens"] = json!(128_000);
    // Room for the prompt's bound (about 90 KB of text) and some output, not for 128,000.
    let h = start(150_000, routed).await;
    let response = h.messages(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let clamped = common::clamped_max_tokens(&response);
    assert!((1_024..128_000).contains(&clamped), "{clamped}");
    well_formed(&events(&response.text().await.unwrap()));
    let (_, sent) = h.fake.received().pop().unwrap();
    assert_eq!(
        sent["max_tokens"], clamped,
        "the upstream may not spend more"
    );
    assert!(
        sent["messages"][0]["content"] == long.as_str(),
        "sent whole"
    );
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!((status.reserved, status.held), (0, 0));

    // With room for all of it, the same request goes as asked.
    body["max_tokens"] = json!(1_000);
    let response = h.messages(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-tokenbudget-max-tokens").is_none());
    well_formed(&events(&response.text().await.unwrap()));
    let (_, sent) = h.fake.received().pop().unwrap();
    assert_eq!(sent["max_tokens"], 1_000);
    assert!(
        sent["messages"][0]["content"] == long.as_str(),
        "sent whole"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn untranslatable_content_is_a_400_after_the_key_check_and_reserves_nothing() {
    let h = start(100_000, routed).await;
    // Long, so it is translated on a blocking thread beside the key check.
    let mut body = haiku(&"x".repeat(100_000), true);
    body["messages"] = json!([{"role": "user", "content": [
        {"type": "text", "text": "x".repeat(100_000)},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}}
    ]}]);
    let anonymous = h
        .client
        .post(format!("{}/v1/messages", h.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "the key is checked first");
    let response = h.messages(&body).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("document"),
        "{error}"
    );
    assert!(h.fake.received().is_empty(), "nothing forwarded");
    let events = h.gateway.budgets().events("team", 0).await.unwrap();
    assert_eq!(events.len(), 1, "only the budget's creation: {events:?}");
    h.shutdown().await;
}
