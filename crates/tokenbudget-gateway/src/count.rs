//! Anthropic's `count_tokens` as the admission count (`prompt_count = "count_tokens"`): the
//! upstream counts the prompt with the gateway's credential, within a short timeout; on a
//! timeout, an error status or an answer without `input_tokens`, admission falls back to the
//! byte bound (the safe upper bound, never a guess below it) and the fallback is counted in
//! `/metrics` (`tokenbudget_gateway_count_tokens_fallbacks_total`).

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::config::PromptCount;
use crate::forward::{self, Upstream};
use crate::gateway::Gateway;

/// The fields of a Messages request that `count_tokens` takes.
const COUNTED_FIELDS: &[&str] = &[
    "model",
    "system",
    "messages",
    "tools",
    "tool_choice",
    "thinking",
    "mcp_servers",
];

/// The `count_tokens` body for a Messages `request`: its model, system, messages, tools
/// (and the other fields that change the count), nothing else (`max_tokens`, `stream`,
/// `metadata` are refused there).
pub fn count_body(request: &Value) -> Value {
    let mut out = Map::new();
    for field in COUNTED_FIELDS {
        if let Some(v) = request.get(*field) {
            out.insert((*field).to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// Why a count was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No answer within the timeout.
    Timeout,
    /// The upstream could not be reached.
    Unreachable,
    /// An error status.
    Status,
    /// An answer without a usable `input_tokens`.
    Invalid,
}

impl Fallback {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Status => "status",
            Self::Invalid => "invalid",
        }
    }
}

/// `input_tokens` from a `count_tokens` answer.
pub fn read_count(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("input_tokens")?
        .as_u64()
}

/// `count` plus `margin` percent (rounded up), but no more than `bound` (which already
/// holds every token the prompt can be billed) and never less than `count` itself.
pub fn with_margin(count: u64, margin: u64, bound: u64) -> u64 {
    let extra = count.saturating_mul(margin).div_ceil(100);
    count.saturating_add(extra).min(bound).max(count)
}

/// The prompt part of the admission for a request going to `messages_url` (an Anthropic
/// `…/v1/messages`): the upstream's count when `prompt_count = "count_tokens"`, else (and on
/// any failure) `bound`, the size admission would use without it.
pub(crate) async fn admission_prompt(
    gw: &Gateway,
    client_headers: &HeaderMap,
    request: &Value,
    messages_url: &str,
    upstream: Upstream<'_>,
    forwards_credential: bool,
    bound: u64,
) -> u64 {
    if gw.inner.settings.prompt_count != PromptCount::CountTokens {
        return bound;
    }
    match count(
        gw,
        client_headers,
        request,
        messages_url,
        upstream,
        forwards_credential,
    )
    .await
    {
        Ok(n) => with_margin(n, gw.inner.settings.count_tokens_margin, bound),
        Err(reason) => {
            tracing::warn!(
                reason = reason.label(),
                bound,
                "count_tokens failed: admitting on the byte bound"
            );
            crate::metrics::count_fallback(reason.label());
            bound
        }
    }
}

async fn count(
    gw: &Gateway,
    client_headers: &HeaderMap,
    request: &Value,
    messages_url: &str,
    upstream: Upstream<'_>,
    forwards_credential: bool,
) -> Result<u64, Fallback> {
    let settings = &gw.inner.settings;
    let url = format!("{messages_url}/count_tokens");
    let mut headers = forward::upstream_headers(gw, client_headers, upstream, forwards_credential);
    headers.insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&count_body(request)).map_err(|_| Fallback::Invalid)?;
    let call = async {
        let response = gw
            .inner
            .http
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|_| Fallback::Unreachable)?;
        if !response.status().is_success() {
            return Err(Fallback::Status);
        }
        let bytes = response.bytes().await.map_err(|_| Fallback::Unreachable)?;
        read_count(&bytes).ok_or(Fallback::Invalid)
    };
    tokio::time::timeout(settings.timeouts.count_tokens, call)
        .await
        .map_err(|_| Fallback::Timeout)?
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_margin_rounds_up_stays_under_the_bound_and_never_below_the_count() {
        use super::with_margin;
        assert_eq!(with_margin(1_000, 5, 10_000), 1_050);
        assert_eq!(with_margin(1, 5, 10_000), 2, "rounded up");
        assert_eq!(with_margin(1_000, 0, 10_000), 1_000);
        assert_eq!(with_margin(1_000, 5, 1_020), 1_020, "the bound caps it");
        assert_eq!(with_margin(1_000, 5, 900), 1_000, "never below the count");
        assert_eq!(with_margin(u64::MAX, 100, u64::MAX), u64::MAX);
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn the_count_body_keeps_what_counts_and_drops_the_rest() {
        let request = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": true,
            "system": [{"type": "text", "text": "s"}],
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "metadata": {"user_id": "u"}, "temperature": 1,
        });
        assert_eq!(
            count_body(&request),
            json!({
                "model": "claude-sonnet-4-5",
                "system": [{"type": "text", "text": "s"}],
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            })
        );
    }

    #[test]
    fn counts_are_read_or_refused() {
        assert_eq!(read_count(br#"{"input_tokens": 12}"#), Some(12));
        for bad in [
            &b"{}"[..],
            b"{\"input_tokens\": -1}",
            b"nope",
            b"{\"input_tokens\": \"3\"}",
        ] {
            assert_eq!(read_count(bad), None);
        }
    }
}
