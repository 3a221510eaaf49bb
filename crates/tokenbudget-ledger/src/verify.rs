//! Verification: the ledger against a fresh reading of the sources, with the same rules.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::discover::SourceFile;
use crate::error::Result;
use crate::import::{self, ImportOptions, ImportSummary};
use crate::memory::MemoryUsageStore;
use crate::record::{Usage, UsageRecord};
use crate::store::{RecordQuery, UsageStore};

/// Records and usage of one file (or of everything).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Distinct responses.
    pub records: u64,
    /// Their usage, summed.
    pub usage: Usage,
}

impl Totals {
    fn add(&mut self, r: &UsageRecord) {
        self.records += 1;
        self.usage.add(&r.usage);
    }
}

/// A file whose totals differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// The file.
    pub file: String,
    /// Recomputed from the file.
    pub expected: Totals,
    /// In the ledger.
    pub ledger: Totals,
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Files read.
    pub files: u64,
    /// Totals recomputed from the sources.
    pub expected: Totals,
    /// Totals of the ledger's records of those sources.
    pub ledger: Totals,
    /// Files whose totals differ, by file.
    pub differing: Vec<FileDiff>,
    /// Keys recomputed but missing from the ledger, or stored with other numbers (at most 20).
    pub differing_keys: Vec<String>,
    /// The reading's summary (skipped lines by kind and so on).
    pub read: ImportSummary,
}

impl VerifyReport {
    /// The ledger agrees with the sources.
    pub fn is_equal(&self) -> bool {
        self.differing.is_empty() && self.differing_keys.is_empty() && self.expected == self.ledger
    }
}

/// Re-reads `files` from their start (into memory, with the importer's code and rules) and
/// compares the result with `ledger`.
pub async fn verify(ledger: &dyn UsageStore, files: &[SourceFile]) -> Result<VerifyReport> {
    let fresh = MemoryUsageStore::new();
    let read = import::import(&fresh, files, ImportOptions::default(), &mut |_| {}).await?;
    let expected = fresh.records(&RecordQuery::default()).await?;
    let stored = ledger.records(&RecordQuery::default()).await?;
    let names: BTreeSet<&str> = files.iter().map(|f| f.ctx.file.as_str()).collect();
    let mut report = compare(&expected, &stored, &names);
    report.files = files.len() as u64;
    report.read = read;
    Ok(report)
}

/// The comparison itself (pure): `expected` records of the files `names` against the ledger's
/// `stored` records. A ledger record takes part when its key was recomputed or its file is one
/// of `names`.
pub fn compare(
    expected: &[UsageRecord],
    stored: &[UsageRecord],
    names: &BTreeSet<&str>,
) -> VerifyReport {
    let by_key: BTreeMap<&str, &UsageRecord> =
        expected.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut files: BTreeMap<String, (Totals, Totals)> = BTreeMap::new();
    let (mut exp_total, mut led_total) = (Totals::default(), Totals::default());
    for r in expected {
        files.entry(r.file.clone()).or_default().0.add(r);
        exp_total.add(r);
    }
    let mut differing_keys = Vec::new();
    let mut seen = BTreeSet::new();
    for r in stored {
        let recomputed = by_key.get(r.key.as_str());
        if recomputed.is_none() && !names.contains(r.file.as_str()) {
            continue;
        }
        seen.insert(r.key.as_str());
        files.entry(r.file.clone()).or_default().1.add(r);
        led_total.add(r);
        let same = recomputed.is_some_and(|e| e.usage == r.usage && e.file == r.file);
        if !same && differing_keys.len() < 20 {
            differing_keys.push(r.key.clone());
        }
    }
    for r in expected {
        if !seen.contains(r.key.as_str()) && differing_keys.len() < 20 {
            differing_keys.push(r.key.clone());
        }
    }
    let differing = files
        .into_iter()
        .filter(|(_, (e, l))| e != l)
        .map(|(file, (expected, ledger))| FileDiff {
            file,
            expected,
            ledger,
        })
        .collect();
    VerifyReport {
        files: names.len() as u64,
        expected: exp_total,
        ledger: led_total,
        differing,
        differing_keys,
        read: ImportSummary::new(),
    }
}
