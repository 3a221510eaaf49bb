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
//! 6. **One response logged once with and once without `requestId`** (same `message.id`:
//!    keys `msg` and `msg:req`, ccusage #976 in reverse): the record with the request id
//!    wins and the one keyed by the message id alone is **shadowed**: stored (nothing read is
//!    lost) but left out of [`UsageStore::records`](crate::UsageStore::records), and so out of
//!    reports and verify. The request id wins because it is what tells two API calls apart
//!    (rule 4): a line without it cannot say which call it was, and when two calls share the
//!    message id (two sessions, two request ids) it is one of them, not a third response.
//!    Shadowing is a fact the store keeps, decided **when writing**, in the transaction that
//!    writes either of the two rows: writing a key marks the stored keys it shadows
//!    ([`shadowed_by`]: the key cut at each `:` that leaves a non-empty request id), and
//!    marks itself when a stored key shadows it (one range probe of the key index,
//!    `[key + ":", key + ";")`, [`sibling_range`]). Keys only ever get added, so a shadowed
//!    record stays shadowed and the flag is the same in any order of arrival, on a resume
//!    and with two imports at once (a store serializes the writers of keys that can shadow
//!    each other: they share their [`root`]). Reads then filter one stored flag instead of
//!    probing for siblings row by row. Each write stays a one-row merge by rule 2 for the
//!    usage itself; only the flag is set on the sibling.
//!    Note: the bare line's usage is not folded into its sibling; if it held a more final
//!    snapshot than any line with the request id, the sibling's own final usage is counted.
//!    Claude Code writes the request id on every line of a response it writes it on, so
//!    this is the mixed-version case only.
//!
//! Last resort for a total order: equal usage, timestamp and location (the same line read
//! twice) compare by the raw usage text, so even a rewritten line decides the same way
//! whichever copy is seen first; then a reported usage beats an estimated one (a gateway
//! stream cut mid-answer estimates; what the API reported is the truth).
//!
//! **The budget a response was charged to** is a property of the response, not of one of its
//! lines: whichever candidate wins, the merged record keeps the greater of the two `budget`s
//! (`Some` over `None`, then bytewise), so a transcript line re-read after the gateway or
//! `import --charge` recorded the budget never erases it, and the merge stays commutative,
//! associative and idempotent.
//!
//! **The project and the session** are properties of the response too: the gateway writes
//! its rows with an empty project (it cannot know the directory Claude Code runs in), and the
//! transcript line of the same response, merged by key, knows it. Whichever candidate wins,
//! the merged record keeps the greater of the two `project`s and of the two `session_id`s
//! (bytewise; the empty string is the least, so a known value always beats an empty one, in
//! any order). Two different known values (a directory copied from a machine with another
//! home path, a resumed session replaying its lines) keep the bytewise greater: a choice as
//! arbitrary as any, but the same in every order, on a resume and with two imports at once,
//! because taking the greater is commutative, associative and idempotent.

use std::borrow::Cow;
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

/// Whether the record keyed `key` is shadowed by the record keyed `sibling` (rule 6):
/// `sibling` is `key`, a `:`, and a non-empty request id.
pub fn shadows(sibling: &str, key: &str) -> bool {
    sibling.len() > key.len() + 1
        && sibling.starts_with(key)
        && sibling.as_bytes()[key.len()] == b':'
}

/// The half-open range of keys that contains every key that can shadow `key` (and, besides
/// `key + ":"` itself, only such keys): `[key + ":", key + ";")` (`;` follows `:` in bytes).
pub fn sibling_range(key: &str) -> (String, String) {
    (format!("{key}:"), format!("{key};"))
}

/// The keys that `key` shadows (rule 6): `key` cut before each `:` that is followed by a
/// non-empty rest, shortest first. A store marks these when it writes `key`.
pub fn shadowed_by(key: &str) -> impl Iterator<Item = &str> {
    key.match_indices(':')
        .map(move |(i, _)| &key[..i])
        .filter(move |bare| shadows(key, bare))
}

/// The part of `key` before its first `:` (all of it when it has none). Two keys of which
/// one shadows the other have the same root, so a store that serializes the writers of one
/// root serializes every pair that can shadow each other.
pub fn root(key: &str) -> &str {
    key.split_once(':').map_or(key, |(root, _)| root)
}

/// Whether any key of `map` shadows `key`.
pub fn is_shadowed<V>(map: &BTreeMap<String, V>, key: &str) -> bool {
    let (from, to) = sibling_range(key);
    map.range(from..to)
        .any(|(sibling, _)| shadows(sibling, key))
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
        // Reversed: reported (false) is the greater candidate.
        .then(b.estimated.cmp(&a.estimated))
}

/// The budget of the merged record of `a` and `b` (see the module docs).
pub fn merged_budget(a: Option<&str>, b: Option<&str>) -> Option<String> {
    a.max(b).map(str::to_owned)
}

/// The project or session of the merged record of `a` and `b` (see the module docs): the
/// greater, so a non-empty one beats an empty one.
pub fn merged_label<'a>(a: &'a str, b: &'a str) -> &'a str {
    a.max(b)
}

/// Merges what the response knows besides the winning line (budget, project, session) from
/// `other` into `winner`; returns whether `winner` changed.
fn keep_known(winner: &mut UsageRecord, other: &UsageRecord) -> bool {
    let budget = merged_budget(winner.budget.as_deref(), other.budget.as_deref());
    let project = merged_label(&winner.project, &other.project).to_owned();
    let session = merged_label(&winner.session_id, &other.session_id).to_owned();
    let changed =
        budget != winner.budget || project != winner.project || session != winner.session_id;
    winner.budget = budget;
    winner.project = project;
    winner.session_id = session;
    changed
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
            let previous = std::mem::replace(stored, candidate);
            keep_known(stored, &previous);
            Merge::Replaced
        }
        Some(stored) => {
            if keep_known(stored, &candidate) {
                Merge::Replaced
            } else {
                Merge::Unchanged
            }
        }
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

/// `records` with one record per key, merged as [`dedup`] merges them, in key order:
/// borrowed as they are when they already have one record per key in key order (an
/// importer's batch), so a store writes them without copying.
pub fn unique_by_key(records: &[UsageRecord]) -> Vec<Cow<'_, UsageRecord>> {
    if records.windows(2).all(|w| w[0].key < w[1].key) {
        records.iter().map(Cow::Borrowed).collect()
    } else {
        dedup(records.iter().cloned())
            .into_values()
            .map(Cow::Owned)
            .collect()
    }
}

/// The de-duplicated records of any number of candidates, by key.
pub fn dedup(candidates: impl IntoIterator<Item = UsageRecord>) -> BTreeMap<String, UsageRecord> {
    let mut map = BTreeMap::new();
    for candidate in candidates {
        merge(&mut map, candidate);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Usage;

    /// A candidate line: message id, request id, output tokens, file, offset.
    type Line = (&'static str, Option<&'static str>, u64, &'static str, u64);
    /// A rule: its name, the candidate lines, the records that remain.
    type Rule = (
        &'static str,
        Vec<Line>,
        Vec<(&'static str, u64, &'static str)>,
    );

    fn candidate((msg, req, output, file, offset): Line) -> UsageRecord {
        UsageRecord {
            key: key(Some(msg), req).unwrap(),
            source: "claude-code".into(),
            machine: String::new(),
            session_id: "s".into(),
            project: "p".into(),
            model: "m".into(),
            timestamp: 1,
            usage: Usage {
                input: 3,
                output,
                ..Usage::default()
            },
            raw_usage: format!("{{\"output_tokens\":{output}}}"),
            file: file.into(),
            offset,
            estimated: false,
            budget: None,
        }
    }

    #[test]
    fn the_key_is_message_id_and_request_id_else_message_id() {
        assert_eq!(
            key(Some("msg_1"), Some("req_1")).as_deref(),
            Some("msg_1:req_1")
        );
        assert_eq!(key(Some("msg_1"), None).as_deref(), Some("msg_1"));
        assert_eq!(key(Some("msg_1"), Some("")).as_deref(), Some("msg_1"));
        assert_eq!(key(None, Some("req_1")), None);
        assert_eq!(key(Some(""), Some("req_1")), None);
    }

    /// One row per collision rule: the candidate lines (in read order) and the records that
    /// must remain `(key, output, file)`. Every row is also checked in reverse read order.
    #[test]
    fn every_collision_rule() {
        let table: Vec<Rule> = vec![
            (
                "streaming snapshots of one response keep the final usage, not first nor sum",
                vec![
                    ("m1", Some("r1"), 1, "s.jsonl", 0),
                    ("m1", Some("r1"), 40, "s.jsonl", 100),
                    ("m1", Some("r1"), 120, "s.jsonl", 200),
                ],
                vec![("m1:r1", 120, "s.jsonl")],
            ),
            (
                "thinking/text/tool_use parts: one response, its largest (final) usage",
                vec![
                    ("m1", Some("r1"), 8, "s.jsonl", 0),
                    ("m1", Some("r1"), 300, "s.jsonl", 100),
                    ("m1", Some("r1"), 300, "s.jsonl", 200),
                ],
                vec![("m1:r1", 300, "s.jsonl")],
            ),
            (
                "without requestId the message id alone is the key: snapshots still count once",
                vec![
                    ("m2", None, 5, "s.jsonl", 0),
                    ("m2", None, 9, "s.jsonl", 100),
                ],
                vec![("m2", 9, "s.jsonl")],
            ),
            (
                "a subagent file replaying the parent's line counts once; the parent keeps it",
                vec![
                    ("m3", Some("r3"), 50, "s/subagents/agent-1.jsonl", 0),
                    ("m3", Some("r3"), 50, "s.jsonl", 900),
                ],
                vec![("m3:r3", 50, "s.jsonl")],
            ),
            (
                "the same message id in two sessions with two request ids is two responses",
                vec![
                    ("m4", Some("ra"), 10, "a.jsonl", 0),
                    ("m4", Some("rb"), 20, "b.jsonl", 0),
                ],
                vec![("m4:ra", 10, "a.jsonl"), ("m4:rb", 20, "b.jsonl")],
            ),
            (
                "the same line read twice (a rerun, a copy from another machine) counts once",
                vec![
                    ("m5", Some("r5"), 7, "/home/a/s.jsonl", 10),
                    ("m5", Some("r5"), 7, "/home/a/s.jsonl", 10),
                    ("m5", Some("r5"), 7, "/mnt/b/s.jsonl", 10),
                ],
                vec![("m5:r5", 7, "/home/a/s.jsonl")],
            ),
        ];
        for (rule, lines, want) in table {
            for reversed in [false, true] {
                let mut candidates: Vec<UsageRecord> =
                    lines.iter().copied().map(candidate).collect();
                if reversed {
                    candidates.reverse();
                }
                let got: Vec<(String, u64, String)> = dedup(candidates)
                    .into_values()
                    .map(|r| (r.key, r.usage.output, r.file))
                    .collect();
                let want: Vec<(String, u64, String)> = want
                    .iter()
                    .map(|(k, o, f)| ((*k).to_owned(), *o, (*f).to_owned()))
                    .collect();
                assert_eq!(got, want, "{rule} (reversed: {reversed})");
            }
        }
    }

    /// Rule 6: `(keys stored, keys counted)`, checked in every order of writing.
    #[test]
    fn a_record_without_request_id_is_shadowed_by_one_with() {
        let table: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
            (
                "with and without requestId: once",
                vec!["m", "m:r"],
                vec!["m:r"],
            ),
            (
                "two sessions, two request ids, plus a bare line: two responses",
                vec!["m:ra", "m", "m:rb"],
                vec!["m:ra", "m:rb"],
            ),
            ("a bare line alone counts", vec!["m"], vec!["m"]),
            (
                "another message id sharing a prefix does not shadow",
                vec!["m", "m2:r", "mm:r", "m;"],
                vec!["m", "m2:r", "m;", "mm:r"],
            ),
            (
                "an empty request id is no sibling",
                vec!["m", "m:"],
                vec!["m", "m:"],
            ),
        ];
        for (rule, keys, want) in table {
            let mut orders = vec![keys.clone()];
            let mut rev = keys.clone();
            rev.reverse();
            orders.push(rev);
            for order in orders {
                let map: BTreeMap<String, ()> =
                    order.iter().map(|k| ((*k).to_owned(), ())).collect();
                let counted: Vec<&str> = map
                    .keys()
                    .filter(|k| !is_shadowed(&map, k))
                    .map(String::as_str)
                    .collect();
                assert_eq!(counted, want, "{rule} ({order:?})");
            }
        }
        assert!(shadows("m:r", "m"));
        assert!(!shadows("m", "m:r"));
        assert!(!shadows("m:", "m"));
        assert!(!shadows("mx:r", "m"));
    }

    #[test]
    fn a_reported_usage_beats_an_estimated_one_and_the_budget_is_never_erased() {
        let reported = candidate(("m", Some("r"), 5, "f", 0));
        let mut estimated = reported.clone();
        estimated.estimated = true;
        estimated.budget = Some("team".into());
        for order in [
            [reported.clone(), estimated.clone()],
            [estimated.clone(), reported.clone()],
        ] {
            let got = dedup(order).into_values().next().unwrap();
            assert!(!got.estimated, "the reported usage wins");
            assert_eq!(got.budget.as_deref(), Some("team"), "the budget stays");
        }
        assert_eq!(merged_budget(None, None), None);
        assert_eq!(merged_budget(Some("a"), None).as_deref(), Some("a"));
        assert_eq!(merged_budget(Some("a"), Some("b")).as_deref(), Some("b"));
        assert_eq!(merged_budget(Some("b"), Some("a")).as_deref(), Some("b"));
    }

    #[test]
    fn a_known_project_and_session_beat_empty_ones_in_any_order() {
        let transcript = candidate(("m", Some("r"), 5, "/t/s.jsonl", 10));
        // The gateway's row of the same response: same usage, no file (so it wins the
        // location tie), no project, no session.
        let mut gateway = transcript.clone();
        gateway.file = String::new();
        gateway.offset = 0;
        gateway.project = String::new();
        gateway.session_id = String::new();
        gateway.source = "gateway".into();
        let mut copy = transcript.clone();
        copy.file = "/u/s.jsonl".into();
        copy.project = "another-home".into();
        let all = [gateway.clone(), transcript.clone(), copy.clone()];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            let got = dedup(order.iter().map(|i| all[*i].clone()))
                .into_values()
                .next()
                .unwrap();
            assert_eq!(got.file, "", "the gateway's row wins ({order:?})");
            assert_eq!(got.session_id, "s", "{order:?}");
            // Two known projects: the bytewise greater, in every order.
            assert_eq!(got.project, "p", "{order:?}");
        }
        let pair = dedup([gateway.clone(), transcript.clone()]);
        assert_eq!(pair.values().next().unwrap().project, "p");
        assert_eq!(merged_label("", "x"), "x");
        assert_eq!(merged_label("x", ""), "x");
        let mut map = BTreeMap::new();
        merge(&mut map, gateway);
        assert_eq!(merge(&mut map, transcript.clone()), Merge::Replaced);
        assert_eq!(merge(&mut map, transcript), Merge::Unchanged);
    }

    #[test]
    fn a_key_shadows_its_prefixes_at_each_colon_and_shares_their_root() {
        fn cut(k: &str) -> Vec<&str> {
            shadowed_by(k).collect()
        }
        assert_eq!(cut("msg_1:req_1"), ["msg_1"]);
        assert_eq!(cut("msg_1"), Vec::<&str>::new());
        assert_eq!(
            cut("msg_1:"),
            Vec::<&str>::new(),
            "an empty request id shadows nothing"
        );
        assert_eq!(cut("a:b:c"), ["a", "a:b"]);
        assert_eq!(
            cut(":x"),
            [""],
            "the empty key is never stored, so this marks nothing"
        );
        for key in ["msg_1:req_1", "a:b:c", "msg_1"] {
            for bare in shadowed_by(key) {
                assert!(shadows(key, bare));
                assert_eq!(root(bare), root(key), "{key} and {bare}");
                let (from, to) = sibling_range(bare);
                assert!(from.as_str() < key && key < to.as_str());
            }
        }
        assert_eq!(root("msg_1:req_1"), "msg_1");
        assert_eq!(root("msg_1"), "msg_1");
        assert!(!shadows("msg_10", "msg_1"));
    }

    #[test]
    fn unique_by_key_borrows_a_sorted_batch_and_merges_any_other() {
        let a = candidate(("m1", Some("r"), 5, "f", 0));
        let b = candidate(("m2", Some("r"), 5, "f", 0));
        let mut a2 = a.clone();
        a2.usage.output = 9;
        let sorted = [a.clone(), b.clone()];
        let got = unique_by_key(&sorted);
        assert!(got.iter().all(|r| matches!(r, Cow::Borrowed(_))));
        assert_eq!(got.len(), 2);
        for batch in [
            vec![b.clone(), a.clone(), a2.clone()],
            vec![a.clone(), a2.clone(), b],
        ] {
            let got: Vec<UsageRecord> = unique_by_key(&batch)
                .into_iter()
                .map(Cow::into_owned)
                .collect();
            let want: Vec<UsageRecord> = dedup(batch.clone()).into_values().collect();
            assert_eq!(got, want);
            assert_eq!(got[0].usage.output, 9);
        }
        assert!(unique_by_key(&[]).is_empty());
    }

    #[test]
    fn rank_is_a_total_order_so_merging_is_commutative() {
        let a = candidate(("m", Some("r"), 5, "f", 0));
        let mut b = a.clone();
        b.raw_usage.push(' ');
        assert_ne!(rank(&a, &b), Ordering::Equal);
        assert_eq!(rank(&a, &b), rank(&b, &a).reverse());
        assert!(!supersedes(&a, &a));
        let mut map = BTreeMap::new();
        assert_eq!(merge(&mut map, a.clone()), Merge::Inserted);
        assert_eq!(merge(&mut map, a.clone()), Merge::Unchanged);
        let mut later = a.clone();
        later.usage.output = 6;
        assert_eq!(merge(&mut map, later), Merge::Replaced);
        assert_eq!(merge(&mut map, a), Merge::Unchanged);
    }
}
