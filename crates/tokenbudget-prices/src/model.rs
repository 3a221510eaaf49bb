//! One model's prices: a rate per token kind, and long-context tiers.

use crate::money::PicoUsd;
use crate::usage::{TokenKind, Usage};

/// A price per token for each [`TokenKind`]; `None` where the table lists none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rates([Option<PicoUsd>; 5]);

impl Rates {
    /// The price per token of `kind`, if listed.
    pub const fn get(&self, kind: TokenKind) -> Option<PicoUsd> {
        self.0[kind.index()]
    }

    /// Sets the price per token of `kind`.
    pub fn set(&mut self, kind: TokenKind, price: PicoUsd) {
        self.0[kind.index()] = Some(price);
    }

    /// Sets the price per token of `kind`, builder style.
    pub fn with(mut self, kind: TokenKind, price: PicoUsd) -> Self {
        self.set(kind, price);
        self
    }

    /// Whether no kind has a price.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

/// Long-context rates: they apply once a request's input exceeds `above_input_tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tier {
    /// The threshold: the tier applies when [`Usage::prompt_tokens`] is strictly greater.
    pub above_input_tokens: u64,
    /// The tier's prices; a kind it does not list keeps the base price.
    pub rates: Rates,
}

/// A model's prices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ModelPrice {
    /// LiteLLM's `litellm_provider` (`anthropic`, `openai`, …), when the entry says.
    pub provider: Option<String>,
    /// Prices for requests under every tier's threshold.
    pub base: Rates,
    /// Long-context tiers, by ascending threshold.
    pub tiers: Vec<Tier>,
}

impl ModelPrice {
    /// A model with these base prices and no tiers.
    pub fn new(base: Rates) -> Self {
        ModelPrice {
            provider: None,
            base,
            tiers: Vec::new(),
        }
    }

    /// The tier a request with this usage is priced in: the one with the highest threshold
    /// below its input, or `None` for the base prices.
    ///
    /// # Behavior
    ///
    /// - The input measured is [`Usage::prompt_tokens`]: fresh input, cache writes and cache
    ///   reads (Anthropic's rule for its 200k tier). Output never counts.
    /// - A request exactly at a threshold stays below it (`> 200000`, not `>=`).
    pub fn tier_for(&self, usage: &Usage) -> Option<&Tier> {
        self.tier_for_prompt(usage.prompt_tokens())
    }

    /// The tier a request whose prompt is `prompt` tokens is priced in (see
    /// [`tier_for`](Self::tier_for)).
    pub fn tier_for_prompt(&self, prompt: u64) -> Option<&Tier> {
        self.tiers
            .iter()
            .filter(|t| prompt > t.above_input_tokens)
            .max_by_key(|t| t.above_input_tokens)
    }

    /// The price per token of `kind` for a request with this usage: the tier's where it lists
    /// one, else the base price.
    pub fn rate(&self, kind: TokenKind, usage: &Usage) -> Option<PicoUsd> {
        self.tier_for(usage)
            .and_then(|t| t.rates.get(kind))
            .or_else(|| self.base.get(kind))
    }
}
