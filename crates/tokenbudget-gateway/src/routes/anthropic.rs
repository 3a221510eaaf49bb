//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic pass-through.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use tokenbudget::{Encoding, Estimator};
use tokenbudget_translate::route::UpstreamKind;

use super::{call, parse_json, Call};
use crate::admit::Ask;
use crate::bound::{claude_prompt_bound, prompt_size};
use crate::config::PromptCount;
use crate::error::{ApiError, Error, Result};
use crate::forward::{self, Upstream};
use crate::gateway::Gateway;
use crate::reader::Api;

/// `POST /v1/messages`.
pub(crate) async fn messages(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match messages_inner(&gw, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            crate::metrics::request("messages", e.status_and_type().0.as_u16(), None);
            ApiError(Api::Anthropic, e).into_response()
        }
    }
}

/// The request's `max_tokens`, required.
fn required_max_tokens(body: &Value) -> Result<u64> {
    body.get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::InvalidRequest("max_tokens: a positive integer is required".into()))
}

/// The prompt part admission holds before any upstream count, as `prompt_count` says.
fn prompt_bound(gw: &Gateway, body: &Value) -> u64 {
    match gw.inner.settings.prompt_count {
        PromptCount::Bound | PromptCount::CountTokens => claude_prompt_bound(body),
        PromptCount::Estimate => {
            let estimator = Estimator::new(Encoding::Cl100kBase);
            prompt_size(body, &|text: &str| estimator.estimate(text))
        }
    }
}

async fn messages_inner(gw: &Gateway, headers: &HeaderMap, original: Bytes) -> Result<Response> {
    let mut body = parse_json(&original)?;
    let model = body.get("model").and_then(Value::as_str).map(str::to_owned);
    let routed = model
        .as_deref()
        .and_then(|m| gw.inner.settings.routes.resolve(m));
    if let Some(route) = routed
        .as_ref()
        .filter(|r| r.upstream.kind == UpstreamKind::Openai)
    {
        // The translation (pure: it changes nothing, whatever the key) starts now, beside
        // the key check and the prompt's bound; its errors still come after the key's.
        let body = std::sync::Arc::new(std::mem::take(&mut body));
        let translation =
            super::translated::start_translation(body.clone(), original.len(), route.target());
        let caller = gw.authorize(headers, &body).await?;
        required_max_tokens(&body)?;
        let prompt = prompt_bound(gw, &body);
        return super::translated::messages(
            gw,
            super::translated::Request {
                caller,
                body,
                translation,
                size: original.len(),
                prompt,
                route,
            },
        )
        .await;
    }
    let caller = gw.authorize(headers, &body).await?;
    let max_tokens = required_max_tokens(&body)?;
    let prompt = prompt_bound(gw, &body);
    let mut rewritten = false;
    let (url, upstream) = match &routed {
        Some(route) => {
            if model.as_deref() != Some(route.model.as_str()) {
                body["model"] = route.model.clone().into();
                rewritten = true;
            }
            (
                format!(
                    "{}/v1/messages",
                    forward::anthropic_base(&route.upstream.url)
                ),
                Upstream::RoutedAnthropic(route.upstream_name),
            )
        }
        None => (
            format!("{}/v1/messages", gw.inner.settings.anthropic_url),
            Upstream::Anthropic,
        ),
    };
    let prompt = crate::count::admission_prompt(
        gw,
        headers,
        &body,
        &url,
        upstream,
        caller.forwards_credential,
        prompt,
    )
    .await;
    call(
        gw,
        Call {
            route: "messages",
            api: Api::Anthropic,
            upstream,
            url,
            headers,
            caller,
            model,
            ask: Ask {
                prompt,
                max_tokens,
                min_output: gw.inner.settings.min_output_tokens,
            },
            body: &mut body,
            original,
            max_field: "max_tokens",
            rewritten,
            hide_usage: false,
        },
    )
    .await
}

/// `POST /v1/messages/count_tokens`: authenticated, costs nothing; forwarded as it is,
/// except on a route to an OpenAI-compatible upstream, where it is answered locally.
pub(crate) async fn count_tokens(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: Result<Response> = async {
        let mut value = parse_json(&body)?;
        let caller = gw.authorize(&headers, &value).await?;
        let model = value
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let routed = model
            .as_deref()
            .and_then(|m| gw.inner.settings.routes.resolve(m));
        let (url, upstream, body) = match &routed {
            Some(route) if route.upstream.kind == UpstreamKind::Openai => {
                return super::translated::count_tokens(&gw, std::mem::take(&mut value), route);
            }
            Some(route) => {
                let mut body = body.clone();
                if model.as_deref() != Some(route.model.as_str()) {
                    value["model"] = route.model.clone().into();
                    body = Bytes::from(
                        serde_json::to_vec(&value).map_err(|e| Error::Internal(e.to_string()))?,
                    );
                }
                (
                    format!(
                        "{}/v1/messages/count_tokens",
                        forward::anthropic_base(&route.upstream.url)
                    ),
                    Upstream::RoutedAnthropic(route.upstream_name),
                    body,
                )
            }
            None => (
                format!(
                    "{}/v1/messages/count_tokens",
                    gw.inner.settings.anthropic_url
                ),
                Upstream::Anthropic,
                body,
            ),
        };
        let up = forward::upstream_headers(&gw, &headers, upstream, caller.forwards_credential);
        let response = forward::send(&gw, reqwest::Method::POST, url, up, Some(body)).await?;
        passthrough(&gw, response).await
    }
    .await;
    result.unwrap_or_else(|e| ApiError(Api::Anthropic, e).into_response())
}

/// A whole upstream response as the client's.
pub(crate) async fn passthrough(gw: &Gateway, response: reqwest::Response) -> Result<Response> {
    let status = response.status();
    let headers = forward::client_headers(response.headers());
    let bytes = forward::read_body(response, gw.inner.settings.timeouts.total).await?;
    let mut out = Response::new(axum::body::Body::from(bytes));
    *out.status_mut() = axum::http::StatusCode::from_u16(status.as_u16())
        .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    *out.headers_mut() = headers;
    Ok(out)
}
