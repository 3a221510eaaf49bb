//! Usage summed in the database: [`AggregateQuery`] selects and groups, each
//! [`AggregateRow`] is one group's sums. [`UsageStore::aggregate`](crate::UsageStore::aggregate)
//! runs it in SQL; [`of_records`] is the same grouping over records in memory (the memory
//! store's implementation and the reference the conformance suite compares the stores with).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{Usage, UsageRecord};

/// Microseconds in a second.
const MICROS: i64 = 1_000_000;

/// Which keys a group is made of, besides the time bucket (and the prompt tier, when
/// [`AggregateQuery::prompt_tiers`] is not empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupBy {
    /// One group per model.
    pub model: bool,
    /// One group per project.
    pub project: bool,
    /// One group per session id.
    pub session: bool,
    /// One group per budget charged (records charged to nothing are one group).
    pub budget: bool,
}

impl GroupBy {
    /// Every key.
    pub const ALL: GroupBy = GroupBy {
        model: true,
        project: true,
        session: true,
        budget: true,
    };
}

/// What [`UsageStore::aggregate`](crate::UsageStore::aggregate) sums, and how it groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateQuery {
    /// Only records at or after this time (microseconds since the epoch).
    pub since: Option<i64>,
    /// Only records before this time.
    pub until: Option<i64>,
    /// Only records whose project contains this text (bytewise; the CLI's `--project`).
    pub project: Option<String>,
    /// Only records whose model contains this text (bytewise; the CLI's `--model`).
    pub model: Option<String>,
    /// Only records charged to exactly this budget.
    pub budget: Option<String>,
    /// Only records of exactly this session id.
    pub session: Option<String>,
    /// The width of a time bucket in seconds: a record falls in the bucket that starts at its
    /// timestamp floored to a multiple of the width since the Unix epoch (UTC). `0`: no time
    /// buckets, one group over the whole range. Defaults to 0.
    ///
    /// 900 s buckets fold exactly into the local days of any time zone in use (every UTC
    /// offset, `+05:30` and `+05:45` included, is a multiple of 15 minutes); 3600 s buckets
    /// into 5-hour blocks that start on whole hours.
    pub bucket_seconds: u32,
    /// The keys to group by.
    pub group: GroupBy,
    /// Prompt-size thresholds (a price table's long-context tiers, e.g. 200,000): records
    /// are also grouped by the greatest threshold their prompt ([`prompt_tokens`]) is
    /// strictly above, so a group never mixes responses priced in different tiers. Empty:
    /// no tier grouping. Defaults to empty.
    pub prompt_tiers: Vec<u64>,
}

/// One group's sums.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateRow {
    /// The bucket's start, in microseconds since the epoch; `None` without buckets.
    pub bucket: Option<i64>,
    /// The model, when grouped by model; else empty.
    pub model: String,
    /// The project, when grouped by project; else empty.
    pub project: String,
    /// The session id, when grouped by session; else empty.
    pub session_id: String,
    /// The budget, when grouped by budget (`None`: charged to nothing); else `None`.
    pub budget: Option<String>,
    /// The greatest of [`AggregateQuery::prompt_tiers`] the prompt of every response of the
    /// group is strictly above; `None` when at or below them all (or without tiers).
    pub prompt_above: Option<u64>,
    /// The sum of each usage count.
    pub usage: Usage,
    /// The number of responses (records).
    pub responses: u64,
    /// The earliest timestamp in the group.
    pub first: i64,
    /// The latest timestamp in the group.
    pub last: i64,
}

impl AggregateRow {
    /// The order rows are returned in: bucket, model, project, session, budget (`None`
    /// first), tier (`None` first); text bytewise.
    pub fn sort_key(&self) -> impl Ord + '_ {
        (
            self.bucket,
            &self.model,
            &self.project,
            &self.session_id,
            &self.budget,
            self.prompt_above,
        )
    }
}

/// The prompt a long-context tier is measured on: fresh input, cache writes and cache reads
/// (output never counts), saturating.
pub fn prompt_tokens(u: &Usage) -> u64 {
    u.input
        .saturating_add(u.cache_write_5m)
        .saturating_add(u.cache_write_1h)
        .saturating_add(u.cache_read)
}

/// The greatest threshold of `tiers` that `prompt` is strictly above.
pub fn tier_of(prompt: u64, tiers: &[u64]) -> Option<u64> {
    tiers.iter().copied().filter(|t| prompt > *t).max()
}

/// The start of the bucket of `ts` (microseconds) for buckets of `seconds`; `None` for 0.
pub fn bucket_of(ts: i64, seconds: u32) -> Option<i64> {
    let width = i64::from(seconds) * MICROS;
    (width > 0).then(|| ts.saturating_sub(ts.rem_euclid(width)))
}

/// Whether `record` passes the query's filters (time, project, model, budget, session).
pub fn selects(query: &AggregateQuery, r: &UsageRecord) -> bool {
    query.since.is_none_or(|s| r.timestamp >= s)
        && query.until.is_none_or(|u| r.timestamp < u)
        && query
            .project
            .as_deref()
            .is_none_or(|p| r.project.contains(p))
        && query.model.as_deref().is_none_or(|m| r.model.contains(m))
        && query
            .budget
            .as_deref()
            .is_none_or(|b| r.budget.as_deref() == Some(b))
        && query.session.as_deref().is_none_or(|s| r.session_id == s)
}

/// The check every store runs on a query: a tier threshold above `i64::MAX` (no database
/// integer holds it) is [`Error::Invalid`].
pub fn validate(query: &AggregateQuery) -> Result<()> {
    match query
        .prompt_tiers
        .iter()
        .find(|t| i64::try_from(**t).is_err())
    {
        Some(t) => Err(Error::Invalid {
            what: "aggregate query",
            reason: format!("the prompt tier {t} is above i64::MAX"),
        }),
        None => Ok(()),
    }
}

/// The tiers of `query`, distinct, greatest first (the order a SQL `CASE` tests them in).
pub fn tiers_descending(query: &AggregateQuery) -> Vec<i64> {
    let mut tiers: Vec<i64> = query
        .prompt_tiers
        .iter()
        .filter_map(|t| i64::try_from(*t).ok())
        .collect();
    tiers.sort_unstable_by(|a, b| b.cmp(a));
    tiers.dedup();
    tiers
}

/// A sum above `i64::MAX`, which no store can return.
pub fn overflow() -> Error {
    Error::Invalid {
        what: "aggregate",
        reason: "a sum of usage is above i64::MAX".to_owned(),
    }
}

fn add(sum: &mut u64, v: u64) -> Result<()> {
    *sum = sum
        .checked_add(v)
        .filter(|s| i64::try_from(*s).is_ok())
        .ok_or_else(overflow)?;
    Ok(())
}

/// The rows of `query` over `records` (already free of shadowed records), in
/// [`AggregateRow::sort_key`] order. A sum above `i64::MAX` is an [`overflow`] error.
pub fn of_records<'a>(
    records: impl IntoIterator<Item = &'a UsageRecord>,
    query: &AggregateQuery,
) -> Result<Vec<AggregateRow>> {
    validate(query)?;
    let g = query.group;
    let mut groups: BTreeMap<_, AggregateRow> = BTreeMap::new();
    for r in records.into_iter().filter(|r| selects(query, r)) {
        let row = AggregateRow {
            bucket: bucket_of(r.timestamp, query.bucket_seconds),
            model: if g.model {
                r.model.clone()
            } else {
                String::new()
            },
            project: if g.project {
                r.project.clone()
            } else {
                String::new()
            },
            session_id: if g.session {
                r.session_id.clone()
            } else {
                String::new()
            },
            budget: if g.budget { r.budget.clone() } else { None },
            prompt_above: tier_of(prompt_tokens(&r.usage), &query.prompt_tiers),
            usage: Usage::default(),
            responses: 0,
            first: r.timestamp,
            last: r.timestamp,
        };
        let key = (
            row.bucket,
            row.model.clone(),
            row.project.clone(),
            row.session_id.clone(),
            row.budget.clone(),
            row.prompt_above,
        );
        let sum = groups.entry(key).or_insert(row);
        let (s, u) = (&mut sum.usage, &r.usage);
        add(&mut s.input, u.input)?;
        add(&mut s.output, u.output)?;
        add(&mut s.cache_write_5m, u.cache_write_5m)?;
        add(&mut s.cache_write_1h, u.cache_write_1h)?;
        add(&mut s.cache_read, u.cache_read)?;
        add(&mut s.web_search_requests, u.web_search_requests)?;
        add(&mut s.web_fetch_requests, u.web_fetch_requests)?;
        sum.responses += 1;
        sum.first = sum.first.min(r.timestamp);
        sum.last = sum.last.max(r.timestamp);
    }
    Ok(groups.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, model: &str, project: &str, ts_s: i64, input: u64) -> UsageRecord {
        UsageRecord {
            key: key.into(),
            source: "claude-code".into(),
            machine: String::new(),
            session_id: "s".into(),
            project: project.into(),
            model: model.into(),
            timestamp: ts_s * MICROS,
            usage: Usage {
                input,
                output: 1,
                ..Usage::default()
            },
            raw_usage: String::new(),
            file: "f".into(),
            offset: 0,
            estimated: false,
            budget: None,
        }
    }

    #[test]
    fn buckets_floor_to_the_width_in_utc_also_before_the_epoch() {
        assert_eq!(bucket_of(0, 900), Some(0));
        assert_eq!(bucket_of(899_999_999, 900), Some(0));
        assert_eq!(bucket_of(900_000_000, 900), Some(900_000_000));
        assert_eq!(bucket_of(-1, 900), Some(-900_000_000));
        assert_eq!(bucket_of(12345, 0), None);
        assert_eq!(bucket_of(i64::MIN + 1, 3600), Some(i64::MIN));
    }

    #[test]
    fn tiers_are_strictly_above_the_greatest_threshold() {
        let tiers = [200_000, 100_000];
        assert_eq!(tier_of(100_000, &tiers), None);
        assert_eq!(tier_of(100_001, &tiers), Some(100_000));
        assert_eq!(tier_of(200_000, &tiers), Some(100_000));
        assert_eq!(tier_of(200_001, &tiers), Some(200_000));
        assert_eq!(tier_of(5, &[]), None);
        let u = Usage {
            input: 1,
            output: 1_000,
            cache_write_5m: 2,
            cache_write_1h: 3,
            cache_read: 4,
            ..Usage::default()
        };
        assert_eq!(prompt_tokens(&u), 10);
    }

    #[test]
    fn groups_sum_count_and_span_by_the_chosen_keys() {
        let records = [
            rec("a", "m1", "p1", 0, 10),
            rec("b", "m1", "p2", 100, 20),
            rec("c", "m2", "p1", 950, 300_000),
            rec("d", "m1", "p1", 960, 5),
        ];
        let query = AggregateQuery {
            bucket_seconds: 900,
            group: GroupBy {
                model: true,
                ..GroupBy::default()
            },
            prompt_tiers: vec![200_000],
            ..AggregateQuery::default()
        };
        let rows = of_records(&records, &query).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.bucket.unwrap() / MICROS,
                    r.model.as_str(),
                    r.prompt_above,
                    r.usage.input,
                    r.responses,
                    r.first / MICROS,
                    r.last / MICROS,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, "m1", None, 30, 2, 0, 100),
                (900, "m1", None, 5, 1, 960, 960),
                (900, "m2", Some(200_000), 300_000, 1, 950, 950),
            ]
        );
        assert!(rows.iter().all(|r| r.project.is_empty()));
        // Filters: project contains, model contains, time half-open.
        let query = AggregateQuery {
            project: Some("1".into()),
            model: Some("m".into()),
            since: Some(0),
            until: Some(960 * MICROS),
            ..AggregateQuery::default()
        };
        let rows = of_records(&records, &query).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].bucket, rows[0].responses), (None, 2));
        assert_eq!(rows[0].usage.input, 300_010);
    }

    #[test]
    fn a_sum_above_i64_max_is_an_error() {
        let records = [
            rec("a", "m", "p", 0, i64::MAX as u64),
            rec("b", "m", "p", 1, 1),
        ];
        let err = of_records(&records, &AggregateQuery::default()).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
    }
}
