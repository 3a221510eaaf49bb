//! `POST /v1/chat/completions`: OpenAI-compatible pass-through.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use super::{call, parse_json, Call};
use crate::admit::Ask;
use crate::bound::prompt_size;
use crate::error::{ApiError, Error, Result};
use crate::forward::Upstream;
use crate::gateway::Gateway;
use crate::reader::Api;

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(State(gw): State<Gateway>, headers: HeaderMap, body: Bytes) -> Response {
    match chat_inner(&gw, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            crate::metrics::request("chat_completions", e.status_and_type().0.as_u16(), None);
            ApiError(Api::OpenAi, e).into_response()
        }
    }
}

/// The prompt's tokens, exactly where the model's encoding is known (text parts counted
/// with it, the rest at fixed costs).
fn openai_prompt(body: &Value, model: &str) -> u64 {
    #[cfg(feature = "tiktoken")]
    {
        let counter = tokenbudget::counter::OpenAiCounter::for_model(model);
        prompt_size(body, &|text: &str| counter.count_tokens(text))
    }
    #[cfg(not(feature = "tiktoken"))]
    {
        // Without exact counting, bytes bound the count (a BPE token is at least a byte).
        let _ = model;
        prompt_size(body, &|text: &str| text.len() as u64)
    }
}

async fn chat_inner(gw: &Gateway, headers: &HeaderMap, original: Bytes) -> Result<Response> {
    let settings = &gw.inner.settings;
    let base = settings
        .openai_url
        .clone()
        .ok_or(Error::NoUpstream("OpenAI-compatible (--openai-url)"))?;
    let mut body = parse_json(&original)?;
    let caller = gw.authorize(headers, &body).await?;
    let model = body.get("model").and_then(Value::as_str).map(str::to_owned);
    let prompt = openai_prompt(&body, model.as_deref().unwrap_or(""));
    let mut rewritten = false;
    let (max_field, max_tokens) = match (
        body.get("max_completion_tokens").and_then(Value::as_u64),
        body.get("max_tokens").and_then(Value::as_u64),
    ) {
        (Some(n), _) => ("max_completion_tokens", n),
        (None, Some(n)) => ("max_tokens", n),
        (None, None) => {
            // No limit given: the upstream could write until its context ends, which no
            // reservation can cover. Set one.
            body["max_tokens"] = settings.openai_default_max_tokens.into();
            rewritten = true;
            ("max_tokens", settings.openai_default_max_tokens)
        }
    };
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let asked_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let hide_usage = streaming && !asked_usage;
    if hide_usage {
        match body
            .get_mut("stream_options")
            .and_then(Value::as_object_mut)
        {
            Some(options) => {
                options.insert("include_usage".into(), Value::Bool(true));
            }
            None => body["stream_options"] = json!({"include_usage": true}),
        }
        rewritten = true;
    }
    call(
        gw,
        Call {
            route: "chat_completions",
            api: Api::OpenAi,
            upstream: Upstream::OpenAi,
            url: format!("{base}/chat/completions"),
            headers,
            caller,
            model,
            ask: Ask {
                prompt,
                max_tokens,
                min_output: settings.min_output_tokens,
            },
            body: &mut body,
            original,
            max_field,
            rewritten,
            hide_usage,
        },
    )
    .await
}
