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
//! store, [`tokenbudget_ledger::UsageStore::shadowed`]). Two imports at once can see neither:
//! one charges the sibling while the other, before the sibling's batch is written, charges
//! the bare copy. The budget store decides that race, not the ledger: before charging a
//! sibling, the importer **claims** the bare key with a charge of 0 tokens under it (and
//! under each link of the bare key's top-up chain). The core records one charge per key, so
//! exactly one of the two wins: a claim recorded first makes the bare copy's charge a
//! conflict with a claim (nothing charged), and a bare charge recorded first makes the claim
//! a conflict that counts the bare charge towards the sibling's ([`BudgetCharger::claim`]).
//! A real response is never charged 0 (nothing is charged when nothing is owed), so a 0
//! under a key is always a claim. # Note: two responses of one message id (two request ids,
//! rule 4) whose bare copy was charged before either each count the bare charge as theirs.

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

    /// Claims every key that `key` shadows (its message id alone, rule 6) for `key`, so that
    /// a bare copy read later, by this import or another one running at once, charges
    /// nothing; returns what the bare copies had been charged before the claim (which counts
    /// towards `key`'s charge).
    async fn claim(&self, key: &str) -> Result<u64> {
        let mut total = 0u64;
        for bare in tokenbudget_ledger::dedup::shadowed_by(key) {
            // Walk the bare key's chain to its first free link and put a 0 there.
            let mut link = bare.to_owned();
            let mut charged = 0u64;
            loop {
                let Ok(idempotency) = IdempotencyKey::new(link.clone()) else {
                    break;
                };
                match self.charge_key(idempotency.clone(), 0, bare).await? {
                    Charged::Recorded | Charged::Replayed => break,
                    Charged::Conflict(0) => break, // claimed by a sibling before
                    Charged::Conflict(tokens) => {
                        charged = charged.saturating_add(tokens);
                        link = top_up_key(bare, charged);
                    }
                }
            }
            total = total.saturating_add(charged);
        }
        Ok(total)
    }

    /// One charge of `tokens` under `key` on the budget.
    async fn charge_key(&self, key: IdempotencyKey, tokens: u64, of: &str) -> Result<Charged> {
        let note = Some(if tokens == 0 {
            format!("ledger claim of {of}")
        } else {
            format!("ledger {of}")
        });
        match self
            .budgets
            .charge(&self.budget, tokens, key.clone(), note)
            .await
        {
            Ok(outcome) if outcome.replayed => Ok(Charged::Replayed),
            Ok(_) => Ok(Charged::Recorded),
            Err(e) if is_conflict(&e) => {
                let existing = self
                    .budgets
                    .charge_by_key(&key)
                    .await
                    .map_err(storage)?
                    .ok_or_else(|| storage(e))?;
                Ok(Charged::Conflict(existing.tokens))
            }
            Err(e) => Err(storage(e)),
        }
    }

    /// Brings what is charged for `record` up to `amount`: returns what was charged now and
    /// whether anything had been charged before (or a sibling claimed it: nothing to do).
    async fn charge_one(&self, r: &UsageRecord, amount: u64) -> Result<(u64, bool)> {
        // Rule 6: claim the bare copies of this response first; what they were charged
        // before is part of what this response was charged.
        let mut before = self.claim(&r.key).await?;
        let mut key = r.key.clone();
        let of = format!("{} {}", r.source, r.model);
        loop {
            if amount <= before {
                return Ok((0, true));
            }
            let idempotency = IdempotencyKey::new(key.clone()).map_err(storage)?;
            match self.charge_key(idempotency, amount - before, &of).await? {
                Charged::Replayed => return Ok((0, true)),
                Charged::Recorded => return Ok((amount - before, before > 0)),
                // A sibling with a request id claimed this bare key: it is that response.
                Charged::Conflict(0) => return Ok((0, true)),
                Charged::Conflict(tokens) => {
                    // Charged before with another amount: follow the chain.
                    before = before.saturating_add(tokens);
                    key = top_up_key(&r.key, before);
                }
            }
        }
    }
}

/// What one charge under a key did.
enum Charged {
    /// Recorded now.
    Recorded,
    /// The same charge was recorded before.
    Replayed,
    /// Another amount (the one given; 0 is a claim) was recorded under the key before.
    Conflict(u64),
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

    /// A ledger whose first write waits until it is released (after telling that it began):
    /// an import held between its batch's charge and its write.
    #[derive(Debug)]
    struct Held {
        inner: tokenbudget_ledger::DynUsageStore,
        entered: tokio::sync::Notify,
        release: tokio::sync::Notify,
        held: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl tokenbudget_ledger::UsageStore for Held {
        async fn write(
            &self,
            records: &[UsageRecord],
            checkpoint: Option<&tokenbudget_ledger::Checkpoint>,
        ) -> Result<tokenbudget_ledger::WriteSummary> {
            if !self.held.swap(true, std::sync::atomic::Ordering::SeqCst) {
                self.entered.notify_one();
                self.release.notified().await;
            }
            self.inner.write(records, checkpoint).await
        }
        async fn shadowed(&self, keys: &[String]) -> Result<std::collections::BTreeSet<String>> {
            self.inner.shadowed(keys).await
        }
        async fn checkpoint(&self, file: &str) -> Result<Option<tokenbudget_ledger::Checkpoint>> {
            self.inner.checkpoint(file).await
        }
        async fn checkpoints(&self) -> Result<Vec<tokenbudget_ledger::Checkpoint>> {
            self.inner.checkpoints().await
        }
        async fn records(
            &self,
            query: &tokenbudget_ledger::RecordQuery,
        ) -> Result<Vec<UsageRecord>> {
            self.inner.records(query).await
        }
        async fn aggregate(
            &self,
            query: &tokenbudget_ledger::AggregateQuery,
        ) -> Result<Vec<tokenbudget_ledger::AggregateRow>> {
            self.inner.aggregate(query).await
        }
    }

    fn line(id: &str, with_request_id: bool) -> String {
        let request = if with_request_id {
            r#""requestId":"req_w","#
        } else {
            ""
        };
        format!(
            r#"{{"sessionId":"s-w","type":"assistant",{request}"timestamp":"2026-11-02T10:00:00.000Z","message":{{"id":"msg_{id}","model":"claude-sonnet-4-5-20250929","usage":{{"input_tokens":1000,"output_tokens":100}}}}}}"#
        ) + "\n"
    }

    fn files(
        dir: &std::path::Path,
        name: &str,
        text: &str,
    ) -> Vec<tokenbudget_ledger::discover::SourceFile> {
        let project = dir.join(name).join("proj");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("s.jsonl"), text).unwrap();
        tokenbudget_ledger::discover::discover(&dir.join(name), "").unwrap()
    }

    /// Two imports at once, each with one line of one response (rule 6: one with the request
    /// id, one without): the first is held between its charge and its write while the second
    /// runs to the end. Charged once, whichever line is held.
    async fn concurrent_rule_6_charges_once(db: &str) {
        let dir = tempfile::tempdir().unwrap();
        let budgets = TokenBudget::builder()
            .url(db)
            .sweep_every(None)
            .build()
            .await
            .unwrap();
        let ledger = crate::ledger::open(db).await.unwrap();
        for (budget, held_with_request_id) in [("window-a", true), ("window-b", false)] {
            budgets.create_workflow(budget, 1_000_000).await.unwrap();
            let held_files = files(
                dir.path(),
                &format!("{budget}-held"),
                &line(budget, held_with_request_id),
            );
            let other_files = files(
                dir.path(),
                &format!("{budget}-other"),
                &line(budget, !held_with_request_id),
            );
            let held = Held {
                inner: ledger.clone(),
                entered: tokio::sync::Notify::new(),
                release: tokio::sync::Notify::new(),
                held: false.into(),
            };
            let first = BudgetCharger::new(&budgets, budget).await.unwrap();
            let second = BudgetCharger::new(&budgets, budget).await.unwrap();
            let options = tokenbudget_ledger::ImportOptions::default();
            let (mut quiet_a, mut quiet_b) = (|_| {}, |_| {});
            let a = tokenbudget_ledger::import::import_charging(
                &held,
                &held_files,
                options,
                Some(&first),
                &mut quiet_a,
            );
            let b = async {
                held.entered.notified().await;
                let done = tokenbudget_ledger::import::import_charging(
                    &*ledger,
                    &other_files,
                    options,
                    Some(&second),
                    &mut quiet_b,
                )
                .await;
                held.release.notify_one();
                done
            };
            let (a, b) = tokio::join!(a, b);
            assert_eq!(a.unwrap().usage_lines, 1);
            assert_eq!(b.unwrap().usage_lines, 1);
            let used = budgets.status(budget).await.unwrap().used;
            assert_eq!(used, 1_100, "{budget}: one response, charged once");
            let amounts = first.summary().amount + second.summary().amount;
            assert_eq!(
                amounts,
                1_100,
                "{budget}: {:?} {:?}",
                first.summary(),
                second.summary()
            );
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn concurrent_imports_charge_a_response_logged_twice_once_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("w.db").display());
        runtime().block_on(concurrent_rule_6_charges_once(&db));
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn concurrent_imports_charge_a_response_logged_twice_once_on_postgres() {
        let base = std::env::var("TOKENBUDGET_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("tb_window_{}", uuid::Uuid::new_v4().simple());
        runtime().block_on(async {
            let admin = match tokio_postgres::connect(&base, tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    client
                }
                Err(e) => {
                    assert!(
                        std::env::var("CI").as_deref() != Ok("true"),
                        "Postgres is unreachable under CI=true: {e}"
                    );
                    eprintln!("\n!!!! SKIPPED: PostgreSQL unreachable at {base}: {e}\n");
                    return;
                }
            };
            concurrent_rule_6_charges_once(&format!("{base}?schema={schema}")).await;
            admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .unwrap();
        });
    }
}
