//! The importer's shell: plan each file from its checkpoint, stream its lines, write records
//! and the checkpoint that covers them in one store call.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};

use async_trait::async_trait;
use serde::Serialize;

use crate::checkpoint::{self, Checkpoint, FileStat, Plan};
use crate::dedup;
use crate::discover::SourceFile;
use crate::error::{Error, Result};
use crate::parse::{self, Skip};
use crate::reader::{Line, LineReader};
use crate::record::UsageRecord;
use crate::store::{UsageStore, WriteSummary};

/// How an import runs.
#[derive(Clone, Copy, Debug)]
pub struct ImportOptions {
    /// Write after this many distinct keys. Defaults to 2,000.
    pub batch_records: usize,
    /// Write after reading this many bytes. Defaults to 16 MiB.
    pub batch_bytes: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            batch_records: 2_000,
            batch_bytes: 16 << 20,
        }
    }
}

/// A file that could not be read; the import goes on with the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// The file.
    pub file: String,
    /// What went wrong.
    pub message: String,
}

/// Everything an import saw, each kind of line counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Files considered.
    pub files: u64,
    /// Files unchanged since their checkpoint (not opened).
    pub files_unchanged: u64,
    /// Files read from their checkpoint onwards.
    pub files_resumed: u64,
    /// Files read from the start (new, or rewritten).
    pub files_from_start: u64,
    /// Of those, files whose checkpointed prefix no longer matched (rewritten).
    pub files_rewritten: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Complete lines read.
    pub lines: u64,
    /// Lines with a usage record.
    pub usage_lines: u64,
    /// Records new to the ledger.
    pub inserted: u64,
    /// Records that replaced a less final one of their key.
    pub replaced: u64,
    /// Records the ledger already had.
    pub unchanged: u64,
    /// Lines without a record, by kind ([`Skip::name`]).
    pub skipped: BTreeMap<String, u64>,
    /// Lines that were not valid UTF-8 (parsed with the bad bytes replaced).
    pub invalid_utf8_lines: u64,
    /// Lines ending in `\r\n`.
    pub crlf_lines: u64,
    /// Files starting with a UTF-8 byte order mark.
    pub bom_files: u64,
    /// Lines longer than the reader's limit, skipped.
    pub oversized_lines: u64,
    /// Files ending in an incomplete line (left for the next run).
    pub torn_files: u64,
    /// Bytes in those incomplete lines.
    pub torn_bytes: u64,
    /// Files that could not be read.
    pub errors: Vec<FileError>,
}

impl ImportSummary {
    /// An empty summary with every skip kind present (at 0).
    pub fn new() -> Self {
        Self {
            skipped: Skip::ALL.iter().map(|k| (k.name().to_owned(), 0)).collect(),
            ..Self::default()
        }
    }

    fn count_skip(&mut self, kind: Skip) {
        *self.skipped.entry(kind.name().to_owned()).or_insert(0) += 1;
    }

    fn add_write(&mut self, w: WriteSummary) {
        self.inserted += w.inserted;
        self.replaced += w.replaced;
        self.unchanged += w.unchanged;
    }
}

/// Progress after each write: bytes and lines read since the last call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Bytes read since the last call.
    pub bytes: u64,
    /// Lines read since the last call.
    pub lines: u64,
    /// A file was finished.
    pub file_done: bool,
}

/// Records each batch's usage somewhere else (a budget) before the batch is written.
#[async_trait]
pub trait Charger: Send + Sync {
    /// Charges `records` (one per key, each the most final line of the batch, without the
    /// records a sibling shadows by rule 6, in the batch or already stored) and sets `budget` on those it
    /// charged. Called before the batch and its checkpoint are written,
    /// so a crash in between re-reads and re-charges the batch next time: a charger must be
    /// idempotent per key (a repeated key charges nothing again). An error stops the import
    /// before the batch is written.
    async fn charge(&self, records: &mut [UsageRecord]) -> Result<()>;
}

/// Imports every file into `store`; a file that cannot be read is listed in the summary's
/// `errors` and the others go on. A store failure stops the import (what was written stays:
/// each write carries its checkpoint, so the next run resumes exactly there).
pub async fn import(
    store: &dyn UsageStore,
    files: &[SourceFile],
    options: ImportOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<ImportSummary> {
    import_charging(store, files, options, None, progress).await
}

/// [`import`], with each batch passed to `charger` before it is written.
///
/// Two stages at once: a blocking thread reads and parses the files and sends each batch with
/// the checkpoint that covers it through a bounded channel; this task charges and writes them
/// in order, each batch and its checkpoint in one store call (so a kill at any moment leaves
/// the ledger at a checkpoint, as a single stage would). The wall time is about the slower
/// stage's, not their sum.
pub async fn import_charging(
    store: &dyn UsageStore,
    files: &[SourceFile],
    options: ImportOptions,
    charger: Option<&dyn Charger>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<ImportSummary> {
    // Every checkpoint in one query. One stored meanwhile by another import is further along
    // than ours at most: re-reading from ours merges into the same rows and keeps its
    // checkpoint (`checkpoint::replaces`), so nothing doubles.
    let stored: std::collections::HashMap<String, Checkpoint> = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|cp| (cp.file.clone(), cp))
        .collect();
    let files = files.to_vec();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Read>(PIPELINE_DEPTH);
    let reader = tokio::task::spawn_blocking(move || read_all(&files, &stored, options, &tx));
    let sink = Sink { store, charger };
    let mut written = WriteSummary::default();
    let mut failed = None;
    while let Some(read) = rx.recv().await {
        match read {
            Read::Batch(batch) => {
                match flush(sink, batch.records, &batch.checkpoint).await {
                    Ok(w) => written.add(w),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                progress(Progress {
                    bytes: batch.bytes,
                    lines: batch.lines,
                    file_done: false,
                });
            }
            Read::FileDone => progress(Progress {
                file_done: true,
                ..Progress::default()
            }),
        }
    }
    // Stops the reader at its next batch when the writer failed.
    drop(rx);
    let summary = reader
        .await
        .map_err(|e| Error::storage(format!("the reading thread failed: {e}"), false));
    if let Some(e) = failed {
        return Err(e);
    }
    let mut summary = summary?;
    summary.add_write(written);
    Ok(summary)
}

/// Batches read ahead of the writer: enough to keep both stages busy, few enough to keep
/// memory bounded (a batch holds at most [`ImportOptions::batch_bytes`] of lines' records).
const PIPELINE_DEPTH: usize = 2;

/// What the reading stage sends the writer.
enum Read {
    /// Records to write with the checkpoint that covers them.
    Batch(Batch),
    /// A file was finished.
    FileDone,
}

/// One batch: the records of a stretch of a file and the checkpoint at its end.
struct Batch {
    records: BTreeMap<String, UsageRecord>,
    checkpoint: Checkpoint,
    bytes: u64,
    lines: u64,
}

/// The reading stage: every file, in order, into batches; returns what it read. Stops early
/// when the writer is gone.
fn read_all(
    files: &[SourceFile],
    stored: &std::collections::HashMap<String, Checkpoint>,
    options: ImportOptions,
    tx: &tokio::sync::mpsc::Sender<Read>,
) -> ImportSummary {
    let mut summary = ImportSummary::new();
    let mut buf = Vec::new();
    for file in files {
        summary.files += 1;
        let stored = stored.get(&file.ctx.file).cloned();
        let mut send = |read: Read| tx.blocking_send(read).is_ok();
        match import_file(file, stored, options, &mut summary, &mut buf, &mut send) {
            Ok(true) => {}
            Ok(false) => break,
            Err(Error::Io { path, source }) => summary.errors.push(FileError {
                file: path,
                message: source.to_string(),
            }),
            Err(e) => summary.errors.push(FileError {
                file: file.ctx.file.clone(),
                message: e.to_string(),
            }),
        }
        if !send(Read::FileDone) {
            break;
        }
    }
    summary
}

/// The file's identity, size and modification time.
pub fn stat(file: &File, name: &str) -> Result<FileStat> {
    let meta = file.metadata().map_err(|e| io(name, e))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0);
    #[cfg(unix)]
    let (dev, inode) = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (dev, inode) = (0, 0);
    Ok(FileStat {
        dev,
        inode,
        size: meta.len(),
        mtime_ns,
    })
}

fn io(name: &str, source: std::io::Error) -> Error {
    Error::Io {
        path: name.to_owned(),
        source,
    }
}

/// Reads `range` of `file` (without moving its cursor on Unix).
fn read_range(file: &File, range: std::ops::Range<u64>, name: &str) -> Result<Vec<u8>> {
    let len = usize::try_from(range.end - range.start).unwrap_or(0);
    let mut bytes = vec![0; len];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut bytes, range.start)
            .map_err(|e| io(name, e))?;
    }
    #[cfg(not(unix))]
    {
        use std::io::Read;
        let mut f = file.try_clone().map_err(|e| io(name, e))?;
        f.seek(SeekFrom::Start(range.start))
            .map_err(|e| io(name, e))?;
        f.read_exact(&mut bytes).map_err(|e| io(name, e))?;
    }
    Ok(bytes)
}

/// The checkpoint of `file` read up to `offset`.
fn checkpoint_at(file: &File, name: &str, stat: &FileStat, offset: u64) -> Result<Checkpoint> {
    let (head, tail) = checkpoint::sample_ranges(offset);
    Ok(Checkpoint {
        file: name.to_owned(),
        dev: stat.dev,
        inode: stat.inode,
        size: stat.size,
        mtime_ns: stat.mtime_ns,
        offset,
        head_hash: checkpoint::hash_hex(&read_range(file, head, name)?),
        tail_hash: checkpoint::hash_hex(&read_range(file, tail, name)?),
    })
}

/// Whether `file` still has the prefix `cp` describes.
fn prefix_matches(file: &File, cp: &Checkpoint) -> Result<bool> {
    let (head, tail) = checkpoint::sample_ranges(cp.offset);
    Ok(
        checkpoint::hash_hex(&read_range(file, head, &cp.file)?) == cp.head_hash
            && checkpoint::hash_hex(&read_range(file, tail, &cp.file)?) == cp.tail_hash,
    )
}

/// Where batches go: the store, through the charger when there is one.
#[derive(Clone, Copy)]
struct Sink<'a> {
    store: &'a dyn UsageStore,
    charger: Option<&'a dyn Charger>,
}

/// Reads one file from its checkpoint into batches; `Ok(false)` when `send` says the writer
/// is gone.
fn import_file(
    src: &SourceFile,
    stored: Option<Checkpoint>,
    options: ImportOptions,
    summary: &mut ImportSummary,
    buf: &mut Vec<u8>,
    send: &mut dyn FnMut(Read) -> bool,
) -> Result<bool> {
    let name = src.ctx.file.as_str();
    let file = File::open(&src.path).map_err(|e| io(name, e))?;
    let stat = stat(&file, name)?;
    let start = match checkpoint::plan(&stat, stored.as_ref()) {
        Plan::Unchanged => {
            summary.files_unchanged += 1;
            return Ok(true);
        }
        Plan::FromStart => {
            summary.files_from_start += 1;
            summary.files_rewritten += u64::from(stored.is_some());
            0
        }
        Plan::Verify(cp) => {
            if prefix_matches(&file, &cp)? {
                summary.files_resumed += 1;
                cp.offset
            } else {
                summary.files_from_start += 1;
                summary.files_rewritten += 1;
                0
            }
        }
    };
    let mut handle = &file;
    handle
        .seek(SeekFrom::Start(start))
        .map_err(|e| io(name, e))?;
    let mut reader = LineReader::with_buffer(handle, start, std::mem::take(buf));
    let mut batch: BTreeMap<String, UsageRecord> = BTreeMap::new();
    let mut flushed_at = start;
    let mut lines_since = 0u64;
    loop {
        let line = reader.next_line().map_err(|e| io(name, e))?;
        let Some(line) = line else { break };
        summary.lines += 1;
        lines_since += 1;
        match line {
            Line::Oversized { .. } => summary.oversized_lines += 1,
            Line::Text {
                offset,
                bytes,
                crlf,
                bom,
            } => {
                summary.crlf_lines += u64::from(crlf);
                summary.bom_files += u64::from(bom);
                let parsed = parse::parse_line(bytes, offset, &src.ctx);
                summary.invalid_utf8_lines += u64::from(parsed.invalid_utf8);
                match parsed.outcome {
                    Ok(record) => {
                        summary.usage_lines += 1;
                        dedup::merge(&mut batch, record);
                    }
                    Err(kind) => summary.count_skip(kind),
                }
            }
        }
        let consumed = reader.consumed();
        if batch.len() >= options.batch_records || consumed - flushed_at >= options.batch_bytes {
            // Not the end yet: the checkpoint's size says only this much was seen, so a
            // resume never mistakes the file for unchanged.
            let partial = FileStat {
                size: consumed,
                ..stat
            };
            let checkpoint = checkpoint_at(&file, name, &partial, consumed)?;
            summary.bytes_read += consumed - flushed_at;
            let sent = send(Read::Batch(Batch {
                records: std::mem::take(&mut batch),
                checkpoint,
                bytes: consumed - flushed_at,
                lines: lines_since,
            }));
            if !sent {
                return Ok(false);
            }
            flushed_at = consumed;
            lines_since = 0;
        }
    }
    let consumed = reader.consumed();
    let torn = reader.torn();
    *buf = reader.into_buffer();
    if torn > 0 {
        summary.torn_files += 1;
        summary.torn_bytes += torn;
    }
    // The size seen when the read began (or more, if it grew meanwhile): equal size and
    // modification time next time mean nothing was appended.
    let seen = FileStat {
        size: stat.size.max(consumed + torn),
        ..stat
    };
    let checkpoint = checkpoint_at(&file, name, &seen, consumed)?;
    summary.bytes_read += consumed - flushed_at;
    Ok(send(Read::Batch(Batch {
        records: batch,
        checkpoint,
        bytes: consumed - flushed_at,
        lines: lines_since,
    })))
}

async fn flush(
    sink: Sink<'_>,
    map: BTreeMap<String, UsageRecord>,
    cp: &Checkpoint,
) -> Result<WriteSummary> {
    let records: Vec<UsageRecord> = match sink.charger {
        None => map.into_values().collect(),
        Some(charger) => {
            // A shadowed record (rule 6: its response is logged with the request id too) is
            // one response with its sibling: only the sibling is charged, whether the sibling
            // is in this batch or was written by an earlier one (another file, an earlier
            // batch of this file, an earlier run).
            let candidates: Vec<String> = map
                .keys()
                .filter(|k| !dedup::is_shadowed(&map, k))
                .cloned()
                .collect();
            let stored = sink.store.shadowed(&candidates).await?;
            let (mut counted, shadowed): (Vec<UsageRecord>, Vec<UsageRecord>) =
                map.into_values().partition(|r| {
                    candidates.binary_search(&r.key).is_ok() && !stored.contains(&r.key)
                });
            charger.charge(&mut counted).await?;
            counted.extend(shadowed);
            counted
        }
    };
    sink.store.write(&records, Some(cp)).await
}
