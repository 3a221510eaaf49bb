//! `import claude-code --charge BUDGET`: each imported response's usage charged to a budget
//! once, keyed by the ledger's dedup key.
//!
//! The importer charges a batch before writing it with its checkpoint, so a kill between the
//! two re-reads the batch next run and charges it again with the same keys: the core answers
//! a repeated key with the first charge (nothing twice). A key whose usage grew since it was
//! charged (a response whose lines were split between two batches or two runs, the final
//! snapshot read later) conflicts with its first charge; the difference is then charged
//! under a chain of derived keys ([`top_up_key`]), each naming the amount charged before it,
//! so any number of imports, in any interleaving, end with the key's greatest amount charged
//! exactly once.
//!
//! Rule 6 (a response logged with and without its request id): the bare copy is not charged
//! when its sibling is in the same batch or already in the ledger (the importer asks the
//! store, [`tokenbudget_ledger::UsageStore::shadowed`]), and a bare copy charged earlier
//! counts towards its sibling's charge. # Note: two imports at once can still charge both
//! when one charges the bare copy after the other charged the sibling but before that
//! sibling's batch was written (the window between a batch's charge and its write).

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Serialize;
use tokenbudget::{BudgetId, CoreError, IdempotencyKey, TokenBudget, Unit};
use tokenbudget_ledger::{Charger, Error, Result, UsageRecord};

/// What `--charge` did, for the import summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChargeSummary {
    /// The budget charged.
    pub budget: String,
    /// Its unit (`tokens`, or `usd` in micro-dollars).
    pub unit: String,
    /// Responses charged now.
    pub charged: u64,
    /// Responses already charged with the same amount (a re-read): nothing changed.
    pub already_charged: u64,
    /// Responses that had been charged with less, topped up to their final usage.
    pub topped_up: u64,
    /// The amount charged now, in the budget's unit.
    pub amount: u64,
    /// Responses of models the price table does not price (usd budgets only): not charged,
    /// imported without a budget.
    pub unpriced: u64,
}

/// The key of the charge that follows `charged` already charged for `key` (pure): a hash of
/// the key (so it fits the core's 255 bytes whatever the key) and the amount before it.
pub fn top_up_key(key: &str, charged: u64) -> String {
    let hash = tokenbudget_ledger::checkpoint::hash_hex(key.as_bytes());
    format!("ledger-top-up:{}:{charged}", &hash[..32])
}

/// Charges responses to one budget through the facade.
pub struct BudgetCharger<'a> {
    budgets: &'a TokenBudget,
    budget: BudgetId,
    unit: Unit,
    summary: Mutex<ChargeSummary>,
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::storage(format!("charging: {e}"), false)
}

fn is_conflict(e: &tokenbudget::Error) -> bool {
    matches!(
        e,
        tokenbudget::Error::Core(CoreError::ChargeConflict { .. })
    )
}

impl<'a> BudgetCharger<'a> {
    /// A charger of `budget`, which must exist: [`CoreError::BudgetNotFound`] otherwise.
    pub async fn new(budgets: &'a TokenBudget, budget: &str) -> tokenbudget::Result<Self> {
        let id = BudgetId::new(budget)?;
        let status = budgets.status(&id).await?;
        Ok(Self {
            budgets,
            budget: id,
            unit: status.unit,
            summary: Mutex::new(ChargeSummary {
                budget: budget.to_owned(),
                unit: status.unit.to_string(),
                ..ChargeSummary::default()
            }),
        })
    }

    /// What was charged so far.
    pub fn summary(&self) -> ChargeSummary {
        self.summary.lock().clone()
    }

    /// The record's amount in the budget's unit; `None` when a usd budget cannot price it.
    fn amount(&self, r: &UsageRecord) -> Result<Option<u64>> {
        let usage = tokenbudget::prices::Usage {
            input: r.usage.input,
            output: r.usage.output,
            cache_write_5m: r.usage.cache_write_5m,
            cache_write_1h: r.usage.cache_write_1h,
            cache_read: r.usage.cache_read,
        };
        match tokenbudget::amount_for(self.unit, self.budgets.prices(), Some(&r.model), &usage) {
            Ok(amount) => Ok(Some(amount)),
            Err(tokenbudget::Error::Price(_)) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    /// What is charged under the keys that `key` shadows (its message id alone, rule 6).
    async fn bare_charged(&self, key: &str) -> Result<u64> {
        let mut total = 0u64;
        for (i, _) in key.match_indices(':') {
            let bare = &key[..i];
            if bare.is_empty() || !tokenbudget_ledger::dedup::shadows(key, bare) {
                continue;
            }
            let Ok(bare) = IdempotencyKey::new(bare) else {
                continue;
            };
            if let Some(c) = self.budgets.charge_by_key(&bare).await.map_err(storage)? {
                total = total.saturating_add(c.tokens);
            }
        }
        Ok(total)
    }

    /// Brings what is charged for `record` up to `amount`: returns what was charged now and
    /// whether anything had been charged before.
    async fn charge_one(&self, r: &UsageRecord, amount: u64) -> Result<(u64, bool)> {
        let note = Some(format!("ledger {} {}", r.source, r.model));
        let mut key = r.key.clone();
        // Rule 6: a bare copy of this response (its message id alone) charged in an earlier
        // batch or run is part of what this response was charged.
        let mut before = self.bare_charged(&r.key).await?;
        loop {
            if amount <= before {
                return Ok((0, true));
            }
            let idempotency = IdempotencyKey::new(key.clone()).map_err(storage)?;
            match self
                .budgets
                .charge(
                    &self.budget,
                    amount - before,
                    idempotency.clone(),
                    note.clone(),
                )
                .await
            {
                Ok(outcome) if outcome.replayed => return Ok((0, true)),
                Ok(_) => return Ok((amount - before, before > 0)),
                Err(e) if is_conflict(&e) => {
                    // Charged before with another amount: follow the chain.
                    let existing = self
                        .budgets
                        .charge_by_key(&idempotency)
                        .await
                        .map_err(storage)?
                        .ok_or_else(|| storage(e))?;
                    before = before.saturating_add(existing.tokens);
                    key = top_up_key(&r.key, before);
                }
                Err(e) => return Err(storage(e)),
            }
        }
    }
}

#[async_trait]
impl Charger for BudgetCharger<'_> {
    async fn charge(&self, records: &mut [UsageRecord]) -> Result<()> {
        for r in records.iter_mut() {
            let Some(amount) = self.amount(r)? else {
                self.summary.lock().unpriced += 1;
                continue;
            };
            let (now, before) = self.charge_one(r, amount).await?;
            r.budget = Some(self.budget.as_str().to_owned());
            let mut s = self.summary.lock();
            s.amount = s.amount.saturating_add(now);
            match (now > 0, before) {
                (true, false) => s.charged += 1,
                (true, true) => s.topped_up += 1,
                (false, _) => s.already_charged += 1,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_up_keys_are_printable_short_and_distinct_per_key_and_amount() {
        let long = "m".repeat(255);
        let keys = [
            top_up_key("msg_1:req_1", 0),
            top_up_key("msg_1:req_1", 10),
            top_up_key("msg_2:req_1", 10),
            top_up_key(&long, u64::MAX),
        ];
        for k in &keys {
            assert!(IdempotencyKey::new(k.clone()).is_ok(), "{k}");
            assert!(k.len() < 100);
        }
        let distinct: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(top_up_key("k", 5), top_up_key("k", 5));
    }
}
