//! Building the upstream request and the client's response headers.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::gateway::Gateway;

/// Which upstream credential to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upstream<'a> {
    /// `anthropic_url`, with `ANTHROPIC_API_KEY`.
    Anthropic,
    /// `openai_url`, with `OPENAI_API_KEY`.
    OpenAi,
    /// A routed Anthropic-kind upstream, with its own `api_key_env` key (if any): the
    /// gateway's Anthropic key is never sent to an upstream it was not configured for.
    RoutedAnthropic(&'a str),
}

/// Headers that belong to one hop, never forwarded either way.
const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The client's headers as sent upstream: hop-by-hop and `x-tokenbudget-*` removed, the
/// client's credential replaced by the gateway's unless the client forwards its own, and
/// `accept-encoding: identity` so the usage can be read.
pub(crate) fn upstream_headers(
    gateway: &Gateway,
    client: &HeaderMap,
    upstream: Upstream<'_>,
    forwards_credential: bool,
) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in client {
        let n = name.as_str();
        if HOP.contains(&n) || n.starts_with("x-tokenbudget-") || n == "accept-encoding" {
            continue;
        }
        if !forwards_credential && (n == "x-api-key" || n == "authorization") {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert("accept-encoding", HeaderValue::from_static("identity"));
    if !forwards_credential {
        let settings = &gateway.inner.settings;
        let credential = match upstream {
            Upstream::Anthropic => settings
                .anthropic_api_key
                .as_deref()
                .map(|k| ("x-api-key", k.to_owned())),
            Upstream::OpenAi => settings
                .openai_api_key
                .as_deref()
                .map(|k| ("authorization", format!("Bearer {k}"))),
            Upstream::RoutedAnthropic(name) => settings
                .upstream_keys
                .get(name)
                .map(|k| ("x-api-key", k.clone())),
        };
        if let Some((name, value)) = credential {
            if let Ok(mut value) = HeaderValue::from_str(&value) {
                value.set_sensitive(true);
                out.insert(HeaderName::from_static(name), value);
            }
        }
    }
    out
}

/// The upstream's response headers for the client: all but hop-by-hop ones.
pub(crate) fn client_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in upstream {
        if !HOP.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Sends a request, waiting at most the first-byte timeout for the response headers.
pub(crate) async fn send(
    gateway: &Gateway,
    method: reqwest::Method,
    url: String,
    headers: HeaderMap,
    body: Option<Bytes>,
) -> Result<reqwest::Response> {
    let mut request = gateway.inner.http.request(method, url).headers(headers);
    if let Some(body) = body {
        request = request.body(body);
    }
    let first_byte = gateway.inner.settings.timeouts.first_byte;
    match tokio::time::timeout(first_byte, request.send()).await {
        Err(_) => Err(Error::UpstreamTimeout("first byte")),
        Ok(Err(e)) if e.is_timeout() => Err(Error::UpstreamTimeout("connect")),
        // reqwest's error text names the URL and never a header: no credential in it.
        Ok(Err(e)) => Err(Error::Upstream(e.without_url().to_string())),
        Ok(Ok(response)) => Ok(response),
    }
}

/// Reads a whole body within `limit`.
pub(crate) async fn read_body(
    response: reqwest::Response,
    limit: std::time::Duration,
) -> Result<Bytes> {
    match tokio::time::timeout(limit, response.bytes()).await {
        Err(_) => Err(Error::UpstreamTimeout("total")),
        Ok(Err(e)) => Err(Error::Upstream(e.without_url().to_string())),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// The upstream's request id header.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    ["request-id", "x-request-id"]
        .iter()
        .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}

/// The headers of a translated request to an OpenAI-compatible upstream: JSON, no
/// compression (the stream is parsed), and the upstream's own key as a bearer token. None of
/// the client's headers go: they are Anthropic's (`anthropic-version`, `anthropic-beta`,
/// the client's key) and mean nothing there.
pub(crate) fn openai_headers(key: Option<&str>) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert("content-type", HeaderValue::from_static("application/json"));
    out.insert("accept-encoding", HeaderValue::from_static("identity"));
    if let Some(key) = key {
        if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {key}")) {
            value.set_sensitive(true);
            out.insert("authorization", value);
        }
    }
    out
}

/// A routed upstream's base URL for Anthropic paths: without a trailing `/` or `/v1`, so
/// both `https://host` and `https://host/v1` work.
pub(crate) fn anthropic_base(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    url.strip_suffix("/v1").unwrap_or(url)
}
