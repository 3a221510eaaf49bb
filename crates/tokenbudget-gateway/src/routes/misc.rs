//! `GET /v1/models`, `/healthz`, `/readyz`, `/metrics`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::anthropic::passthrough;
use crate::error::{ApiError, Result};
use crate::forward::{self, Upstream};
use crate::gateway::Gateway;
use crate::reader::Api;

/// `GET /v1/models`: the Anthropic upstream's list, for an authenticated caller.
pub(crate) async fn models(State(gw): State<Gateway>, headers: HeaderMap) -> Response {
    let result: Result<Response> = async {
        let caller = gw.authorize(&headers, &Value::Null).await?;
        let url = format!("{}/v1/models", gw.inner.settings.anthropic_url);
        let up = forward::upstream_headers(
            &gw,
            &headers,
            Upstream::Anthropic,
            caller.forwards_credential,
        );
        let response = forward::send(&gw, reqwest::Method::GET, url, up, None).await?;
        passthrough(&gw, response).await
    }
    .await;
    result.unwrap_or_else(|e| ApiError(Api::Anthropic, e).into_response())
}

/// Alive.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when both the budget store and the key store answer.
pub(crate) async fn readyz(State(gw): State<Gateway>) -> Response {
    let probe = tokenbudget::BudgetId::new("tokenbudget-gateway-readyz").ok();
    let budgets_ok = match probe {
        Some(id) => gw.inner.budgets.store().budget(&id).await.is_ok(),
        None => false,
    };
    let keys_ok = gw.inner.keys.ping().await.is_ok();
    if budgets_ok && keys_ok {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let what = if budgets_ok {
            "key store"
        } else {
            "budget store"
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} unreachable\n"),
        )
            .into_response()
    }
}

/// Prometheus text.
pub(crate) async fn metrics(State(gw): State<Gateway>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        gw.inner.metrics.render(),
    )
        .into_response()
}
