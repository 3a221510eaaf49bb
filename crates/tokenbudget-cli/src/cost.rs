//! `tokenbudget cost`: what a usage of a model costs, from the price table, without touching
//! the database.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Map, Value};
use tokenbudget::prices::{self, format_picos, PriceTable, Usage};

use crate::failure::Failure;
use crate::output::Out;

#[derive(Debug, Args)]
pub struct CostArgs {
    /// The model: claude-sonnet-4-5, claude-sonnet-4-5-20250929, anthropic/…, gpt-4o, …
    #[arg(long, value_name = "M")]
    pub model: String,
    /// Fresh prompt tokens (neither written to nor read from the cache).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub input: u64,
    /// Generated tokens.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub output: u64,
    /// Prompt tokens read from the cache.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub cache_read: u64,
    /// Prompt tokens written to the 5 minute cache.
    #[arg(long = "cache-write-5m", value_name = "N", default_value_t = 0)]
    pub cache_write_5m: u64,
    /// Prompt tokens written to the 1 hour cache.
    #[arg(long = "cache-write-1h", value_name = "N", default_value_t = 0)]
    pub cache_write_1h: u64,
    /// A LiteLLM-format price file whose entries override the built-in prices, per model.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

pub fn run(args: CostArgs, out: &mut Out) -> Result<(), Failure> {
    let mut table = PriceTable::embedded();
    if let Some(path) = &args.prices {
        table = table.with_overrides(PriceTable::from_path(path).map_err(failure)?);
    }
    let usage = Usage {
        input: args.input,
        output: args.output,
        cache_write_5m: args.cache_write_5m,
        cache_write_1h: args.cache_write_1h,
        cache_read: args.cache_read,
    };
    let cost = table.price(&args.model, &usage).map_err(failure)?;

    if out.is_json() {
        let mut breakdown = Map::new();
        for line in &cost.lines {
            let picos = u64::try_from(line.picos)
                .map_err(|_| Failure::error("a line of this cost is too large for JSON"))?;
            breakdown.insert(
                line.kind.to_string(),
                json!({
                    "tokens": line.tokens,
                    "pico_usd_per_token": line.rate.picos(),
                    "pico_usd": picos,
                }),
            );
        }
        return out.emit(
            json!({
                "model": args.model,
                "priced_as": cost.model,
                "micro_usd": cost.total.micros(),
                "usd": cost.total.to_string(),
                "long_context_above": cost.tier_above_input_tokens,
                "snapshot_date": table.snapshot_date(),
                "breakdown": Value::Object(breakdown),
            }),
            String::new,
        );
    }

    let mut head = format!("{} for {}", cost.total, args.model);
    if cost.model != args.model {
        head.push_str(&format!(" (priced as {})", cost.model));
    }
    out.line(&head)?;
    for line in &cost.lines {
        out.line(&format!(
            "  {:<15}{:>12} tokens x {}/MTok = {}",
            line.kind.as_str(),
            line.tokens,
            line.rate.per_million_tokens(),
            format_picos(line.picos)
        ))?;
    }
    if let Some(threshold) = cost.tier_above_input_tokens {
        out.line(&format!(
            "  long-context rates: the input is above {threshold} tokens"
        ))?;
    }
    out.line(&format!(
        "  total rounded up to a micro-dollar; prices: {}",
        sources(&table, args.prices.is_some())
    ))
}

fn sources(table: &PriceTable, overridden: bool) -> String {
    let snapshot = table
        .snapshot_date()
        .map(|d| format!("snapshot of {d}"))
        .unwrap_or_default();
    if overridden {
        format!("--prices file over the {snapshot}")
    } else {
        snapshot
    }
}

/// Price errors are about the model or the price file, not the command line's shape: exit 1.
fn failure(e: prices::Error) -> Failure {
    Failure::error(e)
}
