//! Amounts of usage in a budget's unit: tokens counted, or dollars priced by the price table.

use tokenbudget_core::Unit;
use tokenbudget_prices::{PriceTable, Usage};

use crate::error::{Error, Result};

/// What `usage` costs on a budget counting in `unit`.
///
/// - `tokens`: every token the usage holds, input, cache writes, cache reads and output
///   alike (saturating, so an absurd usage is refused by the rules' range check).
/// - `usd`: the table's cost for `model`, exact, in micro-dollars rounded up once
///   ([`PriceTable::cost`]). No model is [`Error::ModelRequired`]; an unknown one is
///   [`Error::Price`], never a zero price.
///
/// ```
/// use tokenbudget::prices::{PriceTable, Usage};
/// use tokenbudget::{amount_for, Unit};
///
/// let prices = PriceTable::embedded();
/// let usage = Usage::new(1_000, 500);
/// assert_eq!(amount_for(Unit::Tokens, &prices, None, &usage)?, 1_500);
/// // claude-sonnet-4-5: $3 per million input tokens, $15 per million output tokens.
/// assert_eq!(amount_for(Unit::Usd, &prices, Some("claude-sonnet-4-5"), &usage)?, 10_500);
/// # Ok::<(), tokenbudget::Error>(())
/// ```
pub fn amount_for(
    unit: Unit,
    prices: &PriceTable,
    model: Option<&str>,
    usage: &Usage,
) -> Result<u64> {
    match unit {
        Unit::Tokens => Ok(usage.prompt_tokens().saturating_add(usage.output)),
        Unit::Usd => {
            let model = model.ok_or(Error::ModelRequired)?;
            Ok(prices.cost(model, usage)?.micros())
        }
    }
}
