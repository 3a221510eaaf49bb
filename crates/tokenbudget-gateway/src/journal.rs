//! The settlement journal: an append-only file of settlements the store could not take,
//! each fsynced before it counts as written, replayed into the store when it is back (and
//! on start), each exactly once.
//!
//! Exactly once comes from the store, not from the file: a journaled commit replays as the
//! same commit (an identical repeat is a no-op, a late one still counts), a rollback as a
//! rollback, and a request forwarded without the store (`on_store_error = "open"`) as a
//! `charge` under its own idempotency key. Replaying a line twice (a crash between the
//! store's answer and the file's removal) therefore changes nothing.
//!
//! # Files
//! Appends go to the journal's path. A replay first renames that file to
//! `<path>.<nanos>.pending` (so appends carry on in a new file meanwhile), then replays every
//! `.pending` file in name order and removes each once all its lines are in the store. A
//! line cut short by a crash (never acknowledged: its fsync had not returned) is skipped.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokenbudget::{BudgetId, IdempotencyKey, ReservationId, TokenBudget, Unit};

use crate::error::{Error, Result};
use crate::ledger::{LedgerRecord, LedgerSink};
use crate::usage::Usage;

/// One settlement the store did not take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    /// Commit `amount` (in the budget's unit) on a reservation whose commit failed.
    Commit {
        /// The reservation.
        reservation: ReservationId,
        /// The amount to commit.
        amount: u64,
        /// Its weighted tokens (what the open allowance counts).
        tokens: u64,
    },
    /// Roll back a reservation whose rollback failed.
    Rollback {
        /// The reservation.
        reservation: ReservationId,
    },
    /// Charge a request forwarded while the store was unreachable: its usage, priced at
    /// replay in the budget's unit (weighted `tokens`, or the model's price on `usd`).
    Charge {
        /// The charge's idempotency key (one per request).
        key: String,
        /// The budget that pays.
        budget: BudgetId,
        /// The model that answered or was asked for.
        model: Option<String>,
        /// The usage.
        usage: Usage,
        /// Its weighted tokens.
        tokens: u64,
    },
    /// Write a response's ledger record the ledger's storage did not take (the ledger
    /// merges a record written twice into one row).
    Ledger {
        /// The record.
        record: Box<LedgerRecord>,
    },
}

impl Entry {
    /// The weighted tokens this entry adds to what the store has not seen yet.
    pub fn tokens(&self) -> u64 {
        match self {
            Self::Commit { tokens, .. } | Self::Charge { tokens, .. } => *tokens,
            Self::Rollback { .. } | Self::Ledger { .. } => 0,
        }
    }
}

/// What a replayed entry became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The store took it (or already had it).
    Done,
    /// The store refused it for good (a conflict, an unknown budget): logged and dropped.
    Rejected,
}

/// The amount a [`Entry::Charge`] is charged on a budget counting `unit`, pure.
///
/// # Errors
/// [`Error::Price`] when a `usd` budget cannot price the usage.
pub fn charge_amount(
    unit: Unit,
    prices: &tokenbudget::prices::PriceTable,
    model: Option<&str>,
    usage: &Usage,
    tokens: u64,
) -> Result<u64> {
    match unit {
        Unit::Tokens => Ok(tokens),
        _ => {
            let model = model.ok_or_else(|| Error::Price {
                model: String::new(),
                reason: "the journaled request names no model".into(),
            })?;
            prices
                .cost(model, &crate::meter::priced(usage))
                .map(|c| c.micros())
                .map_err(|e| Error::Price {
                    model: model.to_owned(),
                    reason: e.to_string(),
                })
        }
    }
}

/// Applies one entry to the store (a ledger record to `ledger`). `Err` is a storage
/// failure: stop, retry later.
pub async fn apply(
    budgets: &TokenBudget,
    ledger: &dyn LedgerSink,
    entry: &Entry,
) -> Result<Applied> {
    let outcome: std::result::Result<(), tokenbudget::Error> = match entry {
        Entry::Ledger { record } => {
            return match ledger.record(record.as_ref().clone()).await {
                Ok(()) => Ok(Applied::Done),
                Err(e @ Error::Store(_)) => Err(e),
                Err(e) => {
                    tracing::error!(error = %e, ?entry, "journal: the ledger refused a journaled record");
                    Ok(Applied::Rejected)
                }
            };
        }
        Entry::Commit {
            reservation,
            amount,
            ..
        } => budgets.commit(*reservation, *amount).await.map(drop),
        Entry::Rollback { reservation } => budgets.rollback(*reservation).await.map(drop),
        Entry::Charge {
            key,
            budget,
            model,
            usage,
            tokens,
        } => {
            let unit = match budgets.store().budget(budget).await {
                Ok(Some(b)) => b.unit,
                Ok(None) => {
                    tracing::error!(%budget, "journal: the budget of a journaled charge is gone");
                    return Ok(Applied::Rejected);
                }
                Err(e) => return Err(e.into()),
            };
            let amount = match charge_amount(
                unit,
                budgets.prices(),
                model.as_deref(),
                usage,
                *tokens,
            ) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(%budget, error = %e, "journal: charging the weighted tokens");
                    *tokens
                }
            };
            let key = IdempotencyKey::new(key.clone())?;
            budgets
                .charge(budget, amount, key, Some("gateway journal".into()))
                .await
                .map(drop)
        }
    };
    match outcome {
        Ok(()) => Ok(Applied::Done),
        // The rollback of a reserve that never reached the store (its answer was lost, so
        // the gateway could not know): there is nothing to release.
        Err(tokenbudget::Error::Core(tokenbudget::CoreError::ReservationNotFound { .. }))
            if matches!(entry, Entry::Rollback { .. }) =>
        {
            tracing::debug!(?entry, "journal: the reservation to roll back never landed");
            Ok(Applied::Done)
        }
        Err(e) if is_rejection(&e) => {
            tracing::error!(error = %e, ?entry, "journal: the store refused a journaled settlement");
            Ok(Applied::Rejected)
        }
        Err(e) => Err(e.into()),
    }
}

fn is_rejection(e: &tokenbudget::Error) -> bool {
    match e {
        tokenbudget::Error::Core(core) => core.is_rejection(),
        tokenbudget::Error::Price(_) | tokenbudget::Error::ModelRequired => true,
        _ => false,
    }
}

/// The journal file and its counts.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// Serializes replays.
    replaying: tokio::sync::Mutex<()>,
    /// Entries written and not yet replayed.
    depth: AtomicU64,
    /// Their weighted tokens.
    tokens: AtomicU64,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Journal(format!("{}: {e}", path.display()))
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Every complete entry of a file; a torn or unreadable line is skipped with a warning.
fn read_entries(path: &Path) -> std::io::Result<Vec<Entry>> {
    let reader = BufReader::new(File::open(path)?);
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(entry) => out.push(entry),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "journal: skipping an incomplete line")
            }
        }
    }
    Ok(out)
}

impl Journal {
    /// Opens the journal at `path` (created on the first append), counting what earlier
    /// runs left to replay.
    ///
    /// # Errors
    /// [`Error::Journal`] when the folder or an existing file cannot be read.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let journal = Self {
            path,
            file: Mutex::new(None),
            replaying: tokio::sync::Mutex::new(()),
            depth: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
        };
        let dir = journal.dir();
        if !dir.is_dir() {
            return Err(Error::Journal(format!(
                "{}: the folder does not exist",
                dir.display()
            )));
        }
        for file in journal.files()? {
            let entries = read_entries(&file).map_err(|e| io_err(&file, e))?;
            journal.count(&entries, true);
        }
        Ok(journal)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries written and not yet replayed into the store.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::SeqCst)
    }

    /// Their weighted tokens.
    pub fn tokens(&self) -> u64 {
        self.tokens.load(Ordering::SeqCst)
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "journal".into())
    }

    fn count(&self, entries: &[Entry], add: bool) {
        let n = entries.len() as u64;
        let t = entries
            .iter()
            .fold(0u64, |s, e| s.saturating_add(e.tokens()));
        if add {
            self.depth.fetch_add(n, Ordering::SeqCst);
            self.tokens.fetch_add(t, Ordering::SeqCst);
        } else {
            self.depth.fetch_sub(n.min(self.depth()), Ordering::SeqCst);
            self.tokens
                .fetch_sub(t.min(self.tokens()), Ordering::SeqCst);
        }
        crate::metrics::journal_depth(self.depth());
    }

    /// The journal's files, pending ones (oldest first) then the one being appended to.
    fn files(&self) -> Result<Vec<PathBuf>> {
        let dir = self.dir();
        let prefix = format!("{}.", self.name());
        let mut pending: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io_err(&dir, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".pending"))
            })
            .collect();
        pending.sort();
        if self.path.exists() {
            pending.push(self.path.clone());
        }
        Ok(pending)
    }

    /// Appends `entry` and fsyncs it; returns once it is on disk.
    fn append_blocking(&self, entry: &Entry) -> Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(|e| Error::Internal(e.to_string()))?;
        line.push(b'\n');
        let mut slot = match self.file.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if slot.is_none() {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&self.path)
                .map_err(|e| io_err(&self.path, e))?;
            // A line cut short by a crash must not swallow the next one.
            let len = file.metadata().map_err(|e| io_err(&self.path, e))?.len();
            if len > 0 {
                let mut last = [0u8; 1];
                file.seek(SeekFrom::Start(len - 1))
                    .and_then(|_| file.read_exact(&mut last))
                    .map_err(|e| io_err(&self.path, e))?;
                if last[0] != b'\n' {
                    file.write_all(b"\n").map_err(|e| io_err(&self.path, e))?;
                }
            } else {
                sync_dir(&self.dir()).map_err(|e| io_err(&self.path, e))?;
            }
            *slot = Some(file);
        }
        let file = slot
            .as_mut()
            .ok_or_else(|| Error::Internal("journal file".into()))?;
        let written = file.write_all(&line).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Reopen next time: the handle may be in a bad state.
            *slot = None;
            return Err(io_err(&self.path, e));
        }
        drop(slot);
        self.count(std::slice::from_ref(entry), true);
        Ok(())
    }

    /// Appends `entry`, fsynced before this returns (on a blocking thread).
    ///
    /// # Errors
    /// [`Error::Journal`] when the file cannot be written or synced.
    pub async fn append(self: &Arc<Self>, entry: Entry) -> Result<()> {
        let journal = self.clone();
        tokio::task::spawn_blocking(move || journal.append_blocking(&entry))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Moves the current file aside so appends carry on in a new one during a replay.
    fn rotate(&self) -> Result<()> {
        let mut slot = match self.file.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            return Ok(());
        }
        *slot = None;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let pending = self
            .dir()
            .join(format!("{}.{nanos:024}.pending", self.name()));
        std::fs::rename(&self.path, &pending).map_err(|e| io_err(&self.path, e))?;
        sync_dir(&self.dir()).map_err(|e| io_err(&self.path, e))
    }

    /// Replays every journaled entry into `budgets`, each store call within `per_call`;
    /// returns how many were applied. Stops at the first storage failure (the rest waits for
    /// the next replay).
    ///
    /// # Errors
    /// [`Error::Store`] when the store is still unreachable, [`Error::Journal`] on a file
    /// error.
    pub async fn replay(
        self: &Arc<Self>,
        budgets: &TokenBudget,
        ledger: &dyn LedgerSink,
        per_call: std::time::Duration,
    ) -> Result<usize> {
        let _one = self.replaying.lock().await;
        if self.depth() == 0 {
            return Ok(0);
        }
        let journal = self.clone();
        let files = tokio::task::spawn_blocking(move || {
            journal.rotate()?;
            journal.files()
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let mut applied = 0;
        for file in files.into_iter().filter(|f| f != &self.path) {
            let entries = read_entries(&file).map_err(|e| io_err(&file, e))?;
            for entry in &entries {
                tokio::time::timeout(per_call, apply(budgets, ledger, entry))
                    .await
                    .map_err(|_| Error::Store("timed out".into()))??;
                applied += 1;
            }
            std::fs::remove_file(&file).map_err(|e| io_err(&file, e))?;
            sync_dir(&self.dir()).map_err(|e| io_err(&file, e))?;
            self.count(&entries, false);
            tracing::info!(file = %file.display(), entries = entries.len(), "journal: replayed into the store");
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str, tokens: u64) -> Entry {
        Entry::Charge {
            key: key.into(),
            budget: BudgetId::new("team").unwrap(),
            model: Some("claude-sonnet-4-5".into()),
            usage: Usage {
                input: 25,
                output: 5,
                ..Usage::default()
            },
            tokens,
        }
    }

    #[test]
    fn entries_round_trip_as_json_lines() {
        let entries = [
            charge("k1", 30),
            Entry::Commit {
                reservation: ReservationId::from_uuid(uuid::Uuid::new_v4()),
                amount: 150,
                tokens: 30,
            },
            Entry::Rollback {
                reservation: ReservationId::from_uuid(uuid::Uuid::new_v4()),
            },
        ];
        for e in &entries {
            let line = serde_json::to_string(e).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(&serde_json::from_str::<Entry>(&line).unwrap(), e);
        }
        assert_eq!(entries.iter().map(Entry::tokens).sum::<u64>(), 60);
    }

    #[test]
    fn charges_are_priced_in_the_budgets_unit() {
        let prices = tokenbudget::prices::PriceTable::embedded();
        let usage = Usage {
            input: 25,
            output: 5,
            ..Usage::default()
        };
        let at = |unit, model| charge_amount(unit, &prices, model, &usage, 31);
        assert_eq!(at(Unit::Tokens, None).unwrap(), 31);
        assert_eq!(at(Unit::Usd, Some("claude-sonnet-4-5")).unwrap(), 150);
        assert!(at(Unit::Usd, None).is_err());
        assert!(at(Unit::Usd, Some("no-such-model-xyz")).is_err());
    }

    #[test]
    fn appends_survive_a_reopen_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.journal");
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.depth(), 0);
        journal.append_blocking(&charge("k1", 30)).unwrap();
        journal.append_blocking(&charge("k2", 40)).unwrap();
        drop(journal);
        // A crash mid-append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"op":"charge","key":"#).unwrap();
        drop(f);
        let journal = Journal::open(&path).unwrap();
        assert_eq!((journal.depth(), journal.tokens()), (2, 70));
        journal.append_blocking(&charge("k3", 5)).unwrap();
        let keys: Vec<String> = read_entries(&path)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                Entry::Charge { key, .. } => Some(key),
                _ => None,
            })
            .collect();
        assert_eq!(keys, ["k1", "k2", "k3"]);
        assert_eq!(journal.depth(), 3);
    }

    #[test]
    fn a_missing_folder_is_an_error_at_open() {
        let e = Journal::open("/nonexistent-tokenbudget-dir/j").unwrap_err();
        assert!(matches!(e, Error::Journal(_)), "{e}");
    }
}
