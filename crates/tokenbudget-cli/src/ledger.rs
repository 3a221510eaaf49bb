//! The usage ledger for `import` and `usage`: opened by the same URL as the budgets, and the
//! price of a response.

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

/// List prices in nano-USD per token (= milli-USD per million tokens): input, output, 5-minute
/// cache writes, 1-hour cache writes, cache reads. The first entry whose name occurs in the
/// model wins, so more specific names come first.
///
/// # Note
///
/// A stand-in until the price crate (`tokenbudget-prices`, with the full table and its
/// updates) lands: reports call only [`cost`], which then delegates to it.
const PRICES: &[(&str, [u64; 5])] = &[
    ("opus-4-5", [5_000, 25_000, 6_250, 10_000, 500]),
    ("opus-4", [15_000, 75_000, 18_750, 30_000, 1_500]),
    ("claude-3-opus", [15_000, 75_000, 18_750, 30_000, 1_500]),
    ("sonnet-4", [3_000, 15_000, 3_750, 6_000, 300]),
    ("3-7-sonnet", [3_000, 15_000, 3_750, 6_000, 300]),
    ("3-5-sonnet", [3_000, 15_000, 3_750, 6_000, 300]),
    ("haiku-4-5", [1_000, 5_000, 1_250, 2_000, 100]),
    ("3-5-haiku", [800, 4_000, 1_000, 1_600, 80]),
    ("3-haiku", [250, 1_250, 300, 500, 30]),
];

/// A web search request: $10 per 1,000, in nano-USD.
const WEB_SEARCH: u64 = 10_000_000;

/// The cost of one response in micro-USD (rounded to the nearest), `None` for a model
/// without a price.
pub fn cost(model: &str, usage: &Usage) -> Option<u64> {
    let (_, p) = PRICES.iter().find(|(name, _)| model.contains(name))?;
    let nano = u128::from(usage.input) * u128::from(p[0])
        + u128::from(usage.output) * u128::from(p[1])
        + u128::from(usage.cache_write_5m) * u128::from(p[2])
        + u128::from(usage.cache_write_1h) * u128::from(p[3])
        + u128::from(usage.cache_read) * u128::from(p[4])
        + u128::from(usage.web_search_requests) * u128::from(WEB_SEARCH);
    u64::try_from((nano + 500) / 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // 3 + 15 + 3.75 + 6 + 0.30 + 0.01 dollars.
        assert_eq!(cost("claude-sonnet-4-5-20250929", &usage), Some(28_060_000));
        assert_eq!(cost("claude-opus-4-5-20251101", &usage), Some(46_760_000));
        assert_eq!(cost("claude-opus-4-1-20250805", &usage), Some(140_260_000));
        assert_eq!(cost("gpt-5", &usage), None);
    }
}
