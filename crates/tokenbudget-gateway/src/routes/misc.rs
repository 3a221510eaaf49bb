//! `GET /v1/models`, `/healthz`, `/readyz`, `/metrics`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::anthropic::passthrough;
use crate::error::{ApiError, Result};
use crate::forward::{self, Upstream};
use crate::gateway::Gateway;
use crate::reader::Api;

/// `GET /v1/models`, for an authenticated caller: what is routed when the config has
/// routes, else the Anthropic upstream's list.
pub(crate) async fn models(State(gw): State<Gateway>, headers: HeaderMap) -> Response {
    let result: Result<Response> = async {
        let caller = gw.authorize(&headers, &Value::Null).await?;
        let routes = &gw.inner.settings.routes;
        if !routes.routes.is_empty() {
            return Ok(axum::Json(routed_models(routes)).into_response());
        }
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

/// The routes as a model list both SDKs read: Anthropic's fields (`type`, `id`,
/// `display_name`, `created_at`, `has_more`) and OpenAI's (`object`, `created`,
/// `owned_by`), one entry per route in order, the pattern as its id (a glob is listed as
/// written), with the upstream and the model sent there.
fn routed_models(routes: &tokenbudget_translate::route::RouteConfig) -> Value {
    let data: Vec<Value> = routes
        .routed_models()
        .into_iter()
        .map(|m| {
            let sent = m.model.unwrap_or(m.pattern);
            let kind = routes
                .upstreams
                .get(m.upstream)
                .map(|u| format!("{:?}", u.kind).to_lowercase());
            json!({
                "type": "model",
                "id": m.pattern,
                "display_name": format!("{} via {} as {sent}", m.pattern, m.upstream),
                "created_at": "1970-01-01T00:00:00Z",
                "object": "model",
                "created": 0,
                "owned_by": m.upstream,
                "upstream": m.upstream,
                "upstream_kind": kind,
                "upstream_model": m.model,
            })
        })
        .collect();
    json!({
        "object": "list",
        "first_id": data.first().map(|m| m["id"].clone()),
        "last_id": data.last().map(|m| m["id"].clone()),
        "has_more": false,
        "data": data,
    })
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
