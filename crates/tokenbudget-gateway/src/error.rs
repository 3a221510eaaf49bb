//! The gateway's error type, answered in the API's own error shape.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::reader::Api;

/// Everything the gateway can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No tokenbudget key in `x-api-key`, `Authorization: Bearer` or `x-tokenbudget-key`.
    #[error(
        "no tokenbudget key: send it as x-api-key, Authorization: Bearer, or x-tokenbudget-key"
    )]
    MissingKey,
    /// A key the store does not know.
    #[error("unknown tokenbudget key")]
    UnknownKey,
    /// A revoked key.
    #[error("tokenbudget key {id} was revoked")]
    RevokedKey {
        /// The key's public id.
        id: String,
    },
    /// `x-tokenbudget-budget` named a budget outside the key's.
    #[error("budget {budget} is not {key_budget} or one of its descendants")]
    ForbiddenBudget {
        /// The budget asked for.
        budget: String,
        /// The key's budget.
        key_budget: String,
    },
    /// Not enough budget for the prompt plus the minimum output.
    #[error(
        "tokenbudget: budget {budget} has {} left; this request needs at least {} (prompt up to {} + {min_output} output tokens)",
        unit.format(*available), unit.format(*need), unit.format(*prompt)
    )]
    Refused {
        /// The budget in the chain that lacked room.
        budget: String,
        /// What the last try asked for, in the budget's unit.
        requested: u64,
        /// What that budget had left, in its unit.
        available: u64,
        /// The prompt's cost bound, in the budget's unit.
        prompt: u64,
        /// The least the request could be admitted for (prompt and minimum output).
        need: u64,
        /// The minimum output configured (tokens).
        min_output: u64,
        /// The budget's unit.
        unit: tokenbudget::Unit,
    },
    /// A `usd` budget cannot price this request: no model, an unknown one, or a kind of
    /// token the model has no price for. Nothing is forwarded.
    #[error(
        "tokenbudget: this key's budget counts dollars and cannot price model {model:?}: {reason}"
    )]
    Price {
        /// The model asked for.
        model: String,
        /// Why it has no price.
        reason: String,
    },
    /// A request the gateway cannot read.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The upstream could not be reached.
    #[error("upstream unreachable: {0}")]
    Upstream(String),
    /// The upstream took too long.
    #[error("upstream timed out ({0})")]
    UpstreamTimeout(&'static str),
    /// No upstream of this kind is configured.
    #[error("no {0} upstream is configured")]
    NoUpstream(&'static str),
    /// The budget store or key store failed.
    #[error("budget store unavailable: {0}")]
    Store(String),
    /// The settlement journal could not be read or written.
    #[error("settlement journal: {0}")]
    Journal(String),
    /// A setting is invalid (at start).
    #[error("setting `{setting}`: {reason}")]
    Config {
        /// The setting's name.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request a translated route cannot carry (400), or an upstream answer it cannot
    /// translate (502).
    #[error("{0}")]
    Translate(#[from] tokenbudget_translate::TranslateError),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `Result` with the gateway's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tokenbudget::CoreError> for Error {
    fn from(e: tokenbudget::CoreError) -> Self {
        match e {
            tokenbudget::CoreError::Storage { .. } => Error::Store(e.to_string()),
            other => Error::InvalidRequest(other.to_string()),
        }
    }
}

impl From<tokenbudget::Error> for Error {
    fn from(e: tokenbudget::Error) -> Self {
        match e {
            tokenbudget::Error::Core(core) => core.into(),
            other => Error::Store(other.to_string()),
        }
    }
}

impl Error {
    /// The HTTP status and the Anthropic error type.
    pub fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            Error::MissingKey | Error::UnknownKey | Error::RevokedKey { .. } => {
                (StatusCode::UNAUTHORIZED, "authentication_error")
            }
            Error::ForbiddenBudget { .. } => (StatusCode::FORBIDDEN, "permission_error"),
            // 400 invalid_request_error, the way the API itself answers "credit balance too
            // low": clients (Claude Code included) show it and do not retry, where a 429 or
            // 5xx is retried with backoff.
            Error::Refused { .. } | Error::InvalidRequest(_) | Error::Price { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            Error::Upstream(_) => (StatusCode::BAD_GATEWAY, "api_error"),
            Error::UpstreamTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout_error"),
            Error::NoUpstream(_) => (StatusCode::NOT_FOUND, "not_found_error"),
            Error::Store(_) | Error::Journal(_) => (StatusCode::SERVICE_UNAVAILABLE, "api_error"),
            Error::Translate(e) if e.is_client_error() => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            Error::Translate(_) => (StatusCode::BAD_GATEWAY, "api_error"),
            Error::Config { .. } | Error::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "api_error")
            }
        }
    }

    /// The response in `api`'s error shape.
    pub fn into_api_response(self, api: Api) -> Response {
        let (status, kind) = self.status_and_type();
        let message = self.to_string();
        let body = match api {
            Api::Anthropic => json!({"type": "error", "error": {"type": kind, "message": message}}),
            Api::OpenAi => json!({"error": {
                "message": message,
                "type": kind,
                "param": null,
                "code": matches!(self, Error::Refused { .. }).then_some("budget_exhausted"),
            }}),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(self, Error::Refused { .. } | Error::Price { .. }) {
            // The Anthropic and OpenAI SDKs honour this header: never retry a refusal.
            response
                .headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

/// An error answered in a chosen API's shape.
#[derive(Debug)]
pub struct ApiError(pub Api, pub Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.1.into_api_response(self.0)
    }
}

impl IntoResponse for Error {
    /// Anthropic's shape (the default API).
    fn into_response(self) -> Response {
        self.into_api_response(Api::Anthropic)
    }
}
