//! The gateway's settings: command-line values and `gateway.toml`, validated at start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokenbudget_translate::route::{Route, RouteConfig, UpstreamConfig};

use crate::error::{Error, Result};
use crate::usage::Weights;

/// How the prompt part of a reservation is sized for Claude requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromptCount {
    /// An upper bound from the UTF-8 size and documented fixed costs. Defaults to this.
    #[default]
    Bound,
    /// The local estimator: smaller holds, but an adversarial prompt can exceed it.
    Estimate,
    /// Anthropic's `POST /v1/messages/count_tokens` on the request's upstream, with the
    /// gateway's credential, within `timeouts.count_tokens`; on a timeout or an error, the
    /// bound (never less).
    CountTokens,
}

impl std::str::FromStr for PromptCount {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bound" => Ok(Self::Bound),
            "estimate" => Ok(Self::Estimate),
            "count_tokens" => Ok(Self::CountTokens),
            other => Err(config_err(
                "--prompt-count",
                format!("{other:?}: expected \"bound\", \"estimate\" or \"count_tokens\""),
            )),
        }
    }
}

/// What to do when the budget store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// 503 in the API's shape, nothing forwarded. Defaults to this.
    #[default]
    Closed,
    /// Forward anyway, within `open_limit` tokens not yet in the store, and journal the
    /// settlement (fsynced) for replay when the store is back. Needs a `journal`.
    Open,
}

/// A duration as written: `"30s"`, `"10m"`; a bare number is refused (which unit?).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Text(String),
    Number(i64),
}

/// `[timeouts]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<RawDuration>,
    first_byte: Option<RawDuration>,
    idle: Option<RawDuration>,
    total: Option<RawDuration>,
    count_tokens: Option<RawDuration>,
    store: Option<RawDuration>,
}

/// `gateway.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct RawFile {
    upstreams: BTreeMap<String, UpstreamConfig>,
    routes: Vec<Route>,
    keepalive: Option<RawDuration>,
    anthropic_url: Option<String>,
    openai_url: Option<String>,
    timeouts: RawTimeouts,
    reservation_timeout: Option<RawDuration>,
    min_output_tokens: Option<u64>,
    openai_default_max_tokens: Option<u64>,
    prompt_count: Option<PromptCount>,
    count_tokens_margin: Option<u64>,
    weights: Option<Weights>,
    on_store_error: Option<OnStoreError>,
    journal: Option<PathBuf>,
    open_limit: Option<u64>,
    journal_retry: Option<RawDuration>,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection. Defaults to 10 s.
    pub connect: Duration,
    /// From sending the request to the response headers. Defaults to 10 min (Claude Code's
    /// own client waits that long).
    pub first_byte: Duration,
    /// Between two body chunks. Defaults to 5 min.
    pub idle: Duration,
    /// The whole response. Defaults to 60 min.
    pub total: Duration,
    /// A `count_tokens` call made for admission (`prompt_count = "count_tokens"`); past it
    /// admission uses the byte bound. Defaults to 2 s.
    pub count_tokens: Duration,
    /// One call to the budget or key store; past it the store counts as unreachable
    /// (`on_store_error` decides). Defaults to 5 s.
    pub store: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(600),
            idle: Duration::from_secs(300),
            total: Duration::from_secs(3600),
            count_tokens: Duration::from_secs(2),
            store: Duration::from_secs(5),
        }
    }
}

/// Everything the gateway runs with.
#[derive(Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Anthropic base URL (no trailing `/v1`). Defaults to `https://api.anthropic.com`.
    pub anthropic_url: String,
    /// OpenAI-compatible base URL (ending in `/v1`). Defaults to none.
    pub openai_url: Option<String>,
    /// The gateway's own Anthropic credential (`ANTHROPIC_API_KEY`).
    pub anthropic_api_key: Option<String>,
    /// The gateway's own OpenAI credential (`OPENAI_API_KEY`).
    pub openai_api_key: Option<String>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// How long a reservation lasts without an extension. Defaults to 10 min; streams extend
    /// it every half of that.
    pub reservation_timeout: Duration,
    /// The least output a clamped request may be given. Defaults to 1,024 tokens.
    pub min_output_tokens: u64,
    /// `max_tokens` set on OpenAI requests that carry none. Defaults to 4,096.
    pub openai_default_max_tokens: u64,
    /// Prompt sizing for Claude. Defaults to [`PromptCount::Bound`].
    pub prompt_count: PromptCount,
    /// With [`PromptCount::CountTokens`], the percentage added to `count_tokens`'
    /// answer before it is held: Anthropic documents that answer as an estimate the
    /// billed input may differ from slightly. The hold is never more than the bound.
    /// Defaults to 5; at most 100.
    pub count_tokens_margin: u64,
    /// Per-kind weights. Defaults to 1 each.
    pub weights: Weights,
    /// Store-down behaviour. Defaults to [`OnStoreError::Closed`].
    pub on_store_error: OnStoreError,
    /// The settlement journal: settlements the store could not take (a commit that failed,
    /// a request forwarded with `on_store_error = "open"`) are appended here, fsynced, and
    /// replayed into the store when it is back and at start. Defaults to none (a failed
    /// settlement is logged; `open` refuses to start without a journal).
    pub journal: Option<PathBuf>,
    /// With `on_store_error = "open"`: the most weighted tokens that may be out without the
    /// store, counting requests forwarded while it is unreachable (their whole hold while
    /// they run) and every journaled settlement not yet replayed. Past it, requests get 503
    /// as with `closed`. Defaults to 1,000,000.
    pub open_limit: u64,
    /// How often a non-empty journal is replayed. Defaults to 5 s.
    pub journal_retry: Duration,
    /// The `[upstreams.*]` and `[[routes]]` of the config file: which model names go to
    /// which upstream, translated or not. Defaults to none (everything goes to
    /// `anthropic_url`).
    pub routes: RouteConfig,
    /// Each routed upstream's key, by upstream name, read from its `api_key_env` by
    /// [`Settings::with_env_credentials`]. Defaults to none.
    pub upstream_keys: BTreeMap<String, String>,
    /// On translated streams, a `ping` event is sent after this long without anything to
    /// send (a local model loading, a long prompt being read), so the client does not give
    /// up. Defaults to 5 s.
    pub keepalive: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials never reach a log.
        f.debug_struct("Settings")
            .field("anthropic_url", &self.anthropic_url)
            .field("openai_url", &self.openai_url)
            .field(
                "anthropic_api_key",
                &self.anthropic_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "openai_api_key",
                &self.openai_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("timeouts", &self.timeouts)
            .field("reservation_timeout", &self.reservation_timeout)
            .field("min_output_tokens", &self.min_output_tokens)
            .field("prompt_count", &self.prompt_count)
            .field("count_tokens_margin", &self.count_tokens_margin)
            .field("weights", &self.weights)
            .field("on_store_error", &self.on_store_error)
            .field("journal", &self.journal)
            .field("open_limit", &self.open_limit)
            .field("routes", &self.routes)
            .field(
                "upstream_keys",
                &self.upstream_keys.keys().collect::<Vec<_>>(),
            )
            .field("keepalive", &self.keepalive)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            anthropic_url: "https://api.anthropic.com".into(),
            openai_url: None,
            anthropic_api_key: None,
            openai_api_key: None,
            timeouts: Timeouts::default(),
            reservation_timeout: Duration::from_secs(600),
            min_output_tokens: 1024,
            openai_default_max_tokens: 4096,
            prompt_count: PromptCount::Bound,
            count_tokens_margin: 5,
            weights: Weights::default(),
            on_store_error: OnStoreError::Closed,
            journal: None,
            open_limit: 1_000_000,
            journal_retry: Duration::from_secs(5),
            routes: RouteConfig::default(),
            upstream_keys: BTreeMap::new(),
            keepalive: Duration::from_secs(5),
        }
    }
}

fn config_err(setting: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        setting: setting.into(),
        reason: reason.into(),
    }
}

fn duration(setting: &str, raw: &RawDuration) -> Result<Duration> {
    match raw {
        RawDuration::Number(n) => Err(config_err(
            setting,
            format!("{n} has no unit: write e.g. \"{n}ms\", \"{n}s\" or \"{n}m\""),
        )),
        RawDuration::Text(text) => {
            let d = humantime::parse_duration(text.trim()).map_err(|e| {
                config_err(
                    setting,
                    format!("{text:?}: {e} (write e.g. \"30s\", \"10m\")"),
                )
            })?;
            if d.is_zero() {
                return Err(config_err(setting, "must be more than zero"));
            }
            Ok(d)
        }
    }
}

fn url(setting: &str, value: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(value)
        .map_err(|e| config_err(setting, format!("{value:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(config_err(
            setting,
            format!("{value:?}: expected http(s)://host[:port][/path]"),
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

impl Settings {
    /// Reads `gateway.toml` text over the defaults; errors name the setting.
    pub fn from_toml(text: &str) -> Result<Self> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let setting = e
                .span()
                .and_then(|s| text.get(s))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|| "gateway.toml".into());
            config_err(&setting, e.message().to_owned())
        })?;
        let mut s = Self::default();
        if let Some(u) = raw.anthropic_url {
            s.anthropic_url = url("anthropic_url", &u)?;
        }
        if let Some(u) = raw.openai_url {
            s.openai_url = Some(url("openai_url", &u)?);
        }
        let t = &raw.timeouts;
        for (name, value, slot) in [
            ("timeouts.connect", &t.connect, &mut s.timeouts.connect),
            (
                "timeouts.first_byte",
                &t.first_byte,
                &mut s.timeouts.first_byte,
            ),
            ("timeouts.idle", &t.idle, &mut s.timeouts.idle),
            ("timeouts.total", &t.total, &mut s.timeouts.total),
            ("timeouts.store", &t.store, &mut s.timeouts.store),
            (
                "timeouts.count_tokens",
                &t.count_tokens,
                &mut s.timeouts.count_tokens,
            ),
        ] {
            if let Some(v) = value {
                *slot = duration(name, v)?;
            }
        }
        if let Some(v) = &raw.reservation_timeout {
            s.reservation_timeout = duration("reservation_timeout", v)?;
        }
        if let Some(n) = raw.min_output_tokens {
            s.min_output_tokens = n;
        }
        if let Some(n) = raw.openai_default_max_tokens {
            s.openai_default_max_tokens = n;
        }
        if let Some(p) = raw.prompt_count {
            s.prompt_count = p;
        }
        if let Some(m) = raw.count_tokens_margin {
            if m > 100 {
                return Err(config_err(
                    "count_tokens_margin",
                    format!("{m}: a percentage from 0 to 100"),
                ));
            }
            s.count_tokens_margin = m;
        }
        if let Some(w) = raw.weights {
            s.weights = w;
        }
        if let Some(o) = raw.on_store_error {
            s.on_store_error = o;
        }
        if let Some(p) = raw.journal {
            s.journal = Some(p);
        }
        if let Some(n) = raw.open_limit {
            s.open_limit = n;
        }
        if let Some(v) = &raw.journal_retry {
            s.journal_retry = duration("journal_retry", v)?;
        }
        if let Some(v) = &raw.keepalive {
            s.keepalive = duration("keepalive", v)?;
        }
        s.routes.upstreams = raw.upstreams;
        s.routes.routes = raw.routes;
        s.validate()?;
        Ok(s)
    }

    /// Reads the file at `path` (see [`Settings::from_toml`]).
    pub fn from_file(path: &PathBuf) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_err("--config", format!("{}: {e}", path.display())))?;
        Self::from_toml(&text)
    }

    /// Sets the Anthropic URL (validated).
    pub fn with_anthropic_url(mut self, value: &str) -> Result<Self> {
        self.anthropic_url = url("--anthropic-url", value)?;
        Ok(self)
    }

    /// Sets the OpenAI-compatible URL (validated).
    pub fn with_openai_url(mut self, value: &str) -> Result<Self> {
        self.openai_url = Some(url("--openai-url", value)?);
        Ok(self)
    }

    /// Takes the upstream credentials from the environment (`ANTHROPIC_API_KEY`,
    /// `OPENAI_API_KEY`) where not already set.
    pub fn with_env_credentials(mut self) -> Self {
        let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        self.anthropic_api_key = self.anthropic_api_key.or_else(|| env("ANTHROPIC_API_KEY"));
        self.openai_api_key = self.openai_api_key.or_else(|| env("OPENAI_API_KEY"));
        for (name, upstream) in &self.routes.upstreams {
            if let Some(var) = &upstream.api_key_env {
                if let Some(key) = env(var) {
                    self.upstream_keys.entry(name.clone()).or_insert(key);
                }
            }
        }
        self
    }

    /// Every upstream credential the gateway holds (for the log scrubber).
    pub fn credentials(&self) -> Vec<String> {
        self.anthropic_api_key
            .iter()
            .chain(self.openai_api_key.iter())
            .chain(self.upstream_keys.values())
            .cloned()
            .collect()
    }

    /// Checks every upstream that names an `api_key_env` has its key (called when the
    /// gateway starts: a missing key would fail every request routed there).
    pub fn check_upstream_keys(&self) -> Result<()> {
        for (name, upstream) in &self.routes.upstreams {
            if let Some(var) = &upstream.api_key_env {
                if !self.upstream_keys.contains_key(name) {
                    return Err(config_err(
                        &format!("upstreams.{name}.api_key_env"),
                        format!("the environment variable {var} is not set"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the settings hold together.
    pub fn validate(&self) -> Result<()> {
        if let Err(e) = self.routes.validate() {
            return Err(match e {
                tokenbudget_translate::TranslateError::InvalidRoute { setting, message } => {
                    config_err(&setting, message)
                }
                other => config_err("routes", other.to_string()),
            });
        }
        if self.keepalive.is_zero() {
            return Err(config_err("keepalive", "must be more than zero"));
        }
        if self.on_store_error == OnStoreError::Open && self.journal.is_none() {
            return Err(config_err(
                "journal",
                "on_store_error = \"open\" journals what it forwards: set a journal file (--journal)",
            ));
        }
        if self.weights.output == 0 {
            return Err(config_err("weights.output", "must be at least 1"));
        }
        if self.timeouts.first_byte > self.timeouts.total {
            return Err(config_err(
                "timeouts.first_byte",
                "is longer than timeouts.total",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting_of(text: &str) -> String {
        match Settings::from_toml(text) {
            Err(Error::Config { setting, .. }) => setting,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn durations_take_units_and_errors_name_the_setting() {
        let s = Settings::from_toml("[timeouts]\nidle = \"90s\"\ntotal = \"2h\"\n").unwrap();
        assert_eq!(s.timeouts.idle, Duration::from_secs(90));
        assert_eq!(s.timeouts.total, Duration::from_secs(7200));
        assert_eq!(setting_of("[timeouts]\nidle = 1000\n"), "timeouts.idle");
        assert_eq!(
            setting_of("[timeouts]\nconnect = \"soon\"\n"),
            "timeouts.connect"
        );
        assert_eq!(
            setting_of("reservation_timeout = \"0s\"\n"),
            "reservation_timeout"
        );
        assert_eq!(setting_of("anthropic_url = \"ftp://x\"\n"), "anthropic_url");
        assert_eq!(setting_of("on_store_error = \"open\"\n"), "journal");
        let open =
            Settings::from_toml("on_store_error = \"open\"\njournal = \"gw.journal\"\n").unwrap();
        assert_eq!(
            open.journal.as_deref(),
            Some(std::path::Path::new("gw.journal"))
        );
        assert_eq!(setting_of("[timeouts]\nstore = 5\n"), "timeouts.store");
        assert!(setting_of("[timeouts]\nbogus = \"1s\"\n").contains("bogus"));
    }

    /// The issue's example file, as written.
    const ROUTES: &str = r#"
[upstreams.local]
kind = "openai"                  # "anthropic" (pass-through) or "openai" (translate)
url = "http://127.0.0.1:1234/v1"
# api_key_env = "LOCAL_API_KEY"  # optional: the env var holding this upstream's key

[[routes]]
match = "claude-haiku-*"         # exact name or glob
upstream = "local"
model = "qwen3-coder-30b"        # the name sent upstream; omitted: the incoming name

[[routes]]
match = "*"
upstream = "local"
"#;

    #[test]
    fn the_issues_route_file_reads_as_written() {
        let s = Settings::from_toml(ROUTES).unwrap();
        let haiku = s.routes.resolve("claude-haiku-4-5").unwrap();
        assert_eq!(
            (haiku.upstream_name, haiku.model.as_str()),
            ("local", "qwen3-coder-30b")
        );
        assert_eq!(s.routes.resolve("claude-opus-4").unwrap().route, 1);
        assert_eq!(s.keepalive, Duration::from_secs(5));
        s.check_upstream_keys().unwrap();
    }

    #[test]
    fn route_errors_name_the_setting() {
        assert_eq!(
            setting_of("[[routes]]\nmatch = \"*\"\nupstream = \"nowhere\"\n"),
            "routes[0].upstream"
        );
        assert_eq!(
            setting_of("[upstreams.x]\nkind = \"openai\"\nurl = \"localhost:1234\"\n"),
            "upstreams.x.url"
        );
        assert_eq!(setting_of("keepalive = 5\n"), "keepalive");
        let with_env = format!(
            "{ROUTES}\n[upstreams.paid]\nkind = \"openai\"\nurl = \"https://example.test/v1\"\napi_key_env = \"TOKENBUDGET_TEST_UNSET_KEY_VAR\"\n"
        );
        let s = Settings::from_toml(&with_env)
            .unwrap()
            .with_env_credentials();
        match s.check_upstream_keys() {
            Err(Error::Config { setting, reason }) => {
                assert_eq!(setting, "upstreams.paid.api_key_env");
                assert!(
                    reason.contains("TOKENBUDGET_TEST_UNSET_KEY_VAR"),
                    "{reason}"
                );
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_suit_slow_models_and_unknown_tables_are_left_alone() {
        let s = Settings::from_toml("[metrics_extra]\nx = 1\n").unwrap();
        assert_eq!(s.timeouts.first_byte, Duration::from_secs(600));
        assert_eq!(s.weights, Weights::default());
        let shown = format!(
            "{:?}",
            Settings {
                anthropic_api_key: Some("sk-secret".into()),
                ..s
            }
        );
        assert!(!shown.contains("sk-secret"));
    }
}
