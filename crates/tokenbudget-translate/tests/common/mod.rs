//! Test helpers: SSE framing with `eventsource-stream` (as the gateway frames it), a grammar
//! validator for Anthropic event streams, and an accumulator that rebuilds the message the
//! way the Anthropic SDKs do.

#![allow(dead_code)]

use std::collections::HashSet;
use std::convert::Infallible;

use eventsource_stream::Eventsource;
use futures::executor::block_on;
use futures::StreamExt;
use serde_json::Value;
use tokenbudget_translate::{FinishCause, StreamStart, StreamTranslator, Upstream};

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Frames `bytes`, delivered in pieces cut at `cuts` (byte offsets, any order), into SSE
/// events: (event name, data).
pub fn frame(bytes: &[u8], cuts: &[usize]) -> Vec<(String, String)> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut at = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        pieces.push(Ok::<Vec<u8>, Infallible>(bytes[at..cut].to_vec()));
        at = cut;
    }
    block_on(
        futures::stream::iter(pieces)
            .eventsource()
            .map(|e| {
                let e = e.expect("valid SSE");
                (e.event, e.data)
            })
            .collect(),
    )
}

pub fn start() -> StreamStart {
    StreamStart {
        message_id: "msg_test01".into(),
        model: "claude-sonnet-4-5".into(),
        input_tokens: 100,
        estimator: Default::default(),
    }
}

/// Runs an upstream SSE body (split at `cuts`) through a translator as the gateway would:
/// `start` first, each `data:` through `push_data`, `finish` on `[DONE]`, an error, or
/// (when `end` says so) at the end of the body.
pub fn translate_sse(
    upstream: &[u8],
    cuts: &[usize],
    end: FinishCause,
) -> (StreamTranslator, Vec<u8>) {
    let mut translator = StreamTranslator::new(start());
    let mut out = Vec::new();
    translator.start(&mut out);
    for (_, data) in frame(upstream, cuts) {
        match translator.push_data(&data, &mut out) {
            Upstream::Continue => {}
            Upstream::Done => {
                translator.finish(FinishCause::Done, &mut out);
                break;
            }
            Upstream::Error(message) => {
                translator.finish(FinishCause::UpstreamError(message), &mut out);
                break;
            }
        }
    }
    translator.finish(end, &mut out);
    (translator, out)
}

/// The translator's output as (event name, JSON data), checking that each event's name
/// equals its data's `type`.
pub fn events(out: &[u8]) -> Vec<(String, Value)> {
    frame(out, &[])
        .into_iter()
        .map(|(name, data)| {
            let value: Value = serde_json::from_str(&data).expect("event data is JSON");
            assert_eq!(value["type"], name.as_str(), "event name and type differ");
            (name, value)
        })
        .collect()
}

/// What the validator saw.
#[derive(Debug, Default)]
pub struct Summary {
    pub blocks: usize,
    pub errors: usize,
    pub pings: usize,
    pub stop_reason: Value,
}

/// Checks Anthropic's stream grammar: `message_start` first; blocks started at 0, 1, 2…,
/// each stopped before the next starts, deltas only into the open block and of its kind;
/// `message_delta` after every block is stopped; exactly one `message_stop`, last; tool
/// ids unique and well formed; without an error event, every tool input is a JSON object.
pub fn validate(events: &[(String, Value)]) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut open: Option<(u64, String, String)> = None; // (index, kind, json so far)
    let mut next = 0u64;
    let mut started = false;
    let mut deltas = 0;
    let mut stops = 0;
    let mut ids = HashSet::new();
    let mut inputs = Vec::new();
    for (i, (name, data)) in events.iter().enumerate() {
        if stops > 0 {
            return Err(format!("event {i} ({name}) after message_stop"));
        }
        if !started && name != "message_start" {
            return Err(format!("event {i} is {name}, not message_start"));
        }
        match name.as_str() {
            "message_start" => {
                if started {
                    return Err(format!("second message_start at {i}"));
                }
                started = true;
                let message = &data["message"];
                if message["content"] != Value::Array(vec![]) || message["role"] != "assistant" {
                    return Err(format!("bad message_start {data}"));
                }
            }
            "ping" => summary.pings += 1,
            "error" => {
                summary.errors += 1;
                if !data["error"]["message"].is_string() || !data["error"]["type"].is_string() {
                    return Err(format!("bad error event {data}"));
                }
            }
            "content_block_start" => {
                if deltas > 0 {
                    return Err(format!("block started after message_delta at {i}"));
                }
                if let Some((index, ..)) = &open {
                    return Err(format!("block {index} still open at {i}"));
                }
                let index = data["index"].as_u64().ok_or("start without index")?;
                if index != next {
                    return Err(format!("block index {index}, expected {next}"));
                }
                next += 1;
                let block = &data["content_block"];
                let kind = block["type"]
                    .as_str()
                    .ok_or("block without type")?
                    .to_owned();
                match kind.as_str() {
                    "text" if block["text"] == "" => {}
                    "thinking" if block["thinking"] == "" => {}
                    "tool_use" => {
                        let id = block["id"].as_str().ok_or("tool_use without id")?;
                        let well_formed = !id.is_empty()
                            && id
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                        if !well_formed || !ids.insert(id.to_owned()) {
                            return Err(format!("bad or repeated tool id {id:?}"));
                        }
                        if block["name"].as_str().is_none_or(str::is_empty) {
                            return Err("tool_use without name".into());
                        }
                        if block["input"] != serde_json::json!({}) {
                            return Err("tool_use must start with input {}".into());
                        }
                    }
                    _ => return Err(format!("bad content_block_start {data}")),
                }
                open = Some((index, kind, String::new()));
                summary.blocks += 1;
            }
            "content_block_delta" => {
                let index = data["index"].as_u64();
                let Some((open_index, kind, json)) = &mut open else {
                    return Err(format!("delta with no open block at {i}"));
                };
                if index != Some(*open_index) {
                    return Err(format!("delta for {index:?} while {open_index} is open"));
                }
                let delta = &data["delta"];
                match (kind.as_str(), delta["type"].as_str()) {
                    ("text", Some("text_delta")) if delta["text"].is_string() => {}
                    ("thinking", Some("thinking_delta")) if delta["thinking"].is_string() => {}
                    ("thinking", Some("signature_delta")) => {}
                    ("tool_use", Some("input_json_delta")) => {
                        json.push_str(delta["partial_json"].as_str().ok_or("no partial_json")?)
                    }
                    _ => return Err(format!("{kind} block got {delta}")),
                }
            }
            "content_block_stop" => {
                let Some((open_index, kind, json)) = open.take() else {
                    return Err(format!("stop with no open block at {i}"));
                };
                if data["index"].as_u64() != Some(open_index) {
                    return Err(format!(
                        "stop for {} while {open_index} is open",
                        data["index"]
                    ));
                }
                if kind == "tool_use" {
                    inputs.push(json);
                }
            }
            "message_delta" => {
                if let Some((index, ..)) = &open {
                    return Err(format!("message_delta while block {index} is open"));
                }
                deltas += 1;
                summary.stop_reason = data["delta"]["stop_reason"].clone();
                let usage = &data["usage"];
                if !usage["output_tokens"].is_u64() || !usage["input_tokens"].is_u64() {
                    return Err(format!("message_delta without usage {data}"));
                }
            }
            "message_stop" => {
                if deltas == 0 {
                    return Err("message_stop without message_delta".into());
                }
                stops += 1;
            }
            other => return Err(format!("unknown event {other}")),
        }
    }
    if stops != 1 {
        return Err(format!("{stops} message_stop events"));
    }
    if summary.errors == 0 {
        for json in inputs {
            let value: Value = if json.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_str(&json).map_err(|e| format!("tool input {json:?}: {e}"))?
            };
            if !value.is_object() {
                return Err(format!("tool input {json} is not an object"));
            }
        }
        if summary.stop_reason.is_null() {
            return Err("a stream without error must have a stop_reason".into());
        }
    } else if summary.stop_reason == "end_turn" {
        return Err("an errored stream ended as end_turn".into());
    }
    Ok(summary)
}

/// The message rebuilt from events, as the SDKs accumulate it: content blocks (tool inputs
/// parsed), stop_reason, usage, and the error messages seen.
pub fn accumulate(events: &[(String, Value)]) -> Value {
    let mut content: Vec<Value> = Vec::new();
    let mut json = String::new();
    let mut stop_reason = Value::Null;
    let mut usage = Value::Null;
    let mut errors = Vec::new();
    for (name, data) in events {
        match name.as_str() {
            "message_start" => usage = data["message"]["usage"].clone(),
            "content_block_start" => {
                content.push(data["content_block"].clone());
                json.clear();
            }
            "content_block_delta" => {
                let Some(block) = content.last_mut() else {
                    continue;
                };
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        let text = format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            delta["text"].as_str().unwrap()
                        );
                        block["text"] = text.into();
                    }
                    Some("thinking_delta") => {
                        let text = format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap(),
                            delta["thinking"].as_str().unwrap()
                        );
                        block["thinking"] = text.into();
                    }
                    Some("input_json_delta") => {
                        json.push_str(delta["partial_json"].as_str().unwrap())
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(block) = content.last_mut() {
                    if block["type"] == "tool_use" && !json.is_empty() {
                        block["input"] =
                            serde_json::from_str(&json).unwrap_or(Value::String(json.clone()));
                    }
                }
            }
            "message_delta" => {
                stop_reason = data["delta"]["stop_reason"].clone();
                for (k, v) in data["usage"].as_object().unwrap() {
                    usage[k] = v.clone();
                }
            }
            "error" => errors.push(data["error"]["message"].clone()),
            _ => {}
        }
    }
    serde_json::json!({"content": content, "stop_reason": stop_reason, "usage": usage, "errors": errors})
}
