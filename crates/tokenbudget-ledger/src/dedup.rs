//! De-duplication, defined once: the key of a response and which line of it wins.
//!
//! # The rules, and which wins on every collision
//!
//! 1. **Key.** `message.id` + `requestId` when both exist (`"{message_id}:{request_id}"`),
//!    else `message.id` alone. A line with neither has no key and is counted as `no_id` by
//!    the importer, never stored. The request id is part of the key because Claude Code has
//!    written the same message id for two distinct API calls (a retried request in another
//!    session); the message id alone is the fallback because older transcripts lack
//!    `requestId`, and without any key every snapshot line would count again (ccusage #976).
//! 2. **Several lines, one key** (streaming snapshots; thinking, text and tool_use parts of
//!    one response written as separate lines): one record, the response's **final** usage.
//!    Not the first line (ccusage #888, #797: totals low) and not the sum (every snapshot
//!    repeats the counts so far). Snapshots only grow, so the final one is the greatest:
//!    [`supersedes`] orders candidates by output tokens, then input, cache writes (5 m, 1 h),
//!    cache reads, web search and fetch requests, then timestamp. Choosing by value, not by
//!    read order, is what makes the result independent of the order files are read in, of a
//!    resume from a checkpoint in the middle of a response, and of two imports running at
//!    once: keeping the greater of two candidates is commutative, associative and idempotent,
//!    so any interleaving of writes ends in the same row.
//! 3. **A subagent or sidechain file replaying a parent's lines** carries the same message and
//!    request ids: same key, so it counts once (ccusage #913). The usage is equal, so the tie
//!    is broken by location: the smaller `(file, offset)` wins. A parent `s.jsonl` sorts
//!    before its `s/subagents/…` files (`.` < `/`), so the parent keeps the row.
//! 4. **The same message id in two sessions with two request ids**: two keys, two responses,
//!    both counted.
//! 5. **The same file imported twice** (a rerun, a rewritten file re-read from the start, a
//!    copied directory from another machine): the same keys and values; the stored row is
//!    kept as it is (a candidate must be strictly greater to replace it), so nothing doubles.
//!
//! Last resort for a total order: equal usage, timestamp and location (the same line read
//! twice) compare by the raw usage text, so even a rewritten line decides the same way
//! whichever copy is seen first.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::record::UsageRecord;

/// The longest key the ledger stores, in bytes (the core's idempotency key limit, so a key
/// can also name a charge).
pub const MAX_KEY_LEN: usize = 255;

/// The de-duplication key of a line, or `None` when it has no message id.
///
/// Keys longer than [`MAX_KEY_LEN`] (never seen in real transcripts) are returned as is; the
/// store rejects them with a typed error.
pub fn key(message_id: Option<&str>, request_id: Option<&str>) -> Option<String> {
    let message_id = message_id.filter(|id| !id.is_empty())?;
    Some(match request_id.filter(|id| !id.is_empty()) {
        Some(request_id) => format!("{message_id}:{request_id}"),
        None => message_id.to_owned(),
    })
}

/// The order of candidates for one key: greater is more final (see the module docs).
pub fn rank(a: &UsageRecord, b: &UsageRecord) -> Ordering {
    let (ua, ub) = (&a.usage, &b.usage);
    ua.output
        .cmp(&ub.output)
        .then(ua.input.cmp(&ub.input))
        .then(ua.cache_write_5m.cmp(&ub.cache_write_5m))
        .then(ua.cache_write_1h.cmp(&ub.cache_write_1h))
        .then(ua.cache_read.cmp(&ub.cache_read))
        .then(ua.web_search_requests.cmp(&ub.web_search_requests))
        .then(ua.web_fetch_requests.cmp(&ub.web_fetch_requests))
        .then(a.timestamp.cmp(&b.timestamp))
        // Reversed: the smaller location is the greater candidate.
        .then_with(|| (&b.file, b.offset).cmp(&(&a.file, a.offset)))
        .then_with(|| b.raw_usage.cmp(&a.raw_usage))
}

/// Whether `candidate` replaces `stored` (same key): strictly greater in [`rank`].
pub fn supersedes(candidate: &UsageRecord, stored: &UsageRecord) -> bool {
    rank(candidate, stored) == Ordering::Greater
}

/// Merges `candidate` into `map` by its key: inserted when new, replacing the stored one when
/// it [`supersedes`] it. Returns what happened.
pub fn merge(map: &mut BTreeMap<String, UsageRecord>, candidate: UsageRecord) -> Merge {
    match map.get_mut(&candidate.key) {
        None => {
            map.insert(candidate.key.clone(), candidate);
            Merge::Inserted
        }
        Some(stored) if supersedes(&candidate, stored) => {
            *stored = candidate;
            Merge::Replaced
        }
        Some(_) => Merge::Unchanged,
    }
}

/// The outcome of merging one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// A new key.
    Inserted,
    /// The candidate was more final than the stored record and replaced it.
    Replaced,
    /// The stored record stays.
    Unchanged,
}

/// The de-duplicated records of any number of candidates, by key.
pub fn dedup(candidates: impl IntoIterator<Item = UsageRecord>) -> BTreeMap<String, UsageRecord> {
    let mut map = BTreeMap::new();
    for candidate in candidates {
        merge(&mut map, candidate);
    }
    map
}
