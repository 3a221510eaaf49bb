//! The price table: layers of LiteLLM entries, searched with the aliases users type.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::cost::{self, Cost};
use crate::error::{Error, Result};
use crate::litellm::{self, Entry};
use crate::model::ModelPrice;
use crate::money::MicroUsd;
use crate::resolve;
use crate::snapshot;
use crate::usage::Usage;

/// One loaded price file.
struct Layer {
    /// Lowercased name → (name as written, entry).
    models: BTreeMap<String, (String, Entry)>,
    snapshot_date: Option<&'static str>,
}

/// A summary: a table's entries would fill a screen in a gateway's state.
impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer")
            .field("models", &self.models.len())
            .field("snapshot_date", &self.snapshot_date)
            .finish()
    }
}

impl Layer {
    fn parse(text: &str, source_name: Option<&str>) -> Result<Self> {
        let models = litellm::parse(text, source_name)?
            .into_iter()
            .map(|(name, entry)| (name.to_ascii_lowercase(), (name, entry)))
            .collect();
        Ok(Layer {
            models,
            snapshot_date: None,
        })
    }

    /// The entry answering to `model` in this layer, under any alias.
    fn find(&self, model: &str) -> Option<&(String, Entry)> {
        let names = resolve::candidates(model);
        names
            .iter()
            .find_map(|n| self.models.get(n))
            .or_else(|| names.iter().find_map(|base| self.newest_dated(base)))
            .or_else(|| resolve::latest_alias(model).and_then(|n| self.models.get(&n)))
    }

    /// The entry of `base` plus the latest date suffix, if any.
    fn newest_dated(&self, base: &str) -> Option<&(String, Entry)> {
        let prefix = format!("{base}-");
        self.models
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, v)| resolve::dated_version_of(k, base).map(|date| (date, v)))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, v)| v)
    }
}

/// Prices per token for many models, and what a request's usage costs.
///
/// A table is a stack of loaded price files. [`PriceTable::embedded`] is the snapshot built
/// into the crate; [`PriceTable::with_overrides`] puts another file on top.
///
/// # Behavior
///
/// - [`resolve`](Self::resolve) searches the layers from the top: the first layer with an
///   entry for the name, under any alias (see below), answers, so an override of
///   `claude-sonnet-4-5` also prices `claude-sonnet-4-5-20250929` and
///   `anthropic/claude-sonnet-4-5`. An override replaces the model's whole entry, never
///   single prices.
/// - Aliases: names are matched case-insensitively; `anthropic/`, `openai/`, `bedrock/`,
///   `vertex_ai/` prefixes, Bedrock ids (`us.anthropic.…-v1:0`) and Vertex ids (`…@20250929`)
///   are read as the plain model id; Claude names may use dots (`claude-sonnet-4.5`); a dated
///   id falls back to its undated alias, a `-latest` id to the id without it, and an undated
///   id to its newest dated entry, then to its `-latest` alias.
/// - A name no layer answers is [`Error::UnknownModel`] with up to three close names, never a
///   zero price. An entry rejected at load (a price that is not exact) is its
///   [`Error::InvalidPrice`].
///
/// # Note
///
/// Bedrock and Vertex names are priced at the Anthropic entry of the same model, which is the
/// providers' global price; regional endpoints that charge more need an override.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Highest priority first.
    layers: Vec<Arc<Layer>>,
}

/// A model name resolved to a table entry.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// The entry's name, as the price file writes it.
    pub name: &'a str,
    /// Its prices.
    pub price: &'a ModelPrice,
}

impl PriceTable {
    /// The snapshot compiled into the crate: LiteLLM's prices for Anthropic and OpenAI chat
    /// models, taken on [`SNAPSHOT_DATE`](crate::SNAPSHOT_DATE).
    pub fn embedded() -> PriceTable {
        static EMBEDDED: OnceLock<Arc<Layer>> = OnceLock::new();
        let layer = EMBEDDED.get_or_init(|| {
            // The snapshot is part of the crate and a test parses it: failing here is a bug in
            // the build, not bad input.
            let mut layer = Layer::parse(snapshot::JSON, Some("(embedded snapshot)"))
                .expect("the embedded price snapshot parses");
            layer.snapshot_date = Some(snapshot::SNAPSHOT_DATE);
            Arc::new(layer)
        });
        PriceTable {
            layers: vec![Arc::clone(layer)],
        }
    }

    /// A table of the entries of a LiteLLM `model_prices_and_context_window.json` text (or any
    /// JSON object in its format).
    ///
    /// # Behavior
    ///
    /// - Fails with [`Error::InvalidFile`] only when the text is not a JSON object.
    /// - Entries that are not chat models, and fields that are not per-token prices, are
    ///   ignored; entries with an inexact price are kept as errors for that model alone.
    pub fn from_litellm_json(text: &str) -> Result<PriceTable> {
        Self::parse(text, None)
    }

    /// [`from_litellm_json`](Self::from_litellm_json) of a file; [`Error::Io`] when it cannot
    /// be read.
    pub fn from_path(path: impl AsRef<Path>) -> Result<PriceTable> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, Some(&path.display().to_string()))
    }

    fn parse(text: &str, source_name: Option<&str>) -> Result<PriceTable> {
        Ok(PriceTable {
            layers: vec![Arc::new(Layer::parse(text, source_name)?)],
        })
    }

    /// This table with `overrides` on top: a model that `overrides` resolves is priced by it
    /// alone; every other model as before.
    pub fn with_overrides(self, overrides: PriceTable) -> PriceTable {
        let mut layers = overrides.layers;
        layers.extend(self.layers);
        PriceTable { layers }
    }

    /// The date of the embedded snapshot, when this table includes it; `None` for a table
    /// loaded only from JSON.
    pub fn snapshot_date(&self) -> Option<&str> {
        self.layers.iter().find_map(|l| l.snapshot_date)
    }

    /// The entry that prices `model`.
    pub fn resolve(&self, model: &str) -> Result<Resolved<'_>> {
        for layer in &self.layers {
            if let Some((name, entry)) = layer.find(model) {
                return match entry {
                    Ok(price) => Ok(Resolved { name, price }),
                    Err(e) => Err(e.clone()),
                };
            }
        }
        Err(Error::UnknownModel {
            model: model.to_owned(),
            suggestions: resolve::suggestions(model, self.names()),
        })
    }

    /// What `usage` of `model` costs, rounded up to a whole micro-dollar (see [`Cost`]).
    pub fn cost(&self, model: &str, usage: &Usage) -> Result<MicroUsd> {
        self.price(model, usage).map(|c| c.total)
    }

    /// What `usage` of `model` costs, with the exact amount of each token kind.
    pub fn price(&self, model: &str, usage: &Usage) -> Result<Cost> {
        let resolved = self.resolve(model)?;
        cost::compute(resolved.name, resolved.price, usage)
    }

    /// What `usage` costs when it is the sum of several requests whose prompts all fall in
    /// the tier a prompt of `prompt_tokens` falls in (see [`ModelPrice::tier_for_prompt`]):
    /// the rates of that tier, whatever the summed prompt. Each kind's amount is exact in
    /// [`Cost::lines`]; `total` is rounded up once, for the whole sum.
    ///
    /// This is how the usage ledger prices usage summed in the database: it groups responses
    /// by [`tier_thresholds`](Self::tier_thresholds) first, so each group is in one tier of
    /// every model.
    pub fn price_summed(&self, model: &str, usage: &Usage, prompt_tokens: u64) -> Result<Cost> {
        let resolved = self.resolve(model)?;
        cost::compute_at(resolved.name, resolved.price, usage, prompt_tokens)
    }

    /// Every long-context threshold of every entry, ascending, each once: within two
    /// consecutive thresholds, every model prices a request in the same tier.
    pub fn tier_thresholds(&self) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .layers
            .iter()
            .flat_map(|l| l.models.values())
            .filter_map(|(_, entry)| entry.as_ref().ok())
            .flat_map(|price| price.tiers.iter().map(|t| t.above_input_tokens))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every model name the table prices (each name once, from the layer that answers it),
    /// in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for layer in self.layers.iter().rev() {
            for (lower, (name, _)) in &layer.models {
                seen.insert(lower, name);
            }
        }
        seen.into_values()
    }

    /// The number of distinct model names.
    pub fn len(&self) -> usize {
        self.names().count()
    }

    /// Whether the table prices no model.
    pub fn is_empty(&self) -> bool {
        self.layers.iter().all(|l| l.models.is_empty())
    }
}

impl Default for PriceTable {
    /// The embedded snapshot.
    fn default() -> Self {
        PriceTable::embedded()
    }
}
