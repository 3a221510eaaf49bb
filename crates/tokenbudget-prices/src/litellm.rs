//! Reading LiteLLM's `model_prices_and_context_window.json`.
//!
//! The file is one object: model name → entry. The fields read are `mode`,
//! `litellm_provider` and the per-token prices below, each optionally suffixed with
//! `_above_<N>k_tokens` for a long-context tier:
//!
//! | LiteLLM field | kind |
//! |---|---|
//! | `input_cost_per_token` | input |
//! | `output_cost_per_token` | output |
//! | `cache_creation_input_token_cost` | cache_write_5m |
//! | `cache_creation_input_token_cost_above_1hr` | cache_write_1h |
//! | `cache_read_input_token_cost` | cache_read |
//!
//! Everything else (context sizes, `supports_*`, batch/flex/priority prices, per-image or
//! per-second prices) is ignored.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::model::{ModelPrice, Rates, Tier};
use crate::money::PicoUsd;
use crate::usage::TokenKind;

/// An entry: its prices, or why they were rejected.
pub(crate) type Entry = std::result::Result<ModelPrice, Error>;

/// The modes that are priced per text token.
const MODES: [&str; 2] = ["chat", "responses"];

const FIELDS: [(&str, TokenKind); 5] = [
    // Longest first: `cache_creation_input_token_cost` is a prefix of the 1 hour field.
    (
        "cache_creation_input_token_cost_above_1hr",
        TokenKind::CacheWrite1h,
    ),
    ("cache_creation_input_token_cost", TokenKind::CacheWrite5m),
    ("cache_read_input_token_cost", TokenKind::CacheRead),
    ("input_cost_per_token", TokenKind::Input),
    ("output_cost_per_token", TokenKind::Output),
];

/// The entries of a LiteLLM price file, keyed by model name as written.
///
/// # Behavior
///
/// - The text must be a JSON object; anything else is [`Error::InvalidFile`].
/// - An entry whose value is not an object, or whose `mode` is present and is not `chat` or
///   `responses` (`embedding`, `image_generation`, the `sample_spec` entry, …), is skipped.
///   An entry without `mode` is kept, so hand-written overrides need not say it.
/// - An entry with a price that is not an exact whole number of pico-dollars is kept as its
///   [`Error::InvalidPrice`]: the file still loads, and pricing that model reports why.
/// - An entry with no per-token price at all is skipped.
pub(crate) fn parse(text: &str, source_name: Option<&str>) -> Result<BTreeMap<String, Entry>> {
    let invalid = |reason: String| Error::InvalidFile {
        source_name: source_name.map(str::to_owned),
        reason,
    };
    let top: BTreeMap<String, &RawValue> = serde_json::from_str(text)
        .map_err(|e| invalid(format!("expected a JSON object of model entries: {e}")))?;
    let mut entries = BTreeMap::new();
    for (model, raw) in top {
        let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
            continue; // not an object
        };
        let mode = string_field(&fields, "mode");
        if fields.contains_key("mode") && !mode.as_deref().is_some_and(|m| MODES.contains(&m)) {
            continue;
        }
        match entry(&model, &fields) {
            Ok(Some(price)) => {
                entries.insert(model, Ok(price));
            }
            Ok(None) => {}
            Err(e) => {
                entries.insert(model, Err(e));
            }
        }
    }
    Ok(entries)
}

fn string_field(fields: &BTreeMap<String, &RawValue>, name: &str) -> Option<String> {
    fields
        .get(name)
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
}

/// A price field's kind and tier threshold, if `field` is one.
fn price_field(field: &str) -> Option<(TokenKind, Option<u64>)> {
    let (base, threshold) = match field.strip_suffix("k_tokens").and_then(|f| {
        let at = f.rfind("_above_")?;
        let n: u64 = f[at + "_above_".len()..].parse().ok()?;
        Some((&f[..at], n.checked_mul(1000)?))
    }) {
        Some((base, n)) => (base, Some(n)),
        None => (field, None),
    };
    FIELDS
        .iter()
        .find(|(name, _)| *name == base)
        .map(|(_, kind)| (*kind, threshold))
}

fn entry(model: &str, fields: &BTreeMap<String, &RawValue>) -> Result<Option<ModelPrice>> {
    let mut base = Rates::default();
    let mut tiers: BTreeMap<u64, Rates> = BTreeMap::new();
    for (field, raw) in fields {
        let Some((kind, threshold)) = price_field(field) else {
            continue;
        };
        let text = raw.get();
        if text == "null" {
            continue;
        }
        let price = PicoUsd::from_json_number(text).map_err(|e| Error::InvalidPrice {
            model: model.to_owned(),
            field: field.clone(),
            text: text.to_owned(),
            reason: e.reason("pico-dollars per token"),
        })?;
        match threshold {
            None => base.set(kind, price),
            Some(n) => tiers.entry(n).or_default().set(kind, price),
        }
    }
    if base.is_empty() && tiers.is_empty() {
        return Ok(None);
    }
    Ok(Some(ModelPrice {
        provider: string_field(fields, "litellm_provider"),
        base,
        tiers: tiers
            .into_iter()
            .map(|(above_input_tokens, rates)| Tier {
                above_input_tokens,
                rates,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_map_to_kinds_and_tiers() {
        let cases = [
            ("input_cost_per_token", Some((TokenKind::Input, None))),
            (
                "input_cost_per_token_above_200k_tokens",
                Some((TokenKind::Input, Some(200_000))),
            ),
            (
                "cache_creation_input_token_cost_above_1hr",
                Some((TokenKind::CacheWrite1h, None)),
            ),
            (
                "cache_creation_input_token_cost_above_1hr_above_200k_tokens",
                Some((TokenKind::CacheWrite1h, Some(200_000))),
            ),
            (
                "cache_creation_input_token_cost_above_200k_tokens",
                Some((TokenKind::CacheWrite5m, Some(200_000))),
            ),
            (
                "output_cost_per_token_above_272k_tokens",
                Some((TokenKind::Output, Some(272_000))),
            ),
            (
                "cache_read_input_token_cost",
                Some((TokenKind::CacheRead, None)),
            ),
            ("input_cost_per_token_batches", None),
            ("output_cost_per_token_above_272k_tokens_priority", None),
            ("cache_creation_input_token_cost_above_12hr", None),
            ("input_cost_per_token_above_k_tokens", None),
            ("output_cost_per_reasoning_token", None),
            ("max_input_tokens", None),
        ];
        for (field, want) in cases {
            assert_eq!(price_field(field), want, "{field}");
        }
    }
}
