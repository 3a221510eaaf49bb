//! The conformance suite: one `pub async fn` per `# Behavior` bullet of
//! [`UsageStore`](crate::UsageStore).

use std::collections::BTreeMap;

use crate::aggregate::{self, AggregateQuery, AggregateRow, GroupBy};
use crate::checkpoint::Checkpoint;
use crate::dedup;
use crate::error::Error;
use crate::record::{Usage, UsageRecord};
use crate::store::{DynUsageStore, RecordQuery, WriteSummary};
use crate::testkit::UsageHarness;

/// A record of `key` with `output` output tokens, at `ts` seconds, in `file`.
pub fn record(key: &str, output: u64, ts: i64, file: &str) -> UsageRecord {
    UsageRecord {
        key: key.to_owned(),
        source: "claude-code".to_owned(),
        machine: "m1".to_owned(),
        session_id: "s1".to_owned(),
        project: "p1".to_owned(),
        model: "claude-sonnet-4-5".to_owned(),
        timestamp: ts * 1_000_000,
        usage: Usage {
            input: 10,
            output,
            cache_write_5m: 3,
            cache_write_1h: 2,
            cache_read: 100,
            web_search_requests: 1,
            web_fetch_requests: 0,
        },
        raw_usage: format!(r#"{{"input_tokens":10,"output_tokens":{output},"x":"é"}}"#),
        file: file.to_owned(),
        offset: 0,
        estimated: false,
        budget: None,
    }
}

/// A checkpoint of `file` at `offset`.
pub fn checkpoint(file: &str, offset: u64, head: &str) -> Checkpoint {
    Checkpoint {
        file: file.to_owned(),
        dev: 2049,
        inode: u64::from(u32::MAX) + 7,
        size: offset + 10,
        mtime_ns: 1_764_000_000_123_456_789,
        offset,
        head_hash: head.to_owned(),
        tail_hash: format!("tail-{offset}"),
    }
}

async fn all(store: &DynUsageStore) -> Vec<UsageRecord> {
    store
        .records(&RecordQuery::default())
        .await
        .expect("records")
}

fn by_key(records: Vec<UsageRecord>) -> BTreeMap<String, UsageRecord> {
    records.into_iter().map(|r| (r.key.clone(), r)).collect()
}

/// A new key is inserted, a superseding record replaces, anything else changes nothing.
pub async fn writes_insert_new_keys_and_replace_only_when_superseded(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let first = record("msg_1:req_1", 5, 100, "a.jsonl");
    let w = store
        .write(std::slice::from_ref(&first), None)
        .await
        .unwrap();
    assert_eq!(
        w,
        WriteSummary {
            inserted: 1,
            replaced: 0,
            unchanged: 0
        }
    );
    let final_ = record("msg_1:req_1", 50, 101, "a.jsonl");
    let w = store
        .write(std::slice::from_ref(&final_), None)
        .await
        .unwrap();
    assert_eq!(w.replaced, 1);
    // An earlier snapshot and a repeat of the final one change nothing.
    let w = store.write(&[first, final_.clone()], None).await.unwrap();
    assert_eq!(w.unchanged, 2);
    assert_eq!(all(&store).await, vec![final_]);
}

/// Any order and any repetition of the same candidates end in the same rows.
pub async fn merging_is_order_independent_and_idempotent(h: &impl UsageHarness) {
    let candidates = vec![
        record("k1", 5, 100, "a.jsonl"),
        record("k1", 50, 101, "a.jsonl"),
        record("k1", 50, 101, "a/subagents/x.jsonl"),
        record("k2", 7, 102, "b.jsonl"),
        record("k2", 7, 102, "a.jsonl"),
        record("k3", 1, 90, "c.jsonl"),
    ];
    let expected: Vec<UsageRecord> = {
        let mut v: Vec<_> = dedup::dedup(candidates.clone()).into_values().collect();
        v.sort_by(|a, b| (a.timestamp, &a.key).cmp(&(b.timestamp, &b.key)));
        v
    };
    let orders: Vec<Vec<usize>> = vec![
        vec![0, 1, 2, 3, 4, 5],
        vec![5, 4, 3, 2, 1, 0],
        vec![2, 0, 4, 1, 5, 3, 2, 0],
    ];
    for order in orders {
        let store = h.fresh().await;
        for i in &order {
            store.write(&[candidates[*i].clone()], None).await.unwrap();
        }
        store.write(&candidates, None).await.unwrap();
        assert_eq!(all(&store).await, expected, "order {order:?}");
    }
}

/// Several records with one key in one call merge as if written one by one.
pub async fn one_batch_with_repeated_keys_merges_as_one_by_one(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let batch = vec![
        record("k", 1, 100, "a.jsonl"),
        record("k", 9, 101, "a.jsonl"),
        record("k", 4, 102, "a.jsonl"),
    ];
    let w = store.write(&batch, None).await.unwrap();
    assert_eq!(w.inserted + w.replaced + w.unchanged, 3);
    assert_eq!(w.inserted, 1);
    let rows = all(&store).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].usage.output, 9);
}

/// The checkpoint commits with the records or not at all.
pub async fn records_and_checkpoint_are_one_transaction(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let cp = checkpoint("/t/a.jsonl", 100, "h1");
    store
        .write(&[record("k1", 1, 1, "/t/a.jsonl")], Some(&cp))
        .await
        .unwrap();
    assert_eq!(store.checkpoint("/t/a.jsonl").await.unwrap(), Some(cp));
    // A failing batch (its second record is invalid) writes neither its records nor its
    // checkpoint.
    let cp2 = checkpoint("/t/a.jsonl", 200, "h1");
    let err = store
        .write(
            &[
                record("k2", 1, 2, "/t/a.jsonl"),
                record("", 1, 3, "/t/a.jsonl"),
            ],
            Some(&cp2),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRecord { .. }), "{err}");
    assert_eq!(
        store
            .checkpoint("/t/a.jsonl")
            .await
            .unwrap()
            .unwrap()
            .offset,
        100
    );
    assert_eq!(all(&store).await.len(), 1);
    // A checkpoint alone is a write too.
    store.write(&[], Some(&cp2)).await.unwrap();
    assert_eq!(store.checkpoint("/t/a.jsonl").await.unwrap(), Some(cp2));
}

/// A checkpoint behind the stored one on the same prefix is ignored; a new prefix replaces.
pub async fn checkpoint_is_never_moved_back_on_the_same_prefix(h: &impl UsageHarness) {
    let store = h.fresh().await;
    store
        .write(&[], Some(&checkpoint("f", 500, "h1")))
        .await
        .unwrap();
    store
        .write(&[], Some(&checkpoint("f", 300, "h1")))
        .await
        .unwrap();
    assert_eq!(store.checkpoint("f").await.unwrap().unwrap().offset, 500);
    // Rewritten: another head, so a smaller offset is the truth now.
    store
        .write(&[], Some(&checkpoint("f", 40, "h2")))
        .await
        .unwrap();
    let cp = store.checkpoint("f").await.unwrap().unwrap();
    assert_eq!((cp.offset, cp.head_hash.as_str()), (40, "h2"));
}

/// Empty keys, keys over 255 bytes and counts above i64::MAX are rejected; nothing written.
pub async fn invalid_records_are_rejected_and_nothing_is_written(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let mut huge = record("k-huge", 1, 1, "a");
    huge.usage.cache_read = u64::MAX;
    let cases = [
        record("", 1, 1, "a"),
        record(&"x".repeat(256), 1, 1, "a"),
        huge,
    ];
    for bad in cases {
        let err = store
            .write(&[record("ok", 1, 1, "a"), bad.clone()], None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidRecord { .. }), "{err}");
    }
    assert!(all(&store).await.is_empty());
    // The longest valid key is fine.
    store
        .write(&[record(&"y".repeat(255), 1, 1, "a")], None)
        .await
        .unwrap();
    assert_eq!(all(&store).await.len(), 1);
}

/// A checkpoint is read back exactly; an unknown file has none.
pub async fn checkpoint_round_trips_field_for_field(h: &impl UsageHarness) {
    let store = h.fresh().await;
    assert_eq!(store.checkpoint("/nowhere").await.unwrap(), None);
    let mut cp = checkpoint("/t/é x.jsonl", 123_456_789_012, "head");
    cp.dev = u64::from(u32::MAX) * 3;
    cp.mtime_ns = -5;
    store.write(&[], Some(&cp)).await.unwrap();
    assert_eq!(store.checkpoint(&cp.file).await.unwrap(), Some(cp));
}

/// Every file's checkpoint once, in file order.
pub async fn checkpoints_are_listed_once_in_file_order(h: &impl UsageHarness) {
    let store = h.fresh().await;
    for (file, offset) in [("c", 1), ("a", 1), ("b", 1), ("a", 2)] {
        store
            .write(&[], Some(&checkpoint(file, offset, "h")))
            .await
            .unwrap();
    }
    let files: Vec<(String, u64)> = store
        .checkpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.file, c.offset))
        .collect();
    assert_eq!(
        files,
        [
            ("a".to_owned(), 2),
            ("b".to_owned(), 1),
            ("c".to_owned(), 1)
        ]
    );
}

/// Records come back whole, ordered by (timestamp, key); since inclusive, until exclusive.
pub async fn records_are_ordered_and_filtered_by_time(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let mut odd = record("b", 1, 20, "f");
    odd.usage = Usage {
        input: i64::MAX as u64,
        output: 1,
        cache_write_5m: 2,
        cache_write_1h: 3,
        cache_read: 4,
        web_search_requests: 5,
        web_fetch_requests: 6,
    };
    odd.offset = i64::MAX as u64;
    odd.timestamp = -1_000_000;
    let rows = vec![
        record("c", 1, 10, "f"),
        record("a", 1, 20, "f"),
        odd.clone(),
        record("d", 1, 20, "f"),
    ];
    store.write(&rows, None).await.unwrap();
    let keys = |v: Vec<UsageRecord>| v.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(keys(all(&store).await), ["b", "c", "a", "d"]);
    assert_eq!(by_key(all(&store).await)["b"], odd);
    let q = RecordQuery {
        since: Some(10_000_000),
        until: Some(20_000_000),
        without_raw: false,
    };
    assert_eq!(keys(store.records(&q).await.unwrap()), ["c"]);
    let q = RecordQuery {
        since: Some(10_000_001),
        until: None,
        without_raw: false,
    };
    assert_eq!(keys(store.records(&q).await.unwrap()), ["a", "d"]);
}

/// `without_raw` leaves `raw_usage` empty and everything else as stored.
pub async fn records_without_raw_have_empty_raw_usage(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let r = record("k", 1, 1, "f");
    store.write(std::slice::from_ref(&r), None).await.unwrap();
    let got = store
        .records(&RecordQuery {
            without_raw: true,
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    let mut expected = r;
    expected.raw_usage.clear();
    assert_eq!(got, vec![expected]);
}

/// Writers on two handles of one database, at once, end in the merged result.
pub async fn concurrent_writers_converge_on_the_merged_result(h: &impl UsageHarness) {
    let a = h.fresh().await;
    let b = h.same_database(&a).await;
    let mut candidates = Vec::new();
    for k in 0..40 {
        for snapshot in 0..5 {
            candidates.push(record(
                &format!("k{k}"),
                snapshot * 10 + k,
                100 + k as i64,
                "f",
            ));
        }
    }
    let expected: Vec<UsageRecord> = {
        let mut v: Vec<_> = dedup::dedup(candidates.clone()).into_values().collect();
        v.sort_by(|x, y| (x.timestamp, &x.key).cmp(&(y.timestamp, &y.key)));
        v
    };
    let forward = candidates.clone();
    let mut backward = candidates;
    backward.reverse();
    let ta = {
        let a = a.clone();
        tokio::spawn(async move {
            for chunk in forward.chunks(7) {
                a.write(chunk, None).await.unwrap();
            }
        })
    };
    let tb = tokio::spawn(async move {
        for chunk in backward.chunks(5) {
            b.write(chunk, None).await.unwrap();
        }
    });
    ta.await.unwrap();
    tb.await.unwrap();
    assert_eq!(all(&a).await, expected);
}

/// `estimated` and `budget` round-trip; a reported record beats an estimated one of the same
/// usage, and a later record without a budget never erases the stored budget.
pub async fn estimated_and_budget_round_trip_and_the_budget_is_never_erased(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let mut gateway = record("msg_g:req_g", 40, 100, "");
    gateway.source = crate::record::source::GATEWAY.to_owned();
    gateway.estimated = true;
    gateway.budget = Some("team-é".to_owned());
    store
        .write(std::slice::from_ref(&gateway), None)
        .await
        .unwrap();
    assert_eq!(all(&store).await, vec![gateway.clone()]);

    // The same response read from a transcript: same usage, reported, no budget.
    let mut transcript = gateway.clone();
    transcript.source = crate::record::source::CLAUDE_CODE.to_owned();
    transcript.estimated = false;
    transcript.budget = None;
    let w = store
        .write(std::slice::from_ref(&transcript), None)
        .await
        .unwrap();
    assert_eq!(w.replaced, 1);
    let mut expected = transcript.clone();
    expected.budget = gateway.budget.clone();
    assert_eq!(all(&store).await, vec![expected.clone()]);

    // Neither the estimate again nor the transcript again changes anything now.
    let w = store.write(&[gateway, transcript], None).await.unwrap();
    assert_eq!(w.unchanged, 2);
    assert_eq!(all(&store).await, vec![expected.clone()]);

    // A record that does not supersede can still name the budget of a row that had none.
    let plain = record("k2", 5, 200, "a.jsonl");
    store
        .write(std::slice::from_ref(&plain), None)
        .await
        .unwrap();
    let mut charged = plain.clone();
    charged.budget = Some("b".to_owned());
    let w = store
        .write(std::slice::from_ref(&charged), None)
        .await
        .unwrap();
    assert_eq!(w.replaced, 1);
    assert_eq!(all(&store).await, vec![expected, charged]);
}

/// Rule 6: a record keyed by the message id alone is left out while one of the same message
/// id with a request id is stored, in any order of writing and whatever the time filter; two
/// request ids stay two responses.
pub async fn a_record_without_request_id_is_shadowed_by_one_with(h: &impl UsageHarness) {
    let bare = record("msg_1", 50, 100, "a.jsonl");
    let with = record("msg_1:req_1", 40, 200, "a.jsonl");
    let other = record("msg_1:req_2", 7, 300, "b.jsonl");
    let prefix = record("msg_10", 1, 100, "a.jsonl");
    let lone = record("msg_2", 3, 100, "a.jsonl");
    let keys = |v: Vec<UsageRecord>| v.into_iter().map(|r| r.key).collect::<Vec<_>>();
    let orders: Vec<Vec<&UsageRecord>> = vec![
        vec![&bare, &with, &other, &prefix, &lone],
        vec![&lone, &prefix, &other, &with, &bare],
        vec![&with, &bare, &lone, &other, &prefix],
    ];
    for order in orders {
        let store = h.fresh().await;
        for r in &order {
            store.write(&[(*r).clone()], None).await.unwrap();
        }
        assert_eq!(
            keys(all(&store).await),
            ["msg_10", "msg_2", "msg_1:req_1", "msg_1:req_2"],
            "{:?}",
            order.iter().map(|r| &r.key).collect::<Vec<_>>()
        );
        // The sibling is outside the time range: the bare record stays shadowed.
        let q = RecordQuery {
            since: None,
            until: Some(150_000_000),
            without_raw: false,
        };
        assert_eq!(keys(store.records(&q).await.unwrap()), ["msg_10", "msg_2"]);
    }
    // One batch, before the sibling exists: counted; then shadowed once it is written.
    let store = h.fresh().await;
    store
        .write(&[bare.clone(), lone.clone()], None)
        .await
        .unwrap();
    assert_eq!(keys(all(&store).await), ["msg_1", "msg_2"]);
    store
        .write(std::slice::from_ref(&with), None)
        .await
        .unwrap();
    assert_eq!(keys(all(&store).await), ["msg_2", "msg_1:req_1"]);
}

/// Records with every key varied: models, projects (one empty, one non-ASCII), sessions,
/// budgets (none, two), times around bucket edges and before the epoch, prompts either side
/// of 200,000, and a bare record shadowed by its sibling.
fn varied_records() -> Vec<UsageRecord> {
    let mut out = Vec::new();
    let models = ["claude-sonnet-4-5", "claude-opus-4-5", "Zed"];
    let projects = ["p1", "", "projé", "B"];
    let budgets = [None, Some("team"), Some("Alpha")];
    for i in 0..60u64 {
        let mut r = record(&format!("msg_{i}:req_{i}"), i * 7 % 50, 0, "f");
        r.model = models[(i % 3) as usize].to_owned();
        r.project = projects[(i % 4) as usize].to_owned();
        r.session_id = format!("s{}", i % 5);
        r.budget = budgets[(i % 3 + i / 7 % 2) as usize % 3].map(str::to_owned);
        // Seconds: some before the epoch, some on and just off 15-minute and hour edges.
        r.timestamp = (i as i64 - 10) * 1_234_567_891 + [0, 1, -1][(i % 3) as usize];
        if i % 4 == 0 {
            r.usage.cache_read = 199_990 + i;
        }
        out.push(r);
    }
    // Rule 6: a bare record and its sibling; only the sibling counts.
    let mut bare = record("msg_bare", 999, 50, "f");
    bare.usage.input = 1_000_000;
    out.push(bare);
    out.push(record("msg_bare:req_x", 3, 51, "f"));
    out
}

/// `aggregate` equals grouping `records()` in Rust, for every grouping, bucket, filter and
/// tier set.
pub async fn aggregate_equals_grouping_the_records(h: &impl UsageHarness) {
    let store = h.fresh().await;
    store.write(&varied_records(), None).await.unwrap();
    let records = all(&store).await;
    let mut queries = Vec::new();
    for bits in 0..16u8 {
        for bucket_seconds in [0, 900, 3600, 86_400] {
            queries.push(AggregateQuery {
                bucket_seconds,
                group: GroupBy {
                    model: bits & 1 != 0,
                    project: bits & 2 != 0,
                    session: bits & 4 != 0,
                    budget: bits & 8 != 0,
                },
                prompt_tiers: if bits % 3 == 0 {
                    vec![200_000, 100_000, 200_000]
                } else {
                    Vec::new()
                },
                ..AggregateQuery::default()
            });
        }
    }
    let filtered = [
        AggregateQuery {
            since: Some(-5_000_000_000),
            until: Some(20_000_000_000),
            ..AggregateQuery::default()
        },
        AggregateQuery {
            project: Some("é".into()),
            ..AggregateQuery::default()
        },
        AggregateQuery {
            project: Some(String::new()),
            model: Some("opus".into()),
            ..AggregateQuery::default()
        },
        AggregateQuery {
            budget: Some("team".into()),
            session: Some("s2".into()),
            ..AggregateQuery::default()
        },
        AggregateQuery {
            model: Some("nothing-like-it".into()),
            ..AggregateQuery::default()
        },
    ];
    for mut q in filtered {
        q.bucket_seconds = 900;
        q.group = GroupBy::ALL;
        queries.push(q);
    }
    for q in queries {
        let want = aggregate::of_records(&records, &q).unwrap();
        let got = store.aggregate(&q).await.unwrap();
        assert_eq!(got, want, "{q:?}");
    }
}

/// Explicit buckets (UTC, floored, before the epoch too), filters and row order.
pub async fn aggregate_buckets_filters_and_order(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let mut rows = Vec::new();
    for (key, ts, model, project, budget) in [
        ("k1", -1, "m", "a", None),
        ("k2", 0, "m", "a", Some("b")),
        ("k3", 899, "m", "a", None),
        ("k4", 900, "M", "é", None),
        ("k5", 901, "z", "", Some("b")),
    ] {
        let mut r = record(key, 1, ts, "f");
        r.model = model.to_owned();
        r.project = project.to_owned();
        r.budget = budget.map(str::to_owned);
        rows.push(r);
    }
    store.write(&rows, None).await.unwrap();
    let q = AggregateQuery {
        bucket_seconds: 900,
        group: GroupBy {
            model: true,
            budget: true,
            ..GroupBy::default()
        },
        ..AggregateQuery::default()
    };
    let got: Vec<(i64, String, Option<String>, u64, i64, i64)> = store
        .aggregate(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|r: AggregateRow| {
            (
                r.bucket.unwrap() / 1_000_000,
                r.model,
                r.budget,
                r.responses,
                r.first / 1_000_000,
                r.last / 1_000_000,
            )
        })
        .collect();
    let b = || Some("b".to_owned());
    assert_eq!(
        got,
        [
            (-900, "m".to_owned(), None, 1, -1, -1),
            (0, "m".to_owned(), None, 1, 899, 899),
            (0, "m".to_owned(), b(), 1, 0, 0),
            (900, "M".to_owned(), None, 1, 900, 900),
            (900, "z".to_owned(), b(), 1, 901, 901),
        ]
    );
    // Filters: project contains (bytewise), budget exact, the time range half-open.
    let q = AggregateQuery {
        since: Some(0),
        until: Some(901_000_000),
        project: Some("a".into()),
        ..AggregateQuery::default()
    };
    let got = store.aggregate(&q).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].bucket, got[0].responses), (None, 2));
    assert_eq!(got[0].usage.output, 2);
    assert_eq!(got[0].usage.cache_read, 200);
    assert!(got[0].model.is_empty() && got[0].budget.is_none());
    let q = AggregateQuery {
        budget: Some("b".into()),
        ..AggregateQuery::default()
    };
    assert_eq!(store.aggregate(&q).await.unwrap()[0].responses, 2);
    let q = AggregateQuery {
        budget: Some("B".into()),
        ..AggregateQuery::default()
    };
    assert!(store.aggregate(&q).await.unwrap().is_empty());
}

/// A record shadowed by rule 6 is not summed, whatever the grouping.
pub async fn aggregate_leaves_out_shadowed_records(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let bare = record("msg_1", 500, 100, "f");
    let with = record("msg_1:req_1", 5, 100, "f");
    store.write(&[bare, with], None).await.unwrap();
    for group in [GroupBy::default(), GroupBy::ALL] {
        let q = AggregateQuery {
            bucket_seconds: 3600,
            group,
            ..AggregateQuery::default()
        };
        let rows = store.aggregate(&q).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].responses, rows[0].usage.output), (1, 5));
    }
}

/// A sum that does not fit an i64 is an error, not a wrapped or rounded number; a tier
/// threshold above i64::MAX is invalid.
pub async fn aggregate_sum_above_i64_max_is_an_error(h: &impl UsageHarness) {
    let store = h.fresh().await;
    let mut big = record("k1", 1, 1, "f");
    big.usage.input = i64::MAX as u64;
    store
        .write(&[big, record("k2", 1, 2, "f")], None)
        .await
        .unwrap();
    assert!(store.aggregate(&AggregateQuery::default()).await.is_err());
    // Apart, each sum fits.
    let q = AggregateQuery {
        bucket_seconds: 1,
        ..AggregateQuery::default()
    };
    assert_eq!(store.aggregate(&q).await.unwrap().len(), 2);
    let q = AggregateQuery {
        prompt_tiers: vec![u64::MAX],
        bucket_seconds: 1,
        ..AggregateQuery::default()
    };
    let err = store.aggregate(&q).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
}

/// A gateway row (no project, no session) and the transcript line of the same response
/// merge by key into one record with the transcript's project and session, whichever is
/// written first and whichever wins; two known values keep the bytewise greater.
pub async fn a_known_project_and_session_are_never_erased_by_an_empty_one(h: &impl UsageHarness) {
    let transcript = record("msg_p:req_p", 40, 100, "/t/s.jsonl");
    let mut gateway = transcript.clone();
    gateway.source = crate::record::source::GATEWAY.to_owned();
    gateway.file = String::new();
    gateway.project = String::new();
    gateway.session_id = String::new();
    gateway.budget = Some("team".to_owned());
    let mut copy = transcript.clone();
    copy.file = "/u/s.jsonl".to_owned();
    copy.project = "another-home".to_owned();
    // The reference: the pure merge (the gateway's row wins the location tie).
    let expected = {
        let mut v: Vec<_> = dedup::dedup([gateway.clone(), transcript.clone()])
            .into_values()
            .collect();
        assert_eq!(v.len(), 1);
        v.remove(0)
    };
    assert_eq!(
        (expected.file.as_str(), expected.project.as_str()),
        ("", "p1")
    );
    assert_eq!(expected.session_id, "s1");
    for order in [
        vec![gateway.clone(), transcript.clone()],
        vec![transcript.clone(), gateway.clone()],
    ] {
        let store = h.fresh().await;
        for r in &order {
            store.write(std::slice::from_ref(r), None).await.unwrap();
        }
        assert_eq!(all(&store).await, vec![expected.clone()], "one by one");
        let store = h.fresh().await;
        store.write(&order, None).await.unwrap();
        assert_eq!(all(&store).await, vec![expected.clone()], "one batch");
    }
    // A second known project: the greater ("p1" > "another-home"), in any order.
    for order in [
        vec![copy.clone(), gateway.clone(), transcript.clone()],
        vec![gateway.clone(), copy.clone(), transcript.clone()],
        vec![transcript.clone(), copy.clone(), gateway.clone()],
    ] {
        let store = h.fresh().await;
        for r in &order {
            store.write(std::slice::from_ref(r), None).await.unwrap();
        }
        let got = all(&store).await;
        assert_eq!(got, vec![expected.clone()]);
    }
    // Re-writing the transcript line after the merge changes nothing.
    let store = h.fresh().await;
    store
        .write(&[gateway, transcript.clone()], None)
        .await
        .unwrap();
    let w = store.write(&[transcript], None).await.unwrap();
    assert_eq!(w.unchanged, 1);
}

/// The keys and the counted responses the store reports: `records()` keys, and the number of
/// responses and output tokens `aggregate` sums over everything.
async fn counted(store: &DynUsageStore) -> (Vec<String>, u64, u64) {
    let keys = all(store).await.into_iter().map(|r| r.key).collect();
    let rows = store.aggregate(&AggregateQuery::default()).await.unwrap();
    let responses = rows.iter().map(|r| r.responses).sum();
    let output = rows.iter().map(|r| r.usage.output).sum();
    (keys, responses, output)
}

/// Rule 6 is decided when writing: a bare record and its sibling written in two calls, in
/// either order, leave the bare one out of `records` and `aggregate` alike; so do both in one
/// call, and a sibling that arrives in a later call than an already-counted bare record.
pub async fn shadowing_is_decided_when_writing_in_either_arrival_order(h: &impl UsageHarness) {
    let bare = record("msg_1", 500, 100, "a.jsonl");
    let with = record("msg_1:req_1", 5, 100, "b.jsonl");
    let lone = record("msg_2", 7, 100, "a.jsonl");
    let want = (vec!["msg_1:req_1".to_owned(), "msg_2".to_owned()], 2, 12);
    for calls in [
        vec![vec![bare.clone(), lone.clone()], vec![with.clone()]],
        vec![vec![with.clone()], vec![bare.clone(), lone.clone()]],
        vec![vec![lone.clone(), with.clone(), bare.clone()]],
        vec![
            vec![bare.clone()],
            vec![lone.clone()],
            vec![with.clone()],
            vec![bare.clone()],
        ],
    ] {
        let store = h.fresh().await;
        for call in &calls {
            store.write(call, None).await.unwrap();
        }
        assert_eq!(counted(&store).await, want, "{calls:?}");
        // A more final bare line later changes the stored row, never the flag.
        let mut later = bare.clone();
        later.usage.output = 900;
        store.write(&[later], None).await.unwrap();
        assert_eq!(counted(&store).await, want);
    }
}

/// `shadowed` lists the keys a stored record shadows, stored or not, and no others.
pub async fn shadowed_lists_the_keys_a_stored_record_shadows(h: &impl UsageHarness) {
    let store = h.fresh().await;
    assert!(store.shadowed(&[]).await.unwrap().is_empty());
    store
        .write(
            &[
                record("msg_1:req_1", 5, 100, "f"),
                record("msg_3", 5, 100, "f"),
                record("a:b:c", 5, 100, "f"),
            ],
            None,
        )
        .await
        .unwrap();
    let asked: Vec<String> = [
        "msg_1",
        "msg_1:req_1",
        "msg_10",
        "msg_3",
        "msg_",
        "a",
        "a:b",
        "é",
    ]
    .map(str::to_owned)
    .to_vec();
    let got: Vec<String> = store.shadowed(&asked).await.unwrap().into_iter().collect();
    assert_eq!(got, ["a", "a:b", "msg_1"]);
}

/// Two writers at once, one writing bare records and the other their siblings (the same
/// keys at the same moment, in opposite and in equal orders), leave every bare record
/// shadowed: neither transaction misses the other's row.
pub async fn concurrent_writers_of_a_bare_record_and_its_sibling_shadow_it(h: &impl UsageHarness) {
    const N: usize = 60;
    for reversed in [false, true] {
        let a = h.fresh().await;
        let b = h.same_database(&a).await;
        let bare: Vec<UsageRecord> = (0..N)
            .map(|i| record(&format!("msg_{i}"), 100, 1_000 + i as i64, "a.jsonl"))
            .chain([record("lone", 3, 5, "a.jsonl")])
            .collect();
        let mut with: Vec<UsageRecord> = (0..N)
            .map(|i| record(&format!("msg_{i}:req"), 1, 1_000 + i as i64, "b.jsonl"))
            .collect();
        if reversed {
            with.reverse();
        }
        let ta = tokio::spawn(async move {
            for chunk in bare.chunks(3) {
                a.write(chunk, None).await.unwrap();
            }
            a
        });
        let tb = tokio::spawn(async move {
            for chunk in with.chunks(2) {
                b.write(chunk, None).await.unwrap();
            }
        });
        let a = ta.await.unwrap();
        tb.await.unwrap();
        let (keys, responses, output) = counted(&a).await;
        assert_eq!(responses, N as u64 + 1, "reversed: {reversed}");
        assert_eq!(output, N as u64 + 3);
        assert!(
            keys.iter().all(|k| k == "lone" || k.ends_with(":req")),
            "{keys:?}"
        );
        let asked: Vec<String> = (0..N).map(|i| format!("msg_{i}")).collect();
        assert_eq!(a.shadowed(&asked).await.unwrap().len(), N);
    }
}
