//! Prometheus metrics with fixed labels: route, status class, model family, token kind.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::usage::Usage;

/// The process's Prometheus handle (the recorder is global, installed once).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder installed first (an embedding application's) keeps working;
            // this handle then renders only what reaches it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A model name reduced to a family, so the label set never grows with traffic.
pub fn model_family(model: Option<&str>) -> &'static str {
    let Some(model) = model else { return "none" };
    const FAMILIES: &[&str] = &[
        "claude-opus",
        "claude-sonnet",
        "claude-haiku",
        "claude",
        "gpt-5",
        "gpt-4o",
        "gpt-4.1",
        "gpt-4",
        "gpt-3.5",
        "o1",
        "o3",
        "o4",
    ];
    FAMILIES
        .iter()
        .find(|f| {
            model.starts_with(**f)
                || (f.starts_with("claude-")
                    && model.contains(&f[7..])
                    && model.starts_with("claude"))
        })
        .copied()
        .unwrap_or("other")
}

/// A finished request.
pub fn request(route: &'static str, status: u16, model: Option<&str>) {
    let class = match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    metrics::counter!("tokenbudget_gateway_requests_total", "route" => route, "status" => class, "model" => model_family(model)).increment(1);
}

/// Tokens settled, by kind.
pub fn tokens(usage: &Usage) {
    for (kind, n) in [
        ("input", usage.input),
        ("cache_write", usage.cache_write),
        ("cache_read", usage.cache_read),
        ("output", usage.output),
    ] {
        metrics::counter!("tokenbudget_gateway_tokens_total", "kind" => kind).increment(n);
    }
}

/// A refusal for lack of budget.
pub fn refusal(route: &'static str) {
    metrics::counter!("tokenbudget_gateway_refusals_total", "route" => route).increment(1);
}

/// A lowered `max_tokens`.
pub fn clamp(route: &'static str) {
    metrics::counter!("tokenbudget_gateway_clamps_total", "route" => route).increment(1);
}

/// A settlement, by how it ended.
pub fn settlement(kind: &'static str) {
    metrics::counter!("tokenbudget_gateway_settlements_total", "settled" => kind).increment(1);
}

/// An admission that fell back from `count_tokens` to the byte bound, by why.
pub fn count_fallback(reason: &'static str) {
    metrics::counter!("tokenbudget_gateway_count_tokens_fallbacks_total", "reason" => reason)
        .increment(1);
}

/// Upstream time to response headers.
pub fn ttfb(route: &'static str, seconds: f64) {
    metrics::histogram!("tokenbudget_gateway_upstream_ttfb_seconds", "route" => route)
        .record(seconds);
}

/// Upstream time to the end of the response.
pub fn latency(route: &'static str, seconds: f64) {
    metrics::histogram!("tokenbudget_gateway_upstream_seconds", "route" => route).record(seconds);
}

/// Settlements in the journal not yet replayed into the store.
pub fn journal_depth(n: u64) {
    metrics::gauge!("tokenbudget_gateway_journal_depth").set(n as f64);
}

/// A request forwarded without the store (`on_store_error = "open"`).
pub fn forwarded_open(route: &'static str) {
    metrics::counter!("tokenbudget_gateway_forwarded_without_store_total", "route" => route)
        .increment(1);
}

/// A settlement that neither the store nor the journal took.
pub fn settlement_lost() {
    metrics::counter!("tokenbudget_gateway_settlements_lost_total").increment(1);
}

/// Open streams now.
pub fn open_streams(n: i64) {
    metrics::gauge!("tokenbudget_gateway_open_streams").set(n as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_families_are_a_fixed_set() {
        assert_eq!(
            model_family(Some("claude-sonnet-4-5-20250929")),
            "claude-sonnet"
        );
        assert_eq!(
            model_family(Some("claude-3-5-haiku-20241022")),
            "claude-haiku"
        );
        assert_eq!(model_family(Some("claude-opus-4-1")), "claude-opus");
        assert_eq!(model_family(Some("gpt-4o-mini")), "gpt-4o");
        assert_eq!(model_family(Some("my-own-model-123")), "other");
        assert_eq!(model_family(None), "none");
    }
}
