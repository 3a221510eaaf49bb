//! Claude counts from the Anthropic `count_tokens` API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    Content, CounterId, Error, Estimator, Message, Result, Role, TokenCount, TokenCounter,
    WithFallback,
};

/// The Anthropic API version sent in `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The environment variable the API key is read from by default.
pub const API_KEY_ENV: &str = "ANTHROPIC_API_KEY";
/// The API's base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a [`ClaudeCounter`].
///
/// ```
/// use std::time::Duration;
/// use tokenbudget_counter::ClaudeConfig;
///
/// let counter = ClaudeConfig::new("claude-sonnet-4-5")
///     .with_timeout(Duration::from_secs(2))
///     .build()
///     .unwrap()
///     .fail_open();
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ClaudeConfig {
    /// The model whose tokenizer counts. Required.
    pub model: String,
    /// Scheme, host and optional path prefix; `/v1/messages/count_tokens` is appended.
    /// Defaults to [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// The API key. Defaults to `None`: read from [`ClaudeConfig::api_key_env`] at
    /// [`build`](ClaudeConfig::build).
    pub api_key: Option<String>,
    /// The variable the key is read from when `api_key` is `None`. Defaults to
    /// [`API_KEY_ENV`].
    pub api_key_env: &'static str,
    /// Limit on each whole request (connect, send, response). Defaults to
    /// [`DEFAULT_TIMEOUT`] (5 s).
    pub timeout: Duration,
    /// Tool definitions (`[{"name", "description", "input_schema"}]`) sent with every count,
    /// since they cost prompt tokens. Defaults to none.
    pub tools: Option<Arc<[serde_json::Value]>>,
}

impl std::fmt::Debug for ClaudeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaudeConfig")
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("timeout", &self.timeout)
            .field("tools", &self.tools.as_ref().map(|t| t.len()))
            .finish()
    }
}

impl ClaudeConfig {
    /// Defaults for `model`.
    pub fn new(model: impl Into<String>) -> Self {
        ClaudeConfig {
            model: model.into(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            api_key_env: API_KEY_ENV,
            timeout: DEFAULT_TIMEOUT,
            tools: None,
        }
    }

    /// Sets [`ClaudeConfig::base_url`].
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Sets [`ClaudeConfig::api_key`].
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(api_key.into());
        self
    }

    /// Sets [`ClaudeConfig::api_key_env`].
    pub fn with_api_key_env(mut self, var: &'static str) -> Self {
        self.api_key_env = var;
        self
    }

    /// Sets [`ClaudeConfig::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`ClaudeConfig::tools`].
    pub fn with_tools(mut self, tools: Vec<serde_json::Value>) -> Self {
        self.tools = Some(tools.into());
        self
    }

    /// Builds the counter and its HTTP client.
    ///
    /// A missing API key is not an error here: each count then fails with
    /// [`Error::MissingApiKey`], which [`ClaudeCounter::fail_open`] answers with the estimate.
    pub fn build(self) -> Result<ClaudeCounter> {
        let base = reqwest::Url::parse(&self.base_url)
            .map_err(|e| Error::Config(format!("base URL `{}`: {e}", self.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "base URL `{}` must be http or https",
                self.base_url
            )));
        }
        let url = format!(
            "{}/v1/messages/count_tokens",
            self.base_url.trim_end_matches('/')
        );
        let api_key = self
            .api_key
            .clone()
            .or_else(|| std::env::var(self.api_key_env).ok())
            .filter(|k| !k.trim().is_empty());
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(ClaudeCounter {
            inner: Arc::new(Inner {
                client,
                url,
                api_key,
                config: self,
            }),
        })
    }
}

/// Exact Claude counts from `POST {base_url}/v1/messages/count_tokens`.
///
/// One HTTP client (and so one connection pool) per counter; clones share it. Errors are
/// returned as they are: use [`ClaudeCounter::fail_open`] to answer unavailability with the
/// [`Estimator`].
///
/// # Behavior
/// - `count(text)` counts one user message with content `text`; `count("")` is 0 without a
///   request.
/// - `count_messages` sends `system` and `developer` messages as the `system` field (joined
///   by blank lines), the others as `messages`; names are not sent (the API has none). A
///   `tool` role message is [`Error::InvalidMessage`].
/// - Headers `x-api-key`, `anthropic-version: 2023-06-01`, `content-type: application/json`;
///   body `{"model", "messages", "system"?, "tools"?}`; the answer `{"input_tokens": N}` is
///   an exact count.
/// - Errors: no key → [`Error::MissingApiKey`]; timeout → [`Error::Timeout`]; transport →
///   [`Error::Network`]; non-2xx → [`Error::Api`]; any other body →
///   [`Error::MalformedResponse`].
#[derive(Debug, Clone)]
pub struct ClaudeCounter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    config: ClaudeConfig,
}

/// A [`ClaudeCounter`] that answers with the [`Estimator`] when the API is unavailable.
pub type FailOpenClaudeCounter = WithFallback<ClaudeCounter, Estimator>;

#[derive(Serialize)]
struct CountRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [serde_json::Value]>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a Content,
}

#[derive(Deserialize)]
struct CountResponse {
    input_tokens: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

impl ClaudeCounter {
    /// The counter's configuration.
    pub fn config(&self) -> &ClaudeConfig {
        &self.inner.config
    }

    /// This counter, answering with [`Estimator::default`] when the API is unavailable.
    pub fn fail_open(self) -> FailOpenClaudeCounter {
        WithFallback::new(self, Estimator::default())
    }

    async fn request(&self, messages: &[Message]) -> Result<TokenCount> {
        let Some(api_key) = &self.inner.api_key else {
            return Err(Error::MissingApiKey {
                env_var: self.inner.config.api_key_env,
            });
        };
        let body = self.body(messages)?;
        let response = self
            .inner
            .client
            .post(&self.inner.url)
            .header("x-api-key", api_key)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &bytes));
        }
        let parsed: CountResponse =
            serde_json::from_slice(&bytes).map_err(|e| Error::MalformedResponse {
                reason: format!("{e}; body starts {:?}", snippet(&bytes)),
            })?;
        Ok(TokenCount::exact(parsed.input_tokens, CounterId::Claude))
    }

    fn body(&self, messages: &[Message]) -> Result<Vec<u8>> {
        let mut system: Vec<&str> = Vec::new();
        let mut wire = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            match message.role {
                Role::System | Role::Developer => match &message.content {
                    Content::Text(text) => system.push(text),
                    Content::Blocks(_) => {
                        return Err(Error::InvalidMessage {
                            index,
                            reason: "system content must be a string for count_tokens".into(),
                        })
                    }
                },
                Role::User | Role::Assistant => wire.push(WireMessage {
                    role: message.role.as_str(),
                    content: &message.content,
                }),
                Role::Tool => {
                    return Err(Error::InvalidMessage {
                        index,
                        reason: "the Claude API has no `tool` role; send a user message with a \
                                 tool_result block"
                            .into(),
                    })
                }
            }
        }
        let request = CountRequest {
            model: &self.inner.config.model,
            messages: wire,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            tools: self.inner.config.tools.as_deref(),
        };
        serde_json::to_vec(&request).map_err(|e| Error::InvalidMessage {
            index: 0,
            reason: format!("cannot serialize the request: {e}"),
        })
    }

    fn transport_error(&self, error: reqwest::Error) -> Error {
        if error.is_timeout() {
            Error::Timeout {
                timeout: self.inner.config.timeout,
            }
        } else {
            Error::Network {
                source: Box::new(error),
            }
        }
    }
}

fn api_error(status: u16, body: &[u8]) -> Error {
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let (error_type, message) = match detail {
        Some(d) => (d.kind, d.message.unwrap_or_default()),
        None => (None, snippet(body)),
    };
    Error::Api {
        status,
        error_type,
        message,
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.into_owned()
}

#[async_trait]
impl TokenCounter for ClaudeCounter {
    async fn count(&self, text: &str) -> Result<TokenCount> {
        if text.is_empty() {
            return Ok(TokenCount::exact(0, CounterId::Claude));
        }
        self.request(&[Message::user(text)]).await
    }

    async fn count_messages(&self, messages: &[Message]) -> Result<TokenCount> {
        self.request(messages).await
    }
}
