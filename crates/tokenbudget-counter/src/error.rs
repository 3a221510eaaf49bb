//! The crate's one error type.

use std::time::Duration;

/// The result of a counting call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a count could not be produced.
///
/// Errors for which [`Error::fallback_cause`] is `Some` mean "the counter is unavailable
/// right now": a [`WithFallback`](crate::WithFallback) answers them with its fallback
/// counter. The others mean the request itself is wrong and are reported to the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No API key was configured and the environment variable was unset or empty.
    #[error("no API key: set {env_var} or configure one explicitly")]
    MissingApiKey {
        /// The environment variable that was read.
        env_var: &'static str,
    },

    /// The request did not complete within the configured timeout.
    #[error("token count request timed out after {timeout:?}")]
    Timeout {
        /// The configured timeout.
        timeout: Duration,
    },

    /// The request failed below HTTP: connection refused or reset, DNS, TLS.
    #[error("token count request failed: {source}")]
    Network {
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The API answered with a non-success status.
    ///
    /// 429, 5xx (including 529 "overloaded"), 401, 403 and 408 are treated as the service
    /// being unavailable; other 4xx statuses (400 `invalid_request_error`, 404, 413, …) say the
    /// request is invalid and are returned to the caller.
    #[error("token count API returned {status}{}: {message}", error_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The API's `error.type`, e.g. `invalid_request_error`, when the body had one.
        error_type: Option<String>,
        /// The API's `error.message`, or the start of the body.
        message: String,
    },

    /// A success status whose body was not `{"input_tokens": N}`.
    #[error("malformed token count response: {reason}")]
    MalformedResponse {
        /// What was wrong with the body.
        reason: String,
    },

    /// A message cannot be sent to this counter's API (for example a `tool` role for Claude).
    #[error("invalid message {index}: {reason}")]
    InvalidMessage {
        /// Position of the message in the slice.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A blocking call was made on a thread that is running a tokio runtime.
    ///
    /// Blocking there would stall (or, on a current-thread runtime, deadlock) the runtime,
    /// so [`Blocking`](crate::Blocking) refuses instead. Call the async method with `.await`.
    #[error(
        "blocking token count called from inside a tokio runtime; use the async `count` instead"
    )]
    InsideRuntime,

    /// The private runtime of [`Blocking`](crate::Blocking) could not be built.
    #[error("could not start the blocking runtime: {0}")]
    Runtime(#[source] std::io::Error),

    /// The counter's configuration is unusable (for example a malformed base URL).
    #[error("invalid counter configuration: {0}")]
    Config(String),
}

/// Why a counter was unavailable, for fallback and for the once-per-cause warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FallbackCause {
    /// [`Error::MissingApiKey`].
    MissingApiKey,
    /// [`Error::Network`].
    Network,
    /// [`Error::Timeout`], or HTTP 408.
    Timeout,
    /// HTTP 429.
    RateLimited,
    /// HTTP 529.
    Overloaded,
    /// HTTP 5xx other than 529.
    ServerError,
    /// HTTP 401 or 403: the key was rejected.
    Unauthorized,
    /// [`Error::MalformedResponse`].
    MalformedResponse,
}

impl FallbackCause {
    /// Every cause, in declaration order.
    pub const ALL: [FallbackCause; 8] = [
        FallbackCause::MissingApiKey,
        FallbackCause::Network,
        FallbackCause::Timeout,
        FallbackCause::RateLimited,
        FallbackCause::Overloaded,
        FallbackCause::ServerError,
        FallbackCause::Unauthorized,
        FallbackCause::MalformedResponse,
    ];

    /// A stable snake_case name, used as the `cause` field of the warning.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackCause::MissingApiKey => "missing_api_key",
            FallbackCause::Network => "network",
            FallbackCause::Timeout => "timeout",
            FallbackCause::RateLimited => "rate_limited",
            FallbackCause::Overloaded => "overloaded",
            FallbackCause::ServerError => "server_error",
            FallbackCause::Unauthorized => "unauthorized",
            FallbackCause::MalformedResponse => "malformed_response",
        }
    }

    pub(crate) fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl std::fmt::Display for FallbackCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// `Some(cause)` when this error means the counter is unavailable and a fallback should
    /// answer; `None` when the request itself is wrong and the caller must see the error.
    pub fn fallback_cause(&self) -> Option<FallbackCause> {
        match self {
            Error::MissingApiKey { .. } => Some(FallbackCause::MissingApiKey),
            Error::Network { .. } => Some(FallbackCause::Network),
            Error::Timeout { .. } => Some(FallbackCause::Timeout),
            Error::MalformedResponse { .. } => Some(FallbackCause::MalformedResponse),
            Error::Api { status, .. } => match status {
                408 => Some(FallbackCause::Timeout),
                429 => Some(FallbackCause::RateLimited),
                529 => Some(FallbackCause::Overloaded),
                401 | 403 => Some(FallbackCause::Unauthorized),
                500..=599 => Some(FallbackCause::ServerError),
                _ => None,
            },
            Error::InvalidMessage { .. }
            | Error::InsideRuntime
            | Error::Runtime(_)
            | Error::Config(_) => None,
        }
    }

    /// Whether the same call may succeed if retried later (timeouts, network errors, 408,
    /// 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.fallback_cause(),
            Some(
                FallbackCause::Network
                    | FallbackCause::Timeout
                    | FallbackCause::RateLimited
                    | FallbackCause::Overloaded
                    | FallbackCause::ServerError
            )
        )
    }
}
