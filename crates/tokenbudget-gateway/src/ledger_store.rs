//! The usage ledger as the gateway's [`LedgerSink`]: each settled response becomes one row
//! of `tokenbudget-ledger`, in the budgets' database, beside the rows imported from Claude
//! Code's transcripts.
//!
//! The row's key is the ledger's own ([`tokenbudget_ledger::dedup::key`]): the upstream's
//! message id with its request id. Claude Code writes the same two ids into its transcript,
//! so importing that transcript later merges with the gateway's row instead of counting the
//! response again; the ledger's merge rule keeps the more final usage of the two.

use async_trait::async_trait;
use tokenbudget_ledger::record::source;
use tokenbudget_ledger::{dedup, DynUsageStore, Usage, UsageRecord};

use crate::error::{Error, Result};
use crate::ledger::{LedgerRecord, LedgerSink, Settled};

/// Writes each record into a [`tokenbudget_ledger::UsageStore`].
#[derive(Debug, Clone)]
pub struct UsageLedger {
    store: DynUsageStore,
}

impl UsageLedger {
    /// A sink writing into `store`.
    pub fn new(store: DynUsageStore) -> Self {
        Self { store }
    }
}

/// The ledger row of a settled response, or `None` when nothing was used (the upstream
/// never accepted the request and the hold was rolled back).
///
/// - `key`: the message id with the request id when both exist, else the message id; a
///   response with neither (cut before its first event) gets `gateway:<reservation>`, unique
///   and stable across a retried write.
/// - Cache writes are split as the upstream split them (1-hour writes apart; the rest, and
///   everything from a source without the split, as 5-minute writes). `raw_usage` is the settled usage as JSON (the
///   gateway reads the upstream's events as they pass and keeps their counts, not the text).
/// - `estimated` and `budget` are the settlement's; `project` and `file` stay empty.
pub fn usage_record(r: &LedgerRecord) -> Option<UsageRecord> {
    if r.settled == Settled::RolledBack {
        return None;
    }
    let key = dedup::key(r.message_id.as_deref(), r.request_id.as_deref())
        .unwrap_or_else(|| format!("gateway:{}", r.reservation_id));
    Some(UsageRecord {
        key,
        source: source::GATEWAY.to_owned(),
        machine: String::new(),
        session_id: r.session_id.clone().unwrap_or_default(),
        project: String::new(),
        model: r.model.clone().unwrap_or_default(),
        timestamp: r.at.timestamp_micros(),
        usage: Usage {
            input: r.usage.input,
            output: r.usage.output,
            cache_write_5m: r.usage.cache_write.saturating_sub(r.usage.cache_write_1h),
            cache_write_1h: r.usage.cache_write_1h,
            cache_read: r.usage.cache_read,
            ..Usage::default()
        },
        raw_usage: serde_json::to_string(&r.usage).unwrap_or_default(),
        file: String::new(),
        offset: 0,
        estimated: r.estimated,
        budget: Some(r.budget_id.to_string()),
    })
}

#[async_trait]
impl LedgerSink for UsageLedger {
    fn usage_store(&self) -> Option<DynUsageStore> {
        Some(self.store.clone())
    }

    async fn record(&self, record: LedgerRecord) -> Result<()> {
        let Some(row) = usage_record(&record) else {
            return Ok(());
        };
        self.store
            .write(std::slice::from_ref(&row), None)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                // Storage may take it later: the gateway journals the record.
                tokenbudget_ledger::Error::Storage { .. } => {
                    Error::Store(format!("writing the ledger row {}: {e}", row.key))
                }
                _ => Error::Internal(format!("writing the ledger row {}: {e}", row.key)),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage as GatewayUsage;
    use chrono::TimeZone;

    fn record(settled: Settled, message: Option<&str>, request: Option<&str>) -> LedgerRecord {
        LedgerRecord {
            message_id: message.map(str::to_owned),
            request_id: request.map(str::to_owned),
            budget_id: "team".try_into().unwrap(),
            reservation_id: "0b7d1f5e-7c4b-4c1e-9a53-2f1f3f6c7a10".parse().unwrap(),
            key_id: "k1".into(),
            session_id: Some("s1".into()),
            model: Some("claude-sonnet-4-5".into()),
            usage: GatewayUsage {
                input: 10,
                cache_write: 20,
                cache_write_1h: 5,
                cache_read: 30,
                output: 40,
            },
            cost: 100,
            estimated: settled == Settled::Partial,
            settled,
            at: chrono::Utc.timestamp_opt(1_764_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn a_settled_response_becomes_one_row_keyed_as_its_transcript_line() {
        let row = usage_record(&record(Settled::Completed, Some("msg_1"), Some("req_1"))).unwrap();
        assert_eq!(row.key, "msg_1:req_1");
        assert_eq!(row.source, "gateway");
        assert_eq!(
            (row.session_id.as_str(), row.model.as_str()),
            ("s1", "claude-sonnet-4-5")
        );
        assert_eq!(row.timestamp, 1_764_000_000_000_000);
        let u = row.usage;
        assert_eq!(
            (
                u.input,
                u.cache_write_5m,
                u.cache_write_1h,
                u.cache_read,
                u.output
            ),
            (10, 15, 5, 30, 40)
        );
        assert_eq!(row.budget.as_deref(), Some("team"));
        assert!(!row.estimated);
        let raw: serde_json::Value = serde_json::from_str(&row.raw_usage).unwrap();
        assert_eq!(raw["output"], 40);
    }

    #[test]
    fn partial_rows_are_flagged_rollbacks_write_nothing_and_idless_rows_use_the_reservation() {
        let cut = usage_record(&record(Settled::Partial, None, None)).unwrap();
        assert!(cut.estimated);
        assert_eq!(cut.key, "gateway:0b7d1f5e-7c4b-4c1e-9a53-2f1f3f6c7a10");
        let no_request = usage_record(&record(Settled::Completed, Some("msg_2"), None)).unwrap();
        assert_eq!(no_request.key, "msg_2");
        assert_eq!(
            usage_record(&record(Settled::RolledBack, Some("m"), None)),
            None
        );
    }
}
