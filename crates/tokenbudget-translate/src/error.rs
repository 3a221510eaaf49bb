//! The crate's one error type.

/// What can go wrong translating between the two APIs.
///
/// Request-side errors ([`TranslateError::is_client_error`]) are the client's to fix: the
/// gateway answers them with a 400 in Anthropic's shape
/// ([`TranslateError::to_anthropic_error_json`]) and forwards nothing. The rest describe an
/// upstream answer that cannot be translated (a 502 for the gateway).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranslateError {
    /// The body is not a valid Messages request (serde's message, with line and column).
    #[error("invalid request body: {0}")]
    InvalidRequest(String),
    /// `max_tokens` is required by the Messages API.
    #[error("max_tokens: field required")]
    MissingMaxTokens,
    /// A content block this translation cannot carry to a Chat Completions model.
    #[error("messages.{message}.content.{block}: {kind} blocks are not supported on routes to OpenAI-compatible models")]
    UnsupportedContent {
        /// The message's index.
        message: usize,
        /// The block's index in the message.
        block: usize,
        /// The block's `type` (`document`, …).
        kind: String,
    },
    /// A block in the wrong role (`tool_use` from the user, `tool_result` from the model).
    #[error(
        "messages.{message}.content.{block}: a {kind} block cannot appear in a {role} message"
    )]
    MisplacedContent {
        /// The message's index.
        message: usize,
        /// The block's index in the message.
        block: usize,
        /// The block's `type`.
        kind: String,
        /// The message's role.
        role: String,
    },
    /// An Anthropic server tool (web search, code execution, …) has no upstream equivalent.
    #[error("tools.{index}: server tool {name} (type {kind}) is not supported on routes to OpenAI-compatible models")]
    UnsupportedTool {
        /// The tool's index.
        index: usize,
        /// Its name.
        name: String,
        /// Its `type`.
        kind: String,
    },
    /// A client tool without `input_schema`.
    #[error("tools.{index}.input_schema: field required")]
    MissingInputSchema {
        /// The tool's index.
        index: usize,
    },
    /// A route table setting is wrong (caught when the gateway starts).
    #[error("{setting}: {message}")]
    InvalidRoute {
        /// The setting, as written in the config file (`routes[1].upstream`).
        setting: String,
        /// What is wrong with it.
        message: String,
    },
    /// The upstream's answer cannot be translated.
    #[error("upstream response: {0}")]
    Upstream(String),
}

/// `Result` with [`TranslateError`].
pub type Result<T, E = TranslateError> = std::result::Result<T, E>;

impl TranslateError {
    /// Whether the client's request caused it (400) rather than the upstream (502).
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            TranslateError::Upstream(_) | TranslateError::InvalidRoute { .. }
        )
    }

    /// The HTTP status the gateway answers with: 400 for request errors, 502 for upstream
    /// answers it cannot translate.
    pub fn status(&self) -> u16 {
        if self.is_client_error() {
            400
        } else {
            502
        }
    }

    /// Anthropic's error body:
    /// `{"type":"error","error":{"type":"invalid_request_error","message":"…"}}`
    /// (`api_error` for upstream errors).
    pub fn to_anthropic_error_json(&self) -> String {
        let kind = if self.is_client_error() {
            "invalid_request_error"
        } else {
            "api_error"
        };
        error_json(kind, &self.to_string())
    }
}

/// An Anthropic error body with `kind` and `message`.
pub(crate) fn error_json(kind: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}
