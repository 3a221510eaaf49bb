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

/// A web search request: $10 per 1,000 (Anthropic's list price), in micro-USD.
const WEB_SEARCH_MICROS: u64 = 10_000;

/// The cost of one response in micro-USD from the embedded price table (its token kinds, the
/// long-context tier, rounded up once), plus its web search requests; `None` for a model the
/// table does not price, which reports show as unpriced rather than free.
pub fn cost(model: &str, usage: &Usage) -> Option<u64> {
    let priced = tokenbudget::prices::Usage {
        input: usage.input,
        output: usage.output,
        cache_write_5m: usage.cache_write_5m,
        cache_write_1h: usage.cache_write_1h,
        cache_read: usage.cache_read,
    };
    let tokens = tokenbudget::prices::PriceTable::embedded()
        .cost(model, &priced)
        .ok()?
        .micros();
    tokens.checked_add(usage.web_search_requests.checked_mul(WEB_SEARCH_MICROS)?)
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
        // 5 + 25 + 6.25 + 10 + 0.50 + 0.01 dollars.
        assert_eq!(cost("claude-opus-4-5-20251101", &usage), Some(46_760_000));
        assert_eq!(cost("not-a-model-anyone-prices", &usage), None);
    }
}
