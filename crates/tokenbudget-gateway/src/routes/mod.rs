//! The routes. Each reads the request, admits it, and hands it to [`call`], which forwards
//! it and relays the answer with one finalizer.

pub(crate) mod anthropic;
pub(crate) mod misc;
pub(crate) mod openai;
pub(crate) mod translated;

use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use crate::admit::{Admitted, Ask};
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::finalize::{Ending, Finalizer};
use crate::forward::{self, Upstream};
use crate::gateway::Gateway;
use crate::reader::Api;

/// One admitted call to make.
pub(crate) struct Call<'a> {
    pub route: &'static str,
    pub api: Api,
    pub upstream: Upstream<'a>,
    pub url: String,
    pub headers: &'a HeaderMap,
    pub caller: Caller,
    pub model: Option<String>,
    pub ask: Ask,
    /// Rewrites the request body for the `max_tokens` to forward; `None` keeps the client's
    /// bytes.
    pub body: &'a mut serde_json::Value,
    pub original: Bytes,
    /// The field that carries `max_tokens` (`max_tokens` / `max_completion_tokens`).
    pub max_field: &'static str,
    /// True when the body must be re-serialized even without a clamp.
    pub rewritten: bool,
    pub hide_usage: bool,
}

/// Admits, forwards and relays; every outcome after admission goes through one finalizer.
pub(crate) async fn call(gateway: &Gateway, c: Call<'_>) -> Result<Response> {
    let settings = &gateway.inner.settings;
    // Priced (on a usd budget) by the model sent upstream.
    let priced_model = c.body.get("model").and_then(serde_json::Value::as_str);
    let admitted =
        crate::admit::admit_request(gateway, &c.caller, c.ask, priced_model, c.route).await?;
    let Admitted {
        max_tokens,
        clamped,
        ..
    } = admitted;
    let mut fin = Finalizer::new(
        gateway,
        &admitted,
        c.caller.budget.clone(),
        c.ask.prompt,
        c.route,
        c.caller.key.id.clone(),
        c.caller.session.clone(),
        c.model.clone(),
    );
    let body = if clamped || c.rewritten {
        if clamped {
            crate::metrics::clamp(c.route);
            c.body[c.max_field] = max_tokens.into();
        }
        match serde_json::to_vec(&*c.body) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                fin.finish(Ending::NotAccepted);
                return Err(Error::Internal(e.to_string()));
            }
        }
    } else {
        c.original.clone()
    };
    let headers =
        forward::upstream_headers(gateway, c.headers, c.upstream, c.caller.forwards_credential);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + settings.timeouts.total;
    let upstream =
        match forward::send(gateway, reqwest::Method::POST, c.url, headers, Some(body)).await {
            Ok(r) => r,
            Err(e) => {
                fin.finish(Ending::NotAccepted);
                return Err(e);
            }
        };
    crate::metrics::ttfb(c.route, started.elapsed().as_secs_f64());
    let status = upstream.status();
    let mut out_headers = forward::client_headers(upstream.headers());
    fin.set_request_id(forward::request_id(upstream.headers()));
    out_headers.insert(
        "x-tokenbudget-budget",
        HeaderValue::from_str(c.caller.budget.as_str()).unwrap_or(HeaderValue::from_static("?")),
    );
    if clamped {
        out_headers.insert("x-tokenbudget-max-tokens", HeaderValue::from(max_tokens));
    }
    let streaming = upstream
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let response_body = if !status.is_success() {
        // The upstream refused before any output: nothing was spent. Its answer passes
        // through as it is (429/529 with retry-after and all).
        let bytes = forward::read_body(upstream, settings.timeouts.idle).await;
        fin.finish(Ending::NotAccepted);
        Body::from(bytes.unwrap_or_default())
    } else if streaming {
        crate::relay::relay(gateway, upstream, fin, c.api, c.hide_usage, deadline)
    } else {
        let limit = deadline.saturating_duration_since(tokio::time::Instant::now());
        match forward::read_body(upstream, limit).await {
            Ok(bytes) => {
                match c.api {
                    Api::Anthropic => fin.reader.anthropic_body(&bytes),
                    Api::OpenAi => fin.reader.openai_body(&bytes),
                }
                fin.finish(Ending::Completed);
                Body::from(bytes)
            }
            Err(e) => {
                fin.finish(Ending::Cut("body read failed"));
                return Err(e);
            }
        }
    };
    crate::metrics::request(c.route, status.as_u16(), c.model.as_deref());
    let mut response = Response::new(response_body);
    *response.status_mut() =
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    *response.headers_mut() = out_headers;
    Ok(response)
}

/// Parses a JSON request body.
pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidRequest(format!("body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::InvalidRequest("body must be a JSON object".into()));
    }
    Ok(value)
}
