//! The gateway's route table: which incoming model names go to which upstream, as what.
//!
//! ```
//! use tokenbudget_translate::route::{RouteConfig, UpstreamKind};
//!
//! let config: RouteConfig = toml_like(r#"{
//!     "upstreams": {"local": {"kind": "openai", "url": "http://127.0.0.1:1234/v1"}},
//!     "routes": [
//!         {"match": "claude-haiku-*", "upstream": "local", "model": "qwen3-coder-30b"},
//!         {"match": "*", "upstream": "local"}
//!     ]
//! }"#);
//! config.validate().unwrap();
//! let haiku = config.resolve("claude-haiku-4-5").unwrap();
//! assert_eq!((haiku.upstream.kind, haiku.model.as_str()), (UpstreamKind::Openai, "qwen3-coder-30b"));
//! assert_eq!(config.resolve("claude-opus-4").unwrap().model, "claude-opus-4");
//! # fn toml_like(s: &str) -> RouteConfig { serde_json::from_str(s).unwrap() }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::target::{MaxTokensField, Reasoning, RouteTarget};
use crate::TranslateError;

/// The `[upstreams.*]` tables and `[[routes]]` of the gateway's config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RouteConfig {
    /// Upstreams by name. Defaults to none.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Routes, tried in order. Defaults to none (everything goes to the default upstream).
    pub routes: Vec<Route>,
}

/// An `[upstreams.NAME]` table.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// `anthropic` (pass-through) or `openai` (translated).
    pub kind: UpstreamKind,
    /// The base URL (`…/v1` for OpenAI-compatible servers).
    pub url: String,
    /// The environment variable holding this upstream's API key. Defaults to none (no key
    /// is sent; local servers need none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// How `thinking` is sent to this upstream. Defaults to `none` (dropped).
    #[serde(default)]
    pub reasoning: Reasoning,
    /// Which field carries `max_tokens`. Defaults to `max_tokens`.
    #[serde(default)]
    pub max_tokens_field: MaxTokensField,
}

impl std::fmt::Debug for UpstreamConfig {
    /// Hides a password in the URL (`http://user:***@host`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("kind", &self.kind)
            .field("url", &redact_url(&self.url))
            .field("api_key_env", &self.api_key_env)
            .field("reasoning", &self.reasoning)
            .field("max_tokens_field", &self.max_tokens_field)
            .finish()
    }
}

/// What an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// The Anthropic Messages API: requests pass through untouched.
    Anthropic,
    /// OpenAI Chat Completions: requests and responses are translated.
    Openai,
}

/// A `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Route {
    /// An exact model name or a glob (`*` any run of characters, `?` one character).
    #[serde(rename = "match")]
    pub pattern: String,
    /// The upstream's name (a key of `upstreams`).
    pub upstream: String,
    /// The model name sent upstream. Defaults to the incoming name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved<'a> {
    /// The index of the route that matched (first match wins).
    pub route: usize,
    /// The upstream's name.
    pub upstream_name: &'a str,
    /// The upstream.
    pub upstream: &'a UpstreamConfig,
    /// The model name to send upstream.
    pub model: String,
}

impl Resolved<'_> {
    /// What [`translate_request`](crate::translate_request) needs.
    pub fn target(&self) -> RouteTarget {
        RouteTarget::new(self.model.clone())
            .with_reasoning(self.upstream.reasoning)
            .with_max_tokens_field(self.upstream.max_tokens_field)
    }
}

/// One line of `GET /v1/models`: a routed name or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedModel<'a> {
    /// The route's pattern.
    pub pattern: &'a str,
    /// The upstream's name.
    pub upstream: &'a str,
    /// The upstream model, when the route renames.
    pub model: Option<&'a str>,
}

impl RouteConfig {
    /// Checks what can be checked before serving: every route names a known upstream and a
    /// non-empty pattern, every URL is `http://` or `https://`, no `api_key_env` is empty.
    /// The error names the setting (`routes[1].upstream`, `upstreams.local.url`).
    pub fn validate(&self) -> Result<(), TranslateError> {
        let invalid = |setting: String, message: String| {
            Err(TranslateError::InvalidRoute { setting, message })
        };
        for (name, upstream) in &self.upstreams {
            let url = upstream.url.as_str();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(
                    format!("upstreams.{name}.url"),
                    format!("{} is not an http:// or https:// URL", redact_url(url)),
                );
            }
            if upstream
                .api_key_env
                .as_deref()
                .is_some_and(|v| v.trim().is_empty())
            {
                return invalid(
                    format!("upstreams.{name}.api_key_env"),
                    "must name an environment variable".into(),
                );
            }
        }
        for (index, route) in self.routes.iter().enumerate() {
            if route.pattern.is_empty() {
                return invalid(format!("routes[{index}].match"), "must not be empty".into());
            }
            if !self.upstreams.contains_key(&route.upstream) {
                let known = self
                    .upstreams
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                return invalid(
                    format!("routes[{index}].upstream"),
                    format!("unknown upstream {:?} (known: {known})", route.upstream),
                );
            }
            if route.model.as_deref().is_some_and(str::is_empty) {
                return invalid(format!("routes[{index}].model"), "must not be empty".into());
            }
        }
        Ok(())
    }

    /// The first route whose pattern matches `model`, or `None` (the gateway's default
    /// Anthropic upstream). A route naming an unknown upstream is skipped
    /// ([`validate`](Self::validate) rejects such a config at start).
    pub fn resolve(&self, model: &str) -> Option<Resolved<'_>> {
        self.routes.iter().enumerate().find_map(|(index, route)| {
            if !glob_match(&route.pattern, model) {
                return None;
            }
            let (upstream_name, upstream) = self.upstreams.get_key_value(&route.upstream)?;
            Some(Resolved {
                route: index,
                upstream_name,
                upstream,
                model: route.model.clone().unwrap_or_else(|| model.to_owned()),
            })
        })
    }

    /// The routes, in order, for `GET /v1/models`.
    pub fn routed_models(&self) -> Vec<RoutedModel<'_>> {
        self.routes
            .iter()
            .map(|r| RoutedModel {
                pattern: &r.pattern,
                upstream: &r.upstream,
                model: r.model.as_deref(),
            })
            .collect()
    }
}

/// Whether `text` matches `pattern`: `*` matches any run of characters (also none), `?` any
/// one character, everything else itself (case-sensitive).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_cases() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("claude-haiku-*", "claude-haiku-4-5-20251001", true),
            ("claude-haiku-*", "claude-haiku-", true),
            ("claude-haiku-*", "claude-sonnet-4", false),
            ("claude-?-x", "claude-3-x", true),
            ("claude-?-x", "claude-35-x", false),
            ("*sonnet*", "claude-sonnet-4-5", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("Exact", "exact", false),
            ("**", "x", true),
            ("é*", "été", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(glob_match(pattern, text), want, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn redacts_passwords_in_debug() {
        assert_eq!(
            redact_url("https://u:secret@h:1/v1"),
            "https://u:***@h:1/v1"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:1234/v1"),
            "http://127.0.0.1:1234/v1"
        );
    }
}
