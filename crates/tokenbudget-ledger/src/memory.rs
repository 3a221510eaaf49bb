//! [`MemoryUsageStore`]: the ledger in a process's memory.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::aggregate::{self, AggregateQuery, AggregateRow};
use crate::checkpoint::{self, Checkpoint};
use crate::dedup::{self, Merge};
use crate::error::Result;
use crate::record::UsageRecord;
use crate::store::{validate, RecordQuery, UsageStore, WriteSummary};

/// A [`UsageStore`] in memory: one lock around the records and checkpoints.
#[derive(Debug, Default)]
pub struct MemoryUsageStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: BTreeMap<String, UsageRecord>,
    /// The keys of stored records shadowed by rule 6, decided when writing.
    shadowed: BTreeSet<String>,
    checkpoints: BTreeMap<String, Checkpoint>,
}

impl MemoryUsageStore {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl UsageStore for MemoryUsageStore {
    async fn write(
        &self,
        records: &[UsageRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<WriteSummary> {
        validate(records)?;
        let mut inner = self.inner.lock();
        let mut summary = WriteSummary::default();
        for record in records {
            match dedup::merge(&mut inner.records, record.clone()) {
                Merge::Inserted => {
                    summary.inserted += 1;
                    let Inner {
                        records, shadowed, ..
                    } = &mut *inner;
                    if dedup::is_shadowed(records, &record.key) {
                        shadowed.insert(record.key.clone());
                    }
                    for bare in dedup::shadowed_by(&record.key) {
                        if records.contains_key(bare) {
                            shadowed.insert(bare.to_owned());
                        }
                    }
                }
                Merge::Replaced => summary.replaced += 1,
                Merge::Unchanged => summary.unchanged += 1,
            }
        }
        if let Some(cp) = checkpoint {
            let keep = inner
                .checkpoints
                .get(&cp.file)
                .is_some_and(|stored| !checkpoint::replaces(cp, stored));
            if !keep {
                inner.checkpoints.insert(cp.file.clone(), cp.clone());
            }
        }
        Ok(summary)
    }

    async fn shadowed(&self, keys: &[String]) -> Result<BTreeSet<String>> {
        let inner = self.inner.lock();
        Ok(keys
            .iter()
            .filter(|k| dedup::is_shadowed(&inner.records, k))
            .cloned()
            .collect())
    }

    async fn checkpoint(&self, file: &str) -> Result<Option<Checkpoint>> {
        Ok(self.inner.lock().checkpoints.get(file).cloned())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        Ok(self.inner.lock().checkpoints.values().cloned().collect())
    }

    async fn records(&self, query: &RecordQuery) -> Result<Vec<UsageRecord>> {
        let inner = self.inner.lock();
        let mut out: Vec<UsageRecord> = inner
            .records
            .values()
            .filter(|r| !inner.shadowed.contains(&r.key))
            .filter(|r| query.since.is_none_or(|s| r.timestamp >= s))
            .filter(|r| query.until.is_none_or(|u| r.timestamp < u))
            .cloned()
            .map(|mut r| {
                if query.without_raw {
                    r.raw_usage.clear();
                }
                r
            })
            .collect();
        out.sort_by(|a, b| (a.timestamp, &a.key).cmp(&(b.timestamp, &b.key)));
        Ok(out)
    }

    async fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<AggregateRow>> {
        let inner = self.inner.lock();
        let counted = inner
            .records
            .values()
            .filter(|r| !inner.shadowed.contains(&r.key));
        aggregate::of_records(counted, query)
    }
}
