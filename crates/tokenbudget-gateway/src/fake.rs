//! A fake Anthropic and OpenAI upstream on 127.0.0.1 for tests, `cargo xtask e2e` and the
//! bench: scripted answers and failure modes, and a record of what it received.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

/// How the fake answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A text answer.
    Text,
    /// `tool_use` of `Bash` running `echo <text>` unless the last message carries a
    /// `tool_result`, then a text answer quoting it.
    ToolLoop,
    /// This error status before any byte (429, 500, 529).
    Status(u16),
    /// `message_start`, some text, then an `error` event.
    ErrorMidStream,
    /// `message_start`, some text, then the connection is cut.
    Cut,
    /// Waits this long before answering.
    Slow(Duration),
    /// Holds the stream open after `message_start` until the client goes away.
    Hang,
}

/// How the fake answers `POST /v1/messages/count_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountMode {
    /// `{"input_tokens": N}`: this number, or the fake's `input_tokens` when `None`.
    Answer(Option<u64>),
    /// Never answers (the connection stays open).
    Hang,
    /// This error status.
    Fail(u16),
}

/// How the fake's OpenAI-compatible side streams tool calls and usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI's: `index` on every piece, `id` on the first, a usage chunk with `choices: []`.
    OpenAi,
    /// Ollama's: no `index`, the `id` on every piece, `finish_reason: "stop"` after calls.
    Ollama,
    /// vLLM's: `"id": null` after the first piece, `choices: null` in the usage chunk.
    Vllm,
    /// mlx's: neither `id` nor `index`, and no usage at all.
    Mlx,
}

/// The fake's script and what it saw.
#[derive(Debug)]
pub struct Fake {
    pub mode: Mutex<Mode>,
    /// The answer text.
    pub text: Mutex<String>,
    /// Reported input tokens; `None`: one per 2 bytes of the request body (dense input).
    pub input_tokens: Mutex<Option<u64>>,
    /// Bytes per chunk of a streamed answer (odd splits).
    pub chunk: Mutex<usize>,
    /// Every request body received, with its headers.
    pub received: Mutex<Vec<(HeaderMap, Value)>>,
    /// The OpenAI side's dialect.
    pub dialect: Mutex<Dialect>,
    /// How `count_tokens` answers.
    pub count_mode: Mutex<CountMode>,
    /// Every `count_tokens` request received, with its headers.
    pub counted: Mutex<Vec<(HeaderMap, Value)>>,
    /// When set, a streamed chat answer's first body byte waits for this to be notified
    /// (a model loading: tests release it instead of sleeping).
    pub first_byte_gate: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            mode: Mutex::new(Mode::Text),
            text: Mutex::new("Hello from the fake upstream.".into()),
            input_tokens: Mutex::new(Some(25)),
            chunk: Mutex::new(7),
            received: Mutex::new(Vec::new()),
            dialect: Mutex::new(Dialect::OpenAi),
            count_mode: Mutex::new(CountMode::Answer(None)),
            counted: Mutex::new(Vec::new()),
            first_byte_gate: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Fake {
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.mode) = mode;
    }
    pub fn set_input_tokens(&self, n: Option<u64>) {
        *lock(&self.input_tokens) = n;
    }
    pub fn set_chunk(&self, n: usize) {
        *lock(&self.chunk) = n.max(1);
    }
    pub fn set_text(&self, text: &str) {
        *lock(&self.text) = text.to_owned();
    }
    pub fn set_count_mode(&self, mode: CountMode) {
        *lock(&self.count_mode) = mode;
    }
    pub fn counted(&self) -> Vec<(HeaderMap, Value)> {
        lock(&self.counted).clone()
    }
    pub fn set_dialect(&self, dialect: Dialect) {
        *lock(&self.dialect) = dialect;
    }
    /// Holds the first body byte of the next streamed chat answers until the returned
    /// handle is notified.
    pub fn hold_first_byte(&self) -> Arc<tokio::sync::Notify> {
        let gate = Arc::new(tokio::sync::Notify::new());
        *lock(&self.first_byte_gate) = Some(gate.clone());
        gate
    }
    pub fn received(&self) -> Vec<(HeaderMap, Value)> {
        lock(&self.received).clone()
    }
    /// The output tokens the fake reports for its text: one per word.
    pub fn output_tokens(text: &str) -> u64 {
        text.split_whitespace().count() as u64
    }
}

/// Starts the fake on 127.0.0.1 (port 0: any free port); returns its base URL.
pub async fn start(fake: Arc<Fake>) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .with_state(fake);
    tokio::spawn(async move {
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

fn chunked(text: String, chunk: usize, tail: Option<Bytes>, fail: bool, hang: bool) -> Body {
    let bytes = text.into_bytes();
    let mut pieces: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    if let Some(tail) = tail {
        pieces.push(Ok(tail));
    }
    use futures_util::StreamExt;
    let stream = futures_util::stream::iter(pieces);
    if fail {
        // The cut comes a moment after the last byte, so what was sent reaches the client
        // first: a connection lost mid-answer, not a refused request.
        let cut = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::other("fake cut"))
        });
        Body::from_stream(stream.chain(cut))
    } else if hang {
        Body::from_stream(stream.chain(futures_util::stream::pending()))
    } else {
        Body::from_stream(stream)
    }
}

async fn prelude(fake: &Fake, headers: &HeaderMap, body: &Value) -> Option<Response> {
    lock(&fake.received).push((headers.clone(), body.clone()));
    let mode = lock(&fake.mode).clone();
    match mode {
        Mode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = match code {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            Some(
                (
                    status,
                    [("retry-after", "1"), ("request-id", "req_fake_error")],
                    axum::Json(json!({"type": "error", "error": {"type": kind, "message": "fake failure"}})),
                )
                    .into_response(),
            )
        }
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
        _ => None,
    }
}

fn last_tool_result(body: &Value) -> Option<String> {
    let last = body.get("messages")?.as_array()?.last()?;
    let blocks = last.get("content")?.as_array()?;
    blocks.iter().find_map(|b| {
        (b.get("type")?.as_str()? == "tool_result").then(|| match b.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        })
    })
}

async fn messages(State(fake): State<Arc<Fake>>, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    if let Some(r) = prelude(&fake, &headers, &body).await {
        return r;
    }
    let mode = lock(&fake.mode).clone();
    let input = lock(&fake.input_tokens).unwrap_or(raw.len() as u64 / 2);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake")
        .to_owned();
    let n = lock(&fake.received).len();
    // The id depends on the request only, so the same request answers the same bytes.
    let id = format!(
        "msg_fake_{}",
        &crate::keys::hash(&String::from_utf8_lossy(&raw))[..16]
    );
    let text = lock(&fake.text).clone();
    let (block, stop_reason, out_text) = match (&mode, last_tool_result(&body)) {
        (Mode::ToolLoop, None) => (
            json!({"type": "tool_use", "id": format!("toolu_{n}"), "name": "Bash", "input": {"command": format!("echo {text}"), "description": "Echo"}}),
            "tool_use",
            String::new(),
        ),
        (Mode::ToolLoop, Some(result)) => {
            let t = format!("The tool said: {}", result.trim());
            (json!({"type": "text", "text": t}), "end_turn", t)
        }
        _ => (
            json!({"type": "text", "text": text}),
            "end_turn",
            text.clone(),
        ),
    };
    let output = Fake::output_tokens(&out_text).max(1);
    let headers_out = [
        ("request-id", format!("req_{id}")),
        ("anthropic-ratelimit-requests-remaining", "99".into()),
    ];
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !streaming {
        let answer = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [block], "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": output}
        });
        return (headers_out, axum::Json(answer)).into_response();
    }
    let start = json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}}});
    let mut events = vec![("message_start", start), ("ping", json!({"type": "ping"}))];
    let is_tool = block.get("type").and_then(Value::as_str) == Some("tool_use");
    if is_tool {
        let input_json = block["input"].to_string();
        let mut start_block = block.clone();
        start_block["input"] = json!({});
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": start_block}),
        ));
        events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": input_json}})));
    } else {
        events.push(("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
        for word in out_text.split_inclusive(' ') {
            events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}})));
        }
    }
    let (fail, hang, tail) = match mode {
        Mode::ErrorMidStream => (
            false,
            false,
            Some(sse(&[(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            )])),
        ),
        Mode::Cut => (true, false, None),
        Mode::Hang => (false, true, None),
        _ => {
            events.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            events.push((
                "unknown_future_event",
                json!({"type": "unknown_future_event"}),
            ));
            events.push(("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output}})));
            events.push(("message_stop", json!({"type": "message_stop"})));
            (false, false, None)
        }
    };
    let chunk = *lock(&fake.chunk);
    let body = chunked(sse(&events), chunk, tail.map(Bytes::from), fail, hang);
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        "content-type",
        "text/event-stream"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
    );
    for (k, v) in headers_out {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    }
    response
}

async fn count_tokens(State(fake): State<Arc<Fake>>, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    lock(&fake.counted).push((headers, body));
    let mode = *lock(&fake.count_mode);
    let input = match mode {
        CountMode::Answer(Some(n)) => n,
        CountMode::Answer(None) => lock(&fake.input_tokens).unwrap_or(raw.len() as u64 / 2),
        CountMode::Hang => return std::future::pending().await,
        CountMode::Fail(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (
                status,
                axum::Json(json!({"type": "error", "error": {"type": "api_error", "message": "fake count failure"}})),
            )
                .into_response();
        }
    };
    axum::Json(json!({"input_tokens": input})).into_response()
}

async fn models() -> Response {
    axum::Json(json!({"data": [{"type": "model", "id": "claude-fake", "display_name": "Fake"}], "has_more": false})).into_response()
}

fn last_tool_message(body: &Value) -> Option<String> {
    let last = body.get("messages")?.as_array()?.last()?;
    (last.get("role")?.as_str()? == "tool").then(|| match last.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    })
}

/// The tool call's pieces in `dialect`: the name first, then the arguments in 5-byte pieces.
fn tool_call_chunks(dialect: Dialect, arguments: &str) -> Vec<Value> {
    let mut pieces: Vec<String> = arguments
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    pieces.insert(0, String::new());
    pieces
        .iter()
        .enumerate()
        .map(|(n, args)| {
            let mut call = json!({"function": {"arguments": args}});
            if n == 0 {
                call["function"]["name"] = json!("Bash");
                call["type"] = json!("function");
            }
            match dialect {
                Dialect::OpenAi => {
                    call["index"] = json!(0);
                    if n == 0 {
                        call["id"] = json!("call_fake_1");
                    }
                }
                Dialect::Ollama => call["id"] = json!("call_fake_1"),
                Dialect::Vllm => {
                    call["index"] = json!(0);
                    call["id"] = if n == 0 {
                        json!("chatcmpl-tool-fake")
                    } else {
                        Value::Null
                    };
                }
                Dialect::Mlx => {}
            }
            call
        })
        .collect()
}

async fn chat(State(fake): State<Arc<Fake>>, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    if let Some(r) = prelude(&fake, &headers, &body).await {
        return r;
    }
    let mode = lock(&fake.mode).clone();
    let dialect = *lock(&fake.dialect);
    let input = lock(&fake.input_tokens).unwrap_or(raw.len() as u64 / 2);
    let base_text = lock(&fake.text).clone();
    let (text, tool_args) = match (&mode, last_tool_message(&body)) {
        (Mode::ToolLoop, None) => (
            String::new(),
            Some(
                json!({"command": format!("echo {base_text}"), "description": "Echo"}).to_string(),
            ),
        ),
        (Mode::ToolLoop, Some(result)) => (format!("The tool said: {}", result.trim()), None),
        _ => (base_text, None),
    };
    let output = Fake::output_tokens(tool_args.as_deref().unwrap_or(&text)).max(1);
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output});
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !streaming {
        let message = match &tool_args {
            Some(args) => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_fake_1", "type": "function", "function": {"name": "Bash", "arguments": args}}]}),
            None => json!({"role": "assistant", "content": text}),
        };
        let finish = if tool_args.is_some() {
            "tool_calls"
        } else {
            "stop"
        };
        let answer = json!({"id": "chatcmpl-fake", "object": "chat.completion", "model": "gpt-fake",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage});
        if mode == Mode::Cut {
            // Half the JSON, then the connection is lost.
            let text = answer.to_string();
            let mid = (0..=text.len() / 2)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            let half = text[..mid].to_owned();
            let mut response = Response::new(chunked(half, 64, None, true, false));
            if let Ok(v) = "application/json".parse() {
                response.headers_mut().insert("content-type", v);
            }
            return response;
        }
        return axum::Json(answer).into_response();
    }
    let include = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && dialect != Dialect::Mlx;
    let chunk = |choices: Value| json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "gpt-fake", "choices": choices});
    let mut out = String::new();
    let finish = match &tool_args {
        Some(args) => {
            for call in tool_call_chunks(dialect, args) {
                let c = chunk(
                    json!([{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": null}]),
                );
                out.push_str(&format!("data: {c}\n\n"));
            }
            if dialect == Dialect::Ollama {
                "stop"
            } else {
                "tool_calls"
            }
        }
        None => {
            for word in text.split_inclusive(' ') {
                let c =
                    chunk(json!([{"index": 0, "delta": {"content": word}, "finish_reason": null}]));
                out.push_str(&format!("data: {c}\n\n"));
            }
            "stop"
        }
    };
    let cut = mode == Mode::Cut;
    if !cut {
        let last = chunk(json!([{"index": 0, "delta": {}, "finish_reason": finish}]));
        out.push_str(&format!("data: {last}\n\n"));
        if include {
            let choices = if dialect == Dialect::Vllm {
                Value::Null
            } else {
                json!([])
            };
            let mut u = chunk(choices);
            u["usage"] = usage;
            out.push_str(&format!("data: {u}\n\n"));
        }
        out.push_str("data: [DONE]\n\n");
    }
    let size = *lock(&fake.chunk);
    let body = chunked(out, size, None, cut, false);
    let gate = lock(&fake.first_byte_gate).clone();
    let body = match gate {
        Some(gate) => {
            use futures_util::StreamExt;
            let wait = futures_util::stream::once(async move {
                gate.notified().await;
                Ok::<Bytes, std::io::Error>(Bytes::new())
            });
            Body::from_stream(
                wait.chain(
                    body.into_data_stream()
                        .map(|r| r.map_err(std::io::Error::other)),
                ),
            )
        }
        None => body,
    };
    let mut response = Response::new(body);
    if let Ok(v) = "text/event-stream".parse() {
        response.headers_mut().insert("content-type", v);
    }
    response
}
