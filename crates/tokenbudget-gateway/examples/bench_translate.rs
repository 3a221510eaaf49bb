//! Translated routes beside pass-through, through one gateway (SQLite store), against one
//! in-process upstream that speaks both APIs and answers the same text:
//!
//! 1. **Added time per request:** the time from sending a request to its first
//!    `content_block_delta`, pass-through (`/v1/messages` to the Anthropic side) and
//!    translated (the same request routed to the Chat Completions side), for a Claude Code
//!    request as it starts, at 50 turns and at 200 turns; once with an upstream that answers
//!    at once (every cost of translation shows, the prompt's local count included, which
//!    `message_start` waits for) and once with its first byte after 50 ms (the count runs
//!    while the upstream reads the prompt, as it does with any real model).
//! 2. **No buffering:** the upstream sends 20 deltas 5 ms apart; each delta's lag is the time
//!    from the upstream writing it to the client reading its translation. A relay that
//!    buffered would show lags of tens of milliseconds.
//!
//! Run by `cargo xtask bench-gateway` (release build), after the pass-through bench.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt as _;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokenbudget::TokenBudget;
use tokenbudget_gateway::{keys, Gateway, Settings};

const CLAUDE_CODE: &str =
    include_str!("../../tokenbudget-translate/tests/fixtures/claude_code_request.json");

/// The upstream's script: how many deltas, how far apart, and when each was written.
struct Upstream {
    deltas: usize,
    gap: Duration,
    /// Before the first byte (a model reading the prompt).
    first: Duration,
    written: Mutex<Vec<Instant>>,
}

impl Upstream {
    fn new(deltas: usize, gap: Duration, first: Duration) -> Arc<Upstream> {
        Arc::new(Upstream {
            deltas,
            gap,
            first,
            written: Mutex::new(Vec::new()),
        })
    }
}

/// The script the next request gets.
type Shared = Arc<Mutex<Arc<Upstream>>>;

fn sse_body(script: Arc<Upstream>, events: Vec<String>, first_delta: usize) -> Body {
    // Events before `first_delta` go at once; each delta after the first waits `gap`.
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let script = script.clone();
        let event = events.get(i).cloned();
        async move {
            let event = event?;
            if i == 0 && !script.first.is_zero() {
                tokio::time::sleep(script.first).await;
            }
            let is_delta = i >= first_delta && i < first_delta + script.deltas;
            if is_delta && i > first_delta && !script.gap.is_zero() {
                tokio::time::sleep(script.gap).await;
            }
            if is_delta {
                if let Ok(mut w) = script.written.lock() {
                    w.push(Instant::now());
                }
            }
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(event)), i + 1))
        }
    });
    Body::from_stream(stream)
}

fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

async fn anthropic(State(shared): State<Shared>) -> Response {
    let script = shared.lock().map(|s| s.clone()).expect("script");
    let mut events = vec![
        format!(
            "event: message_start\ndata: {}\n\n",
            json!({"type": "message_start", "message": {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 1000, "output_tokens": 1}}})
        ),
        format!(
            "event: content_block_start\ndata: {}\n\n",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        ),
    ];
    for i in 0..script.deltas {
        events.push(format!("event: content_block_delta\ndata: {}\n\n", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("word{i} ")}})));
    }
    events.push(format!(
        "event: content_block_stop\ndata: {}\n\n",
        json!({"type": "content_block_stop", "index": 0})
    ));
    events.push(format!("event: message_delta\ndata: {}\n\n", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": script.deltas}})));
    events.push(format!(
        "event: message_stop\ndata: {}\n\n",
        json!({"type": "message_stop"})
    ));
    sse_response(sse_body(script, events, 2))
}

async fn chat(State(shared): State<Shared>) -> Response {
    let script = shared.lock().map(|s| s.clone()).expect("script");
    let chunk = |choices: Value| json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "qwen3-coder-30b", "choices": choices});
    let mut events = Vec::new();
    for i in 0..script.deltas {
        let c = chunk(
            json!([{"index": 0, "delta": {"content": format!("word{i} ")}, "finish_reason": null}]),
        );
        events.push(format!("data: {c}\n\n"));
    }
    let last = chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]));
    events.push(format!("data: {last}\n\n"));
    let mut usage = chunk(json!([]));
    usage["usage"] = json!({"prompt_tokens": 1000, "completion_tokens": script.deltas, "total_tokens": 1000 + script.deltas});
    events.push(format!("data: {usage}\n\n"));
    events.push("data: [DONE]\n\n".to_owned());
    sse_response(sse_body(script, events, 0))
}

/// A Claude Code session well under way: the fixture's system prompt and tools, then `turns`
/// tool-use round trips, each with a 2 KB tool result (as the translate crate's bench).
fn session(model: &str, turns: usize) -> Vec<u8> {
    let mut body: Value = serde_json::from_str(CLAUDE_CODE).expect("fixture");
    body["model"] = model.into();
    body["stream"] = true.into();
    let messages = body["messages"].as_array_mut().expect("messages");
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
    serde_json::to_vec(&body).expect("body")
}

/// Sends `body`; returns the time to the first `content_block_delta` and the arrival time of
/// every delta.
async fn one(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &[u8],
) -> (Duration, Vec<Instant>) {
    let sent = Instant::now();
    let mut r = client
        .post(url)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
    let mut text = String::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = r.chunk().await.expect("chunk") {
        text.push_str(&String::from_utf8_lossy(&chunk));
        let seen = text.matches("event: content_block_delta").count();
        let now = Instant::now();
        while arrivals.len() < seen {
            arrivals.push(now);
        }
    }
    let first = arrivals.first().map_or(Duration::MAX, |t| *t - sent);
    (first, arrivals)
}

fn ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let shared: Shared = Arc::new(Mutex::new(Upstream::new(5, Duration::ZERO, Duration::ZERO)));
    let app = Router::new()
        .route("/v1/messages", post(anthropic))
        .route("/v1/chat/completions", post(chat))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = format!("http://{}", listener.local_addr().expect("addr"));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let budgets = TokenBudget::open(&db).await.expect("store");
    budgets
        .create_workflow("bench", 1 << 60)
        .await
        .expect("budget");
    let keys = keys::open(&db).await.expect("keys");
    let (key, record) = keys::generate("bench".try_into().expect("id"), None, None).expect("key");
    keys.insert(&record).await.expect("insert");
    let file = Settings::from_toml(&format!(
        "[upstreams.local]\nkind = \"openai\"\nurl = \"{upstream}/v1\"\n\n[[routes]]\nmatch = \"local-*\"\nupstream = \"local\"\nmodel = \"qwen3-coder-30b\"\n"
    ))
    .expect("config");
    let mut settings = Settings::default()
        .with_anthropic_url(&upstream)
        .expect("url");
    settings.routes = file.routes;
    let gateway = Gateway::new(budgets, keys, settings).expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gw = format!(
        "http://{}/v1/messages",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(tokenbudget_gateway::serve(
        gateway.clone(),
        listener,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let client = reqwest::Client::new();

    for first in [Duration::ZERO, Duration::from_millis(50)] {
        *shared.lock().expect("script") = Upstream::new(5, Duration::ZERO, first);
        println!(
            "\nTime to the first content_block_delta through the gateway (1 client, the upstream's first byte after {first:?})\n"
        );
        println!("| request | body KB | pass-through p50/p99 ms | translated p50/p99 ms | added p50 ms |");
        println!("|---|---|---|---|---|");
        let rounds = if first.is_zero() { 200 } else { 60 };
        for (name, turns) in [
            ("claude code, first turn", 0),
            ("50 turns", 50),
            ("200 turns", 200),
        ] {
            let plain = session("claude-sonnet-4-5", turns);
            let routed = session("local-qwen", turns);
            let (mut p, mut t) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                one(&client, &gw, &key, &plain).await;
                one(&client, &gw, &key, &routed).await;
            }
            for _ in 0..rounds {
                p.push(one(&client, &gw, &key, &plain).await.0);
                t.push(one(&client, &gw, &key, &routed).await.0);
            }
            p.sort();
            t.sort();
            println!(
                "| {name} | {} | {:.3}/{:.3} | {:.3}/{:.3} | {:.3} |",
                plain.len() / 1024,
                ms(&p, 0.5),
                ms(&p, 0.99),
                ms(&t, 0.5),
                ms(&t, 0.99),
                ms(&t, 0.5) - ms(&p, 0.5)
            );
        }
    }

    println!(
        "\nPer-delta lag, upstream write to client read (20 deltas 5 ms apart, 20 requests)\n"
    );
    println!("| path | deltas | lag p50 ms | lag p99 ms | lag max ms |");
    println!("|---|---|---|---|---|");
    for (name, model) in [
        ("pass-through", "claude-sonnet-4-5"),
        ("translated", "local-qwen"),
    ] {
        let body = session(model, 0);
        let mut lags = Vec::new();
        for _ in 0..20 {
            let script = Upstream::new(20, Duration::from_millis(5), Duration::ZERO);
            *shared.lock().expect("script") = script.clone();
            let (_, arrivals) = one(&client, &gw, &key, &body).await;
            let written = script.written.lock().expect("written").clone();
            assert_eq!(arrivals.len(), written.len(), "{name}: every delta arrives");
            lags.extend(
                arrivals
                    .iter()
                    .zip(&written)
                    .map(|(a, w)| a.saturating_duration_since(*w)),
            );
        }
        lags.sort();
        println!(
            "| {name} | {} | {:.3} | {:.3} | {:.3} |",
            lags.len(),
            ms(&lags, 0.5),
            ms(&lags, 0.99),
            ms(&lags, 1.0)
        );
    }
    tokio::time::timeout(Duration::from_secs(60), gateway.settled())
        .await
        .expect("settled");
}
