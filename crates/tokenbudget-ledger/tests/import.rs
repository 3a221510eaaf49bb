//! The importer on generated Claude Code trees (memory store): every trap counted, exact
//! totals, reruns, growth, rewrites and resumes after a failure at every write.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokenbudget_ledger::discover::{self, SourceFile};
use tokenbudget_ledger::testkit::fixture::{self, Expected, Spec};
use tokenbudget_ledger::verify::Totals;
use tokenbudget_ledger::{
    import, Checkpoint, Error, ImportOptions, ImportSummary, MemoryUsageStore, RecordQuery,
    UsageRecord, UsageStore, WriteSummary,
};

fn tree(spec: &Spec) -> (tempfile::TempDir, Expected, Vec<SourceFile>) {
    let dir = tempfile::tempdir().unwrap();
    let expected = fixture::generate(dir.path(), spec).unwrap();
    let files = discover::discover(dir.path(), "laptop").unwrap();
    (dir, expected, files)
}

async fn totals(store: &dyn UsageStore) -> (Totals, BTreeMap<String, Totals>) {
    let mut total = Totals::default();
    let mut per_file: BTreeMap<String, Totals> = BTreeMap::new();
    for r in store.records(&RecordQuery::default()).await.unwrap() {
        total.records += 1;
        total.usage.add(&r.usage);
        let f = per_file.entry(r.file.clone()).or_default();
        f.records += 1;
        f.usage.add(&r.usage);
    }
    (total, per_file)
}

fn canonical(expected: &Expected) -> BTreeMap<String, Totals> {
    // The generator names files under the temp dir as given; discovery canonicalizes.
    expected
        .per_file
        .iter()
        .map(|(f, t)| {
            let c = Path::new(f).canonicalize().unwrap().display().to_string();
            (c, *t)
        })
        .collect()
}

async fn run(
    store: &dyn UsageStore,
    files: &[SourceFile],
    options: ImportOptions,
) -> ImportSummary {
    import(store, files, options, &mut |_| {}).await.unwrap()
}

#[tokio::test]
async fn every_trap_is_counted_and_the_totals_are_exact() {
    let (_dir, expected, files) = tree(&Spec::default());
    assert_eq!(files.len(), expected.files.len());
    let store = MemoryUsageStore::new();
    let s = run(&store, &files, ImportOptions::default()).await;
    assert_eq!(s.files, files.len() as u64);
    assert_eq!(s.files_from_start, files.len() as u64);
    assert_eq!(s.lines, expected.lines);
    assert_eq!(s.usage_lines, expected.usage_lines);
    let skipped: BTreeMap<&str, u64> = s.skipped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(skipped, expected.skipped);
    assert_eq!(s.crlf_lines, expected.crlf_lines);
    assert!(s.crlf_lines > 0);
    assert_eq!(s.bom_files, expected.bom_files);
    assert_eq!(s.invalid_utf8_lines, expected.invalid_utf8_lines);
    assert_eq!(s.torn_files, expected.torn_files);
    assert!(s.torn_bytes > 0);
    assert!(s.errors.is_empty());
    // The bare copies of rule 6 are stored (inserted) but not counted.
    assert_eq!(expected.shadowed, 6);
    assert_eq!(s.inserted, expected.total.records + expected.shadowed);
    let (total, per_file) = totals(&store).await;
    assert_eq!(total, expected.total);
    assert_eq!(per_file, canonical(&expected));
}

#[tokio::test]
async fn a_rerun_on_unchanged_files_reads_nothing() {
    let (_dir, _expected, files) = tree(&Spec::default());
    let store = MemoryUsageStore::new();
    run(&store, &files, ImportOptions::default()).await;
    let before = totals(&store).await;
    let s = run(&store, &files, ImportOptions::default()).await;
    assert_eq!(s.files_unchanged, files.len() as u64);
    assert_eq!(
        (s.bytes_read, s.lines, s.inserted, s.replaced),
        (0, 0, 0, 0)
    );
    assert_eq!(totals(&store).await, before);
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[tokio::test]
async fn a_grown_file_is_read_from_its_checkpoint_and_a_torn_line_completes_later() {
    let (_dir, expected, files) = tree(&Spec::default());
    let store = MemoryUsageStore::new();
    run(&store, &files, ImportOptions::default()).await;
    // Complete every torn line: the torn response counts now, once.
    let mut completed = 0;
    for f in &files {
        let bytes = std::fs::read(&f.path).unwrap();
        if bytes.last() != Some(&b'\n') {
            // The generator's torn line is a cut copy of a whole line: finish it by hand.
            let cut = bytes.iter().rposition(|b| *b == b'\n').unwrap() + 1;
            let mut line = bytes[cut..].to_vec();
            let session = f.ctx.session.clone();
            line.clear();
            let whole = format!(
                r#"{{"sessionId":"{session}","message":{{"id":"msg_torn_{session}","model":"claude-sonnet-4-5-20250929","usage":{{"input_tokens":1,"output_tokens":77}}}},"requestId":"req_t","timestamp":"2026-11-02T00:00:00Z"}}"#
            );
            // Overwrite the torn half: truncate to the last newline, then append whole lines.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&f.path)
                .unwrap();
            file.set_len(cut as u64).unwrap();
            append(&f.path, format!("{whole}\n").as_bytes());
            completed += 1;
        }
    }
    assert_eq!(completed, expected.torn_files);
    let s = run(&store, &files, ImportOptions::default()).await;
    assert_eq!(s.files_resumed, completed);
    assert_eq!(s.inserted, completed);
    assert_eq!(s.torn_files, 0);
    let (total, _) = totals(&store).await;
    assert_eq!(total.records, expected.total.records + completed);
    assert_eq!(
        total.usage.output,
        expected.total.usage.output + 77 * completed
    );
}

#[tokio::test]
async fn a_rewritten_file_is_read_again_from_the_start_without_double_counting() {
    let (_dir, expected, files) = tree(&Spec::default());
    let store = MemoryUsageStore::new();
    run(&store, &files, ImportOptions::default()).await;
    // Rewrite one file with the same lines plus one, and another one shorter than before.
    let a = &files[0].path;
    let mut bytes = std::fs::read(a).unwrap();
    bytes.splice(
        0..0,
        b"{\"type\":\"summary\",\"summary\":\"compacted\"}\n"
            .iter()
            .copied(),
    );
    std::fs::write(a, &bytes).unwrap();
    let b = &files[1].path;
    let original = std::fs::read(b).unwrap();
    std::fs::write(b, &original[..original.len() / 3]).unwrap();
    let s = run(&store, &files, ImportOptions::default()).await;
    assert_eq!(s.files_rewritten, 2, "{s:?}");
    assert_eq!(s.inserted, 0);
    let (total, _) = totals(&store).await;
    assert_eq!(total, expected.total);
}

/// A store that fails every write after the first `allowed` (a crash between transactions).
#[derive(Debug)]
struct Crashing {
    inner: MemoryUsageStore,
    allowed: AtomicU64,
}

#[async_trait]
impl UsageStore for Crashing {
    async fn write(
        &self,
        records: &[UsageRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> tokenbudget_ledger::Result<WriteSummary> {
        if self.allowed.load(Ordering::SeqCst) == 0 {
            return Err(Error::storage("crashed", false));
        }
        self.allowed.fetch_sub(1, Ordering::SeqCst);
        self.inner.write(records, checkpoint).await
    }
    async fn shadowed(
        &self,
        keys: &[String],
    ) -> tokenbudget_ledger::Result<std::collections::BTreeSet<String>> {
        self.inner.shadowed(keys).await
    }
    async fn checkpoint(&self, file: &str) -> tokenbudget_ledger::Result<Option<Checkpoint>> {
        self.inner.checkpoint(file).await
    }
    async fn checkpoints(&self) -> tokenbudget_ledger::Result<Vec<Checkpoint>> {
        self.inner.checkpoints().await
    }
    async fn records(&self, q: &RecordQuery) -> tokenbudget_ledger::Result<Vec<UsageRecord>> {
        self.inner.records(q).await
    }
    async fn aggregate(
        &self,
        q: &tokenbudget_ledger::AggregateQuery,
    ) -> tokenbudget_ledger::Result<Vec<tokenbudget_ledger::AggregateRow>> {
        self.inner.aggregate(q).await
    }
}

#[tokio::test]
async fn a_crash_after_any_write_then_a_rerun_ends_exactly_as_one_run() {
    let (_dir, expected, files) = tree(&Spec::default());
    // Small batches: many writes, resumes in the middle of files and of responses.
    let options = ImportOptions {
        batch_records: 2,
        batch_bytes: 700,
    };
    let reference = MemoryUsageStore::new();
    run(&reference, &files, options).await;
    let want = totals(&reference).await;
    assert_eq!(want.0, expected.total);
    let mut crashes = 0;
    for allowed in 0..200 {
        let store = Crashing {
            inner: MemoryUsageStore::new(),
            allowed: AtomicU64::new(allowed),
        };
        let first = import(&store, &files, options, &mut |_| {}).await;
        if first.is_ok() {
            break;
        }
        crashes += 1;
        store.allowed.store(u64::MAX, Ordering::SeqCst);
        run(&store, &files, options).await;
        assert_eq!(totals(&store).await, want, "crash after {allowed} writes");
        assert_eq!(
            store.inner.records(&RecordQuery::default()).await.unwrap(),
            reference.records(&RecordQuery::default()).await.unwrap()
        );
    }
    assert!(crashes > 50, "only {crashes} crash points");
}

#[tokio::test]
async fn importing_a_copy_from_another_machine_merges_idempotently() {
    let (dir, expected, files) = tree(&Spec::default());
    let copy = tempfile::tempdir().unwrap();
    for f in &files {
        let rel = f
            .path
            .strip_prefix(dir.path().canonicalize().unwrap())
            .unwrap();
        let to = copy.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&f.path, &to).unwrap();
    }
    let other = discover::discover(copy.path(), "desktop").unwrap();
    let store = MemoryUsageStore::new();
    run(&store, &files, ImportOptions::default()).await;
    let s = run(&store, &other, ImportOptions::default()).await;
    assert_eq!(s.inserted, 0);
    assert_eq!(totals(&store).await.0, expected.total);
}

#[tokio::test]
async fn verify_agrees_after_an_import_and_finds_a_missing_file() {
    let (_dir, _expected, files) = tree(&Spec::default());
    let store = MemoryUsageStore::new();
    run(&store, &files, ImportOptions::default()).await;
    let report = tokenbudget_ledger::verify(&store, &files).await.unwrap();
    assert!(report.is_equal(), "{report:?}");
    // A ledger that lacks one file's records differs in exactly that file.
    let partial = MemoryUsageStore::new();
    run(&partial, &files[1..], ImportOptions::default()).await;
    let report = tokenbudget_ledger::verify(&partial, &files).await.unwrap();
    assert!(!report.is_equal());
    let differing: Vec<&str> = report.differing.iter().map(|d| d.file.as_str()).collect();
    assert_eq!(differing, [files[0].ctx.file.as_str()]);
}

/// A charger that remembers the most final usage charged per key (what a charger keyed by
/// the dedup key ends with) and fails once after `fail_after` batches.
#[derive(Default)]
struct Recording {
    charged: parking_lot::Mutex<BTreeMap<String, u64>>,
    batches: AtomicU64,
    fail_at: Option<u64>,
}

#[async_trait]
impl tokenbudget_ledger::Charger for Recording {
    async fn charge(&self, records: &mut [UsageRecord]) -> tokenbudget_ledger::Result<()> {
        let n = self.batches.fetch_add(1, Ordering::SeqCst);
        if Some(n) == self.fail_at {
            return Err(Error::storage("charger down", false));
        }
        let mut charged = self.charged.lock();
        for r in records {
            let total = r.usage.total_tokens();
            let entry = charged.entry(r.key.clone()).or_default();
            *entry = (*entry).max(total);
            r.budget = Some("team".into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_charger_sees_every_batch_before_it_is_written_and_sets_the_budget() {
    let (_dir, expected, files) = tree(&Spec::default());
    let options = ImportOptions {
        batch_records: 3,
        batch_bytes: 1_000,
    };
    let store = MemoryUsageStore::new();
    // A failing charger stops the import before its batch is written.
    let failing = Recording {
        fail_at: Some(2),
        ..Recording::default()
    };
    let err =
        tokenbudget_ledger::import_charging(&store, &files, options, Some(&failing), &mut |_| {})
            .await
            .unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err}");
    let written = store.records(&RecordQuery::default()).await.unwrap();
    assert!(written
        .iter()
        .all(|r| failing.charged.lock().contains_key(&r.key)));
    // The rerun charges the rest (and the re-read batch again, which a charger keyed by the
    // dedup key answers with nothing new).
    let charger = Recording::default();
    tokenbudget_ledger::import_charging(&store, &files, options, Some(&charger), &mut |_| {})
        .await
        .unwrap();
    let (total, _) = totals(&store).await;
    assert_eq!(total, expected.total);
    let mut charged = failing.charged.lock().clone();
    for (k, v) in charger.charged.lock().iter() {
        let e = charged.entry(k.clone()).or_default();
        *e = (*e).max(*v);
    }
    let records = store.records(&RecordQuery::default()).await.unwrap();
    let sum: u64 = records.iter().map(|r| charged[&r.key]).sum();
    assert_eq!(sum, expected.total.usage.total_tokens());
    assert!(records.iter().all(|r| r.budget.as_deref() == Some("team")));
}

/// Rule 6 in the generated tree: the fourth response of each session is logged with and
/// without its request id; it counts once, under the key with the request id, with its final
/// usage, and the totals are exactly those of one copy.
#[tokio::test]
async fn a_response_logged_with_and_without_request_id_counts_once() {
    let spec = Spec {
        projects: 1,
        sessions: 1,
        responses: 4,
        ..Spec::default()
    };
    let (_dir, expected, files) = tree(&spec);
    assert_eq!(expected.shadowed, 1);
    let store = MemoryUsageStore::new();
    let s = run(&store, &files, ImportOptions::default()).await;
    // 4 responses in the session, 2 of the subagent's own; plus the bare copy, stored.
    assert_eq!(expected.total.records, 6);
    assert_eq!(s.inserted, 7);
    let records = store.records(&RecordQuery::default()).await.unwrap();
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert!(keys.contains(&"msg_0_0_3:req_0_0_3"), "{keys:?}");
    assert!(!keys.contains(&"msg_0_0_3"), "{keys:?}");
    // Response 1 has no request id at all: its bare key counts.
    assert!(keys.contains(&"msg_0_0_1"), "{keys:?}");
    let (total, _) = totals(&store).await;
    assert_eq!(total, expected.total);
    // What a wrong rule would count: both copies of response 3.
    let third = records
        .iter()
        .find(|r| r.key == "msg_0_0_3:req_0_0_3")
        .unwrap();
    let mut doubled = expected.total.usage;
    doubled.add(&third.usage);
    assert_ne!(doubled, total.usage);
    // The aggregate leaves it out too.
    let rows = store
        .aggregate(&tokenbudget_ledger::AggregateQuery::default())
        .await
        .unwrap();
    assert_eq!(rows[0].responses, expected.total.records);
    assert_eq!(rows[0].usage, expected.total.usage);
}
