//! The price snapshot compiled into the crate.

/// LiteLLM's entries for Anthropic and OpenAI chat models (see `data/SOURCE.md`).
pub(crate) const JSON: &str = include_str!("../data/litellm-snapshot.json");

/// When the snapshot was taken (UTC).
pub const SNAPSHOT_DATE: &str = "2026-12-01";

/// Where the snapshot was taken from.
pub const SNAPSHOT_SOURCE: &str = "LiteLLM model_prices_and_context_window.json, release 1.110.2 \
     (models retired since then: release 1.80.0); providers anthropic and openai, modes chat and responses";
