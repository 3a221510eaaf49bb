//! Per-file import checkpoints and the pure decision of where to resume reading.
//!
//! Like a log shipper's (Vector's `file-source`), a checkpoint names what was read of one
//! file: its identity (device and inode), size and modification time when read, the offset
//! just past the last complete line read, and hashes of the prefix read. It is written in the
//! same transaction as the records read up to that offset, so they can never disagree.
//!
//! # Note
//!
//! The prefix is identified by two sampled hashes, of its first and of its last
//! [`SAMPLE_LEN`] bytes (SHA-256), not a hash of all of it: checking a full prefix hash means
//! reading the whole prefix again, which would make resuming a grown file as slow as reading
//! it from the start. Claude Code only appends to transcripts; a rewrite (compaction, a copy
//! over it, truncation) changes the head, the bytes before the offset, or the size, and any of
//! those sends the file back to its start, which is always safe: records merge by key, so
//! re-reading counts nothing twice.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How many bytes each prefix sample hashes.
pub const SAMPLE_LEN: u64 = 4096;

/// What the importer remembers about one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The file, as the importer names it (its absolute path).
    pub file: String,
    /// The file's identity: device number (0 where the platform has none).
    pub dev: u64,
    /// The file's identity: inode number (0 where the platform has none).
    pub inode: u64,
    /// The file's size when it was read.
    pub size: u64,
    /// The file's modification time when it was read, in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Just past the last complete line read: where the next read starts.
    pub offset: u64,
    /// SHA-256 (hex) of bytes `0..min(offset, SAMPLE_LEN)`.
    pub head_hash: String,
    /// SHA-256 (hex) of the `min(offset, SAMPLE_LEN)` bytes ending at `offset`.
    pub tail_hash: String,
}

/// A file as seen on disk now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// Where to start reading a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing changed since the checkpoint: do not open the file.
    Unchanged,
    /// Read from the start (never read, or rewritten).
    FromStart,
    /// Check that the prefix still hashes to the checkpoint's samples, then read from
    /// `offset` if so (else from the start).
    Verify(Checkpoint),
}

/// The plan for a file given its stored checkpoint.
pub fn plan(stat: &FileStat, stored: Option<&Checkpoint>) -> Plan {
    let Some(cp) = stored else {
        return Plan::FromStart;
    };
    if cp.dev != stat.dev || cp.inode != stat.inode || stat.size < cp.offset {
        return Plan::FromStart;
    }
    if cp.size == stat.size && cp.mtime_ns == stat.mtime_ns {
        return Plan::Unchanged;
    }
    Plan::Verify(cp.clone())
}

/// The byte ranges the two samples of a prefix ending at `offset` cover: `(head, tail)`.
pub fn sample_ranges(offset: u64) -> (std::ops::Range<u64>, std::ops::Range<u64>) {
    let len = offset.min(SAMPLE_LEN);
    (0..len, offset - len..offset)
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn hash_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Whether a checkpoint write `new` may replace `stored` for the same file.
///
/// Always, unless both describe the same prefix (same identity and head) and `stored` is
/// further along: then a slower import running at the same time would move it back, and the
/// next run would only re-read (harmlessly) what is already in the ledger.
pub fn replaces(new: &Checkpoint, stored: &Checkpoint) -> bool {
    let same_file =
        new.dev == stored.dev && new.inode == stored.inode && new.head_hash == stored.head_hash;
    !(same_file && stored.offset > new.offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(size: u64, mtime_ns: i64) -> FileStat {
        FileStat {
            dev: 1,
            inode: 2,
            size,
            mtime_ns,
        }
    }

    fn cp(size: u64, offset: u64, mtime_ns: i64) -> Checkpoint {
        Checkpoint {
            file: "f".into(),
            dev: 1,
            inode: 2,
            size,
            mtime_ns,
            offset,
            head_hash: "h".into(),
            tail_hash: "t".into(),
        }
    }

    #[test]
    fn plans() {
        assert_eq!(plan(&stat(10, 1), None), Plan::FromStart);
        assert_eq!(plan(&stat(10, 1), Some(&cp(10, 8, 1))), Plan::Unchanged);
        let grown = cp(10, 8, 1);
        assert_eq!(
            plan(&stat(20, 2), Some(&grown)),
            Plan::Verify(grown.clone())
        );
        // Same size, touched: check the prefix.
        assert_eq!(plan(&stat(10, 5), Some(&grown)), Plan::Verify(grown));
        // Shorter than the offset read: rewritten.
        assert_eq!(plan(&stat(7, 1), Some(&cp(10, 8, 1))), Plan::FromStart);
        // Another inode (replaced by a copy): from the start.
        let mut other = stat(10, 1);
        other.inode = 3;
        assert_eq!(plan(&other, Some(&cp(10, 8, 1))), Plan::FromStart);
    }

    #[test]
    fn samples_cover_the_prefix_ends() {
        assert_eq!(sample_ranges(0), (0..0, 0..0));
        assert_eq!(sample_ranges(100), (0..100, 0..100));
        assert_eq!(sample_ranges(10_000), (0..4096, 5904..10_000));
        assert_eq!(
            hash_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_checkpoint_never_moves_back_on_the_same_prefix() {
        let far = cp(10, 8, 1);
        let near = cp(10, 4, 1);
        assert!(!replaces(&near, &far));
        assert!(replaces(&far, &near));
        let mut rewritten = near.clone();
        rewritten.head_hash = "other".into();
        assert!(replaces(&rewritten, &far));
    }
}
