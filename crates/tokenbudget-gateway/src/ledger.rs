//! The seam where each response's ledger record is written (the ledger issue plugs in here).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokenbudget::{BudgetId, ReservationId};

use crate::error::Result;
use crate::usage::Usage;

/// How a request ended, as settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// The response completed: its reported usage was committed.
    Completed,
    /// The upstream never accepted the request: the hold was rolled back.
    RolledBack,
    /// Cut, errored, timed out or abandoned mid-response: the usage known so far was
    /// committed, flagged estimated.
    Partial,
}

/// One response's record. The ledger's dedup key is (`message_id`, `request_id`): the same
/// pair imported later from a Claude Code transcript must add nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// The upstream's message id (`msg_…`, `chatcmpl-…`), when it sent one.
    pub message_id: Option<String>,
    /// The upstream's `request-id` (Anthropic) or `x-request-id` (OpenAI) header.
    pub request_id: Option<String>,
    /// The budget that paid.
    pub budget_id: BudgetId,
    /// The reservation settled.
    pub reservation_id: ReservationId,
    /// The gateway key's public id.
    pub key_id: String,
    /// The Claude Code session, when known.
    pub session_id: Option<String>,
    /// The model that answered (or was asked for).
    pub model: Option<String>,
    /// The usage settled.
    pub usage: Usage,
    /// The amount committed, in the budget's unit: tokens times weights, or micro-dollars
    /// priced by the price table (0 for a rollback).
    pub cost: u64,
    /// True when some of the usage was estimated (a cut stream).
    pub estimated: bool,
    /// How the request ended.
    pub settled: Settled,
    /// When it was settled.
    pub at: DateTime<Utc>,
}

/// Where ledger records go. Called once per request, after its settlement.
#[async_trait]
pub trait LedgerSink: Send + Sync + std::fmt::Debug {
    /// Writes `record`; writing the same (`message_id`, `request_id`) twice must add nothing.
    ///
    /// # Errors
    /// [`Error::Store`](crate::Error::Store) when the ledger's storage did not take the
    /// record (the gateway then journals it and writes it again later); any other error
    /// is final and only logged.
    async fn record(&self, record: LedgerRecord) -> Result<()>;

    /// The usage ledger this sink writes into, when it is one the dashboard can read
    /// (`/dashboard` then shows its usage history). Defaults to `None`.
    fn usage_store(&self) -> Option<tokenbudget_ledger::DynUsageStore> {
        None
    }
}

/// No ledger: records are only logged.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLedger;

#[async_trait]
impl LedgerSink for NoLedger {
    async fn record(&self, record: LedgerRecord) -> Result<()> {
        tracing::debug!(
            message_id = record.message_id.as_deref().unwrap_or(""),
            request_id = record.request_id.as_deref().unwrap_or(""),
            budget = %record.budget_id,
            cost = record.cost,
            estimated = record.estimated,
            "settled"
        );
        Ok(())
    }
}

/// Keeps every record in memory (tests, and a reference for the real ledger).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    records: std::sync::Mutex<Vec<LedgerRecord>>,
}

impl MemoryLedger {
    /// Every record written so far.
    pub fn records(&self) -> Vec<LedgerRecord> {
        match self.records.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

#[async_trait]
impl LedgerSink for MemoryLedger {
    async fn record(&self, record: LedgerRecord) -> Result<()> {
        let mut records = match self.records.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        let duplicate = record.message_id.is_some()
            && records
                .iter()
                .any(|r| r.message_id == record.message_id && r.request_id == record.request_id);
        if !duplicate {
            records.push(record);
        }
        Ok(())
    }
}
