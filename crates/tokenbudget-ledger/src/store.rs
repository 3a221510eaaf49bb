//! The [`UsageStore`] trait: where usage records and import checkpoints live.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::aggregate::{AggregateQuery, AggregateRow};
use crate::checkpoint::Checkpoint;
use crate::dedup::MAX_KEY_LEN;
use crate::error::{Error, Result};
use crate::record::UsageRecord;

/// A shared usage store, as factories hand them out.
pub type DynUsageStore = Arc<dyn UsageStore>;

/// What one [`UsageStore::write`] did to the records it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Records with a key the ledger did not have.
    pub inserted: u64,
    /// Records that superseded the stored record of their key.
    pub replaced: u64,
    /// Records the ledger already had (or a more final one of).
    pub unchanged: u64,
}

impl WriteSummary {
    /// Adds another summary's counts.
    pub fn add(&mut self, other: WriteSummary) {
        self.inserted += other.inserted;
        self.replaced += other.replaced;
        self.unchanged += other.unchanged;
    }
}

/// Which records [`UsageStore::records`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordQuery {
    /// Only records at or after this time (microseconds since the epoch).
    pub since: Option<i64>,
    /// Only records before this time.
    pub until: Option<i64>,
    /// Leave `raw_usage` empty (reports never need it, and it is most of a row).
    pub without_raw: bool,
}

/// The ledger's storage: usage records merged by key, and import checkpoints.
///
/// Implemented for memory ([`crate::MemoryUsageStore`]), SQLite and Postgres (in the same
/// database as the budgets). Every bullet under `# Behavior` is a test of the conformance
/// suite (`testkit` feature), run for every implementation.
#[async_trait]
pub trait UsageStore: Send + Sync + fmt::Debug {
    /// Merges `records` into the ledger and stores `checkpoint`, in one transaction.
    ///
    /// # Behavior
    ///
    /// - A record whose key is new is inserted; a record with a stored key replaces the stored
    ///   record only when it [supersedes](crate::dedup::supersedes) it; otherwise it changes
    ///   nothing. The result is the same in any order and any number of repetitions.
    /// - Several records with one key in one call merge as if written one by one.
    /// - `checkpoint` is stored in the same transaction as the records: either both are
    ///   written or neither is.
    /// - A checkpoint replaces the stored one of its file unless
    ///   [`crate::checkpoint::replaces`] says the stored one is further along the same prefix.
    /// - A record with an empty key, a key longer than 255 bytes, or a count above `i64::MAX`
    ///   is [`Error::InvalidRecord`] and nothing of the call is written.
    /// - Returns how many records were inserted, replaced and unchanged.
    /// - Rule 6 is decided here: a written record shadowed by a stored one, and a stored
    ///   record the written one shadows ([`crate::dedup::shadowed_by`]), are marked shadowed
    ///   in the same transaction, whichever arrived first, in one call or two, and with two
    ///   writers at once.
    async fn write(
        &self,
        records: &[UsageRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<WriteSummary>;

    /// Of `keys`, those that a stored record shadows (rule 6, [`crate::dedup::shadows`]),
    /// whether or not they are stored themselves (`import --charge` asks this before charging
    /// a bare copy whose sibling was written by an earlier batch).
    ///
    /// # Behavior
    ///
    /// - Returns each key of `keys` for which a stored key is the key, `:` and a non-empty
    ///   request id; no other key, and nothing for an empty `keys`.
    async fn shadowed(&self, keys: &[String]) -> Result<BTreeSet<String>>;

    /// The stored checkpoint of `file`.
    ///
    /// # Behavior
    ///
    /// - `None` for a file never checkpointed; else the last stored checkpoint, field for field.
    async fn checkpoint(&self, file: &str) -> Result<Option<Checkpoint>>;

    /// Every stored checkpoint, ordered by file.
    ///
    /// # Behavior
    ///
    /// - Returns each file's checkpoint once, ordered by file name.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;

    /// The records `query` selects, ordered by timestamp, then key.
    ///
    /// # Behavior
    ///
    /// - Returns every stored record field for field (each key once), ordered by
    ///   `(timestamp, key)`; `since` is inclusive, `until` exclusive.
    /// - `without_raw` returns the records with an empty `raw_usage`.
    /// - A record keyed by a message id alone is left out while a record of the same message
    ///   id with a request id is stored ([`crate::dedup::shadows`], rule 6), whatever the
    ///   time filter and the order they were written in.
    async fn records(&self, query: &RecordQuery) -> Result<Vec<UsageRecord>>;

    /// The sums of the records `query` selects, grouped in the database (reports and the
    /// dashboard read these instead of every record).
    ///
    /// # Behavior
    ///
    /// - Equals [`crate::aggregate::of_records`] over [`UsageStore::records`]: one row per
    ///   group of (time bucket, the [`GroupBy`](crate::aggregate::GroupBy) keys, prompt tier),
    ///   with the sum of every usage count, the number of responses and the earliest and
    ///   latest timestamp; keys not grouped by are empty (`None` for the budget).
    /// - Buckets are the timestamp floored to `bucket_seconds` since the epoch (UTC), also
    ///   before the epoch; `0` puts the whole range in one group (`bucket` is `None`).
    /// - `since` is inclusive, `until` exclusive; `project` and `model` select records that
    ///   contain the text (bytewise), `budget` and `session` the exact value.
    /// - With `prompt_tiers`, a group holds only responses whose prompt (input, cache writes
    ///   and reads) is above the same greatest threshold (`prompt_above`).
    /// - A record shadowed by rule 6 ([`crate::dedup::shadows`]) is not counted, as in
    ///   [`UsageStore::records`].
    /// - Rows are ordered by [`AggregateRow::sort_key`]: bucket, model, project, session,
    ///   budget (`None` first), tier (`None` first), text bytewise.
    /// - A sum above `i64::MAX` is an error, never a wrapped or rounded number.
    async fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<AggregateRow>>;
}

/// The check every store runs on a batch before writing anything.
pub fn validate(records: &[UsageRecord]) -> Result<()> {
    for r in records {
        let reason = if r.key.is_empty() {
            Some("the key is empty".to_owned())
        } else if r.key.len() > MAX_KEY_LEN {
            Some(format!(
                "the key is {} bytes, more than {MAX_KEY_LEN}",
                r.key.len()
            ))
        } else {
            let u = &r.usage;
            [
                u.input,
                u.output,
                u.cache_write_5m,
                u.cache_write_1h,
                u.cache_read,
                u.web_search_requests,
                u.web_fetch_requests,
                r.offset,
            ]
            .into_iter()
            .any(|v| i64::try_from(v).is_err())
            .then(|| "a count is above i64::MAX".to_owned())
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidRecord {
                key: r.key.clone(),
                reason,
            });
        }
    }
    Ok(())
}
