//! `POST /v1/messages` and `count_tokens` on a route to an OpenAI-compatible upstream: the
//! request is translated to Chat Completions (pure, in `tokenbudget-translate`), admitted
//! and settled like pass-through, and the answer translated back.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use tokenbudget_translate::openai::{ChatRequest, ChatResponse};
use tokenbudget_translate::route::Resolved;
use tokenbudget_translate::RouteTarget;
use tokenbudget_translate::{
    request_from_value, response_usage, translate_request_owned, translate_response,
    MaxTokensField, StreamStart, TranslateError,
};

use crate::admit::{Admitted, Ask};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::finalize::{Ending, Finalizer};
use crate::forward;
use crate::gateway::Gateway;

/// The metrics label of translated requests.
pub(crate) const ROUTE: &str = "messages_translated";

/// A `POST /v1/messages` request routed to an OpenAI-compatible upstream.
pub(crate) struct Request<'a> {
    pub caller: Caller,
    /// The body, parsed once by the caller to read its model and size it.
    pub body: Arc<Value>,
    /// Its translation, under way since the body was parsed.
    pub translation: Translation,
    /// The body's length in bytes.
    pub size: usize,
    /// The prompt's bound as pass-through sizes it (`prompt_count`): what admission holds.
    pub prompt: u64,
    pub route: &'a Resolved<'a>,
}

/// Translates, admits, forwards and answers; every outcome after admission goes through one
/// finalizer.
pub(crate) async fn messages(gw: &Gateway, r: Request<'_>) -> Result<Response> {
    let settings = &gw.inner.settings;
    // Everything that can refuse the request is decided before admission: bad input
    // reserves nothing and changes nothing.
    let Translated {
        model,
        stream,
        max_tokens,
        chat,
    } = r.translation.get().await??;
    let chat = Arc::new(chat);
    // A long session's parsed body is thousands of allocations: freed off the request's
    // path, on a blocking thread.
    drop_aside(r.body, r.size);
    let ask = Ask {
        prompt: r.prompt,
        max_tokens,
        min_output: settings.min_output_tokens,
    };
    // The upstream body is written while admission waits on the store, so a long session's
    // serialization (about as long as the store's write) adds nothing.
    let body = {
        let (chat, size) = (chat.clone(), r.size);
        Aside::start(size, move || serialize(&chat, size))
    };
    let admitted =
        crate::admit::admit_request(gw, &r.caller, ask, Some(&r.route.model), ROUTE).await?;
    let Admitted {
        max_tokens,
        clamped,
        ..
    } = admitted;
    let mut fin = Finalizer::new(
        gw,
        &admitted,
        r.caller.budget.clone(),
        r.prompt,
        ROUTE,
        r.caller.key.id.clone(),
        r.caller.session.clone(),
        Some(model.clone()),
    );
    let message_id = new_message_id();
    fin.reader.message_id = Some(message_id.clone());
    fin.reader.model = Some(r.route.model.clone());
    let body = if clamped {
        // Rare: the body written during admission asked for more than was granted.
        crate::metrics::clamp(ROUTE);
        let mut lowered = ChatRequest::clone(&chat);
        let limit = Some(u32::try_from(max_tokens).unwrap_or(u32::MAX));
        match r.route.upstream.max_tokens_field {
            MaxTokensField::MaxCompletionTokens => lowered.max_completion_tokens = limit,
            _ => lowered.max_tokens = limit,
        }
        serialize(&lowered, r.size)
    } else {
        // A failed task ends like a failed serialization: through the finalizer.
        body.get().await.unwrap_or_else(|e| Err(e.to_string()))
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            fin.finish(Ending::NotAccepted);
            return Err(Error::Internal(e));
        }
    };
    // The local count is what `message_start` reports and what is settled when the
    // upstream reports no usage; admission holds the (larger) bound. It takes milliseconds
    // on a long session, so it runs on a blocking thread while the request is on its way:
    // the upstream's answer never waits for it. Should the count fail, the bound stands in.
    let counter = gw.inner.counter.clone();
    let counted = Counted {
        task: tokio::task::spawn_blocking(move || counter.count_chat(&chat).input_tokens),
        bound: r.prompt,
    };
    let url = format!(
        "{}/chat/completions",
        r.route.upstream.url.trim_end_matches('/')
    );
    let key = settings
        .upstream_keys
        .get(r.route.upstream_name)
        .map(String::as_str);
    let headers = forward::openai_headers(key);
    let mut out_headers = HeaderMap::new();
    out_headers.insert(
        "x-tokenbudget-budget",
        HeaderValue::from_str(r.caller.budget.as_str()).unwrap_or(HeaderValue::from_static("?")),
    );
    if clamped {
        out_headers.insert("x-tokenbudget-max-tokens", HeaderValue::from(max_tokens));
    }
    let mut start = StreamStart {
        message_id,
        model: model.clone(),
        input_tokens: r.prompt,
        estimator: Default::default(),
    };
    if stream {
        let upstream = gw.inner.http.post(url).headers(headers).body(body);
        let body = crate::translated_stream::relay(gw, upstream, fin, start, counted);
        out_headers.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        out_headers.insert("cache-control", HeaderValue::from_static("no-cache"));
        crate::metrics::request(ROUTE, 200, Some(&model));
        let mut response = Response::new(body);
        *response.headers_mut() = out_headers;
        return Ok(response);
    }
    let deadline = tokio::time::Instant::now() + settings.timeouts.total;
    let upstream = match forward::send(gw, reqwest::Method::POST, url, headers, Some(body)).await {
        Ok(upstream) => upstream,
        Err(e) => {
            fin.finish(Ending::NotAccepted);
            return Err(e);
        }
    };
    let status = upstream.status();
    let limit = deadline.saturating_duration_since(tokio::time::Instant::now());
    let bytes = forward::read_body(upstream, limit).await;
    let counted = counted.get().await;
    start.input_tokens = counted;
    let bytes = match bytes {
        Ok(bytes) => bytes,
        Err(e) => {
            fin.reader.translated(&estimated_usage(&start, ""), false);
            fin.finish(Ending::Cut("body read failed"));
            return Err(e);
        }
    };
    if !status.is_success() {
        fin.finish(Ending::NotAccepted);
        let (kind, message) = upstream_error(r.route.upstream_name, status.as_u16(), &bytes);
        crate::metrics::request(ROUTE, status.as_u16(), Some(&model));
        let body =
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}});
        let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        return Ok((code, out_headers, axum::Json(body)).into_response());
    }
    let translated = serde_json::from_slice::<ChatResponse>(&bytes)
        .map_err(|e| {
            TranslateError::Upstream(format!("the response is not Chat Completions JSON: {e}"))
        })
        .and_then(|parsed| {
            let message = translate_response(&parsed, &start.message_id, &model)?;
            let usage = response_usage(&parsed, &message, counted, &start.estimator);
            Ok((message, usage))
        });
    match translated {
        Ok((message, usage)) => {
            fin.reader.translated(&usage, true);
            fin.finish(Ending::Completed);
            crate::metrics::request(ROUTE, 200, Some(&model));
            Ok((out_headers, axum::Json(message)).into_response())
        }
        Err(e) => {
            // The upstream answered (and spent): settle the prompt and the answer's size.
            let text = String::from_utf8_lossy(&bytes);
            fin.reader
                .translated(&estimated_usage(&start, &text), false);
            fin.finish(Ending::Cut("untranslatable answer"));
            Err(e.into())
        }
    }
}

/// What the translation of a request gives admission and the relay.
pub(crate) struct Translated {
    /// The model the client asked for.
    model: String,
    /// Whether the client asked for a stream.
    stream: bool,
    /// The client's `max_tokens`.
    max_tokens: u64,
    /// The Chat Completions request.
    chat: ChatRequest,
}

/// A request's translation, under way.
pub(crate) type Translation = Aside<std::result::Result<Translated, TranslateError>>;

/// Starts translating `body` (`size` bytes long) for `target`.
pub(crate) fn start_translation(body: Arc<Value>, size: usize, target: RouteTarget) -> Translation {
    Aside::start(size, move || translate_body(&body, &target))
}

fn translate_body(
    body: &Value,
    target: &RouteTarget,
) -> std::result::Result<Translated, TranslateError> {
    let request = request_from_value(body)?;
    let (model, stream) = (request.model.clone(), request.is_stream());
    let max_tokens = u64::from(request.max_tokens.ok_or(TranslateError::MissingMaxTokens)?);
    // The request's texts move into the translation.
    let chat = translate_request_owned(request, target)?;
    Ok(Translated {
        model,
        stream,
        max_tokens,
        chat,
    })
}

/// Work on a body of this size or more (parsing, translating, serializing, freeing) runs on
/// a blocking thread, beside the request's other steps; below it, handing the work over
/// costs more than doing it.
const ASIDE_FROM: usize = 64 * 1024;

/// Work on a request's body: on a blocking thread when the body is long, else done at once.
pub(crate) enum Aside<T> {
    Running(tokio::task::JoinHandle<T>),
    Done(Box<T>),
}

impl<T: Send + 'static> Aside<T> {
    /// Starts `work` on a body of `size` bytes.
    fn start(size: usize, work: impl FnOnce() -> T + Send + 'static) -> Aside<T> {
        if size < ASIDE_FROM {
            return Aside::Done(Box::new(work()));
        }
        Aside::Running(tokio::task::spawn_blocking(work))
    }

    /// The work's result, once it is done.
    async fn get(self) -> Result<T> {
        match self {
            Aside::Done(done) => Ok(*done),
            Aside::Running(task) => task.await.map_err(|e| Error::Internal(e.to_string())),
        }
    }
}

/// Drops `value`, on a blocking thread when the body was `size` ≥ [`ASIDE_FROM`] bytes.
fn drop_aside<T: Send + 'static>(value: T, size: usize) {
    if size >= ASIDE_FROM {
        drop(tokio::task::spawn_blocking(move || drop(value)));
    }
}

/// `chat` as JSON. The translation is about as long as the original (`size` bytes): one
/// allocation, no regrowth.
fn serialize(chat: &ChatRequest, size: usize) -> std::result::Result<Bytes, String> {
    let mut body = Vec::with_capacity(size + size / 8 + 256);
    serde_json::to_writer(&mut body, chat).map_err(|e| e.to_string())?;
    Ok(Bytes::from(body))
}

/// The prompt's local count, computed while the request is on its way.
pub(crate) struct Counted {
    task: tokio::task::JoinHandle<u64>,
    /// The admission bound: stands in if the count fails.
    bound: u64,
}

impl Counted {
    /// The count, once it is done.
    pub(crate) async fn get(self) -> u64 {
        self.task.await.unwrap_or(self.bound)
    }
}

/// `count_tokens` on a translated route: counted here, never sent anywhere.
pub(crate) fn count_tokens(gw: &Gateway, body: Value, route: &Resolved<'_>) -> Result<Response> {
    let request = request_from_value(&body)?;
    let answer = gw.inner.counter.count_tokens(&request, &route.model)?;
    Ok(([("content-type", "application/json")], answer.to_json()).into_response())
}

/// The prompt as counted and `output` estimated, flagged estimated.
fn estimated_usage(start: &StreamStart, output: &str) -> tokenbudget_translate::Usage {
    tokenbudget_translate::Usage {
        input_tokens: start.input_tokens,
        output_tokens: start.estimator.estimate(output),
        cache_read_input_tokens: 0,
        estimated: true,
    }
}

/// `msg_` and 24 random hex digits.
fn new_message_id() -> String {
    let mut bytes = [0u8; 12];
    // Without randomness the id is still unique enough per process: fall back to time.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    format!("msg_{}", hex::encode(bytes))
}

/// An upstream's error answer in Anthropic's terms: the error type its status means to an
/// Anthropic client (so Claude Code retries a 429 or 503 and shows a 400), and a message
/// naming the upstream with the upstream's own message (OpenAI's `error.message`, or the
/// body's text).
pub(crate) fn upstream_error(upstream: &str, status: u16, body: &[u8]) -> (&'static str, String) {
    let kind = match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    };
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            let message = v.pointer("/error/message").or_else(|| v.get("error"))?;
            Some(match message {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            text.chars().take(500).collect::<String>().trim().to_owned()
        });
    (
        kind,
        format!("upstream {upstream} answered {status}: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_keep_their_meaning_and_message() {
        let cases: [(u16, &[u8], &str, &str); 5] = [
            (
                500,
                br#"{"error":{"message":"model crashed","type":"server_error"}}"#,
                "api_error",
                "upstream local answered 500: model crashed",
            ),
            (
                429,
                br#"{"error":"slow down"}"#,
                "rate_limit_error",
                "upstream local answered 429: slow down",
            ),
            (
                503,
                b"Loading model",
                "overloaded_error",
                "upstream local answered 503: Loading model",
            ),
            (
                404,
                br#"{"error":{"message":"model qwen not found"}}"#,
                "not_found_error",
                "upstream local answered 404: model qwen not found",
            ),
            (
                400,
                b"",
                "invalid_request_error",
                "upstream local answered 400: ",
            ),
        ];
        for (status, body, kind, message) in cases {
            assert_eq!(
                upstream_error("local", status, body),
                (kind, message.to_owned()),
                "{status}"
            );
        }
    }

    #[test]
    fn message_ids_look_like_anthropics_and_differ() {
        let (a, b) = (new_message_id(), new_message_id());
        assert!(a.starts_with("msg_") && a.len() == 28, "{a}");
        assert_ne!(a, b);
    }
}
