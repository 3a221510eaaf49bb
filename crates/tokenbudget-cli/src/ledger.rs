//! The usage ledger for `import` and `usage`: opened by the same URL as the budgets, and the
//! price of a response from `tokenbudget-prices`.

use tokenbudget_ledger::{DynUsageStore, Usage};

use crate::failure::Failure;

/// The ledger in the database `url` names (the budgets' database).
pub async fn open(url: &str) -> Result<DynUsageStore, Failure> {
    let trimmed = url.trim();
    let lower = trimmed.to_ascii_lowercase();
    let what = || format!("opening the usage ledger at {}", tokenbudget::redact(url));
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let store = tokenbudget_postgres::PostgresUsageStore::open(trimmed)
                .await
                .map_err(|e| Failure::from(e).context(what()))?;
            return Ok(std::sync::Arc::new(store));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(Failure::usage(
            "feature `postgres` is not enabled in this build",
        ));
    }
    if let Some((scheme, _)) = trimmed.split_once("://") {
        if !scheme.eq_ignore_ascii_case("sqlite") {
            return Err(Failure::usage(format!(
                "{scheme}:// is not a database the ledger knows (sqlite:// or postgres://)"
            )));
        }
    }
    #[cfg(feature = "sqlite")]
    {
        let store = tokenbudget_sqlite::SqliteUsageStore::open(trimmed)
            .await
            .map_err(|e| Failure::error(e).context(what()))?;
        Ok(std::sync::Arc::new(store))
    }
    #[cfg(not(feature = "sqlite"))]
    Err(Failure::usage(
        "feature `sqlite` is not enabled in this build",
    ))
}

/// A web search request: $10 per 1,000 (Anthropic's list price), in pico-USD.
const WEB_SEARCH_PICOS: u128 = 10_000_000_000;

/// The long-context thresholds of the embedded price table, for
/// [`AggregateQuery::prompt_tiers`](tokenbudget_ledger::AggregateQuery::prompt_tiers).
pub fn tier_thresholds() -> Vec<u64> {
    tokenbudget::prices::PriceTable::embedded().tier_thresholds()
}

/// The exact cost in pico-USD of usage summed over responses of `model` whose prompts are all
/// above the tier threshold `prompt_above` (and below the next one), from the embedded price
/// table (its token kinds at that tier's rates), plus its web search requests; `None` for a
/// model the table does not price, which reports show as unpriced rather than free.
pub fn cost(model: &str, usage: &Usage, prompt_above: Option<u64>) -> Option<u128> {
    let priced = tokenbudget::prices::Usage {
        input: usage.input,
        output: usage.output,
        cache_write_5m: usage.cache_write_5m,
        cache_write_1h: usage.cache_write_1h,
        cache_read: usage.cache_read,
    };
    // A prompt one token above the threshold is priced in that threshold's tier.
    let prompt = prompt_above.map_or(0, |t| t.saturating_add(1));
    let tokens: u128 = tokenbudget::prices::PriceTable::embedded()
        .price_summed(model, &priced, prompt)
        .ok()?
        .lines
        .iter()
        .map(|l| l.picos)
        .sum();
    tokens.checked_add(u128::from(usage.web_search_requests).checked_mul(WEB_SEARCH_PICOS)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PICOS_PER_MICRO: u128 = 1_000_000;

    /// [`cost`] of one response, in micro-USD rounded up.
    fn cost_of_one(model: &str, usage: &Usage) -> Option<u64> {
        let prompt = tokenbudget_ledger::aggregate::prompt_tokens(usage);
        let tiers = tier_thresholds();
        let picos = cost(
            model,
            usage,
            tokenbudget_ledger::aggregate::tier_of(prompt, &tiers),
        )?;
        u64::try_from(picos.div_ceil(PICOS_PER_MICRO)).ok()
    }

    #[test]
    fn costs_of_known_and_unknown_models() {
        let usage = Usage {
            input: 1_000_000,
            output: 1_000_000,
            cache_write_5m: 1_000_000,
            cache_write_1h: 1_000_000,
            cache_read: 1_000_000,
            web_search_requests: 1,
            web_fetch_requests: 0,
        };
        let micros = |c: Option<u128>| c.map(|p| p / PICOS_PER_MICRO);
        // Summed usage (5 M prompt tokens) priced in the base tier: 3 + 15 + 3.75 + 6 + 0.30
        // + 0.01 dollars.
        assert_eq!(
            micros(cost("claude-sonnet-4-5-20250929", &usage, None)),
            Some(28_060_000)
        );
        // 5 + 25 + 6.25 + 10 + 0.50 + 0.01 dollars.
        assert_eq!(
            micros(cost("claude-opus-4-5-20251101", &usage, None)),
            Some(46_760_000)
        );
        assert_eq!(cost("not-a-model-anyone-prices", &usage, None), None);
        // The same usage as one request is above 200k: Sonnet 4's long-context rates (its
        // entry lists no 1-hour write rate above 200k, so that kind keeps its base rate):
        // 6 + 22.5 + 7.5 + 6 + 0.60 + 0.01 dollars.
        assert!(tier_thresholds().contains(&200_000));
        assert_eq!(
            cost_of_one("claude-sonnet-4-20250514", &usage),
            Some(42_610_000)
        );
        assert_eq!(
            micros(cost("claude-sonnet-4-20250514", &usage, Some(200_000))),
            Some(42_610_000)
        );
        assert_eq!(
            micros(cost("claude-sonnet-4-20250514", &usage, None)),
            Some(28_060_000)
        );
    }
}
