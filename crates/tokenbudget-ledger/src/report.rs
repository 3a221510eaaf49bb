//! Usage reports (pure): the store's [aggregate rows](crate::aggregate) folded by day, week,
//! month, session, 5-hour block or model, with tokens by kind and cost computed now from a
//! price function.
//!
//! A report is two steps: [`query`] says what to ask
//! [`UsageStore::aggregate`](crate::UsageStore::aggregate) for (the database sums, so a
//! report never loads the records), and [`report`] folds the rows it returns.
//!
//! - Days, weeks and months: buckets (floored in UTC) that never straddle a local midnight,
//!   each labelled in the report's zone. UTC gets whole days and a fixed offset the greatest
//!   common divisor of its seconds and a day's (`+02:00`: 2 hours, `+05:30`: 30 minutes,
//!   `+05:07`: 1 minute), so the database returns one row per day and model when it can.
//!   Any other zone gets 15 minutes: every UTC offset in use is a multiple of them (`+05:30`
//!   and `+05:45` included), so a bucket never straddles a local midnight or an offset
//!   change.
//! - Blocks: 1-hour buckets. A block starts at the whole hour of its first response and
//!   lasts 5 hours, so its end is a whole hour too and each hour bucket is inside one block
//!   or none.
//! - Sessions: one group per project and session; models: one per model.
//!
//! # Note
//!
//! Costs are exact sums of each group's usage times the rates (pico-dollars), rounded up to
//! a micro-dollar once per cell. Prices that depend on one request's size (long-context
//! tiers, e.g. above 200,000 prompt tokens) stay exact because rows are also grouped by the
//! price table's tier thresholds ([`AggregateQuery::prompt_tiers`]). Two differences from
//! pricing each response on its own: the total is rounded up once instead of once per
//! response (up to a micro-dollar less per response), and when a model has no price for a
//! token kind, every response of its group (model, tier, bucket) is unpriced, not only
//! those with tokens of that kind.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, FixedOffset, Offset, TimeZone, Utc};
use serde::Serialize;

use crate::aggregate::{AggregateQuery, AggregateRow, GroupBy};
use crate::error::{Error, Result};
use crate::record::Usage;

/// How records are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// By calendar day in the report's time zone.
    Daily,
    /// By ISO week (Monday to Sunday), labelled with its Monday.
    Weekly,
    /// By calendar month.
    Monthly,
    /// By project and session.
    Session,
    /// By Claude's 5-hour usage windows: a block starts at the hour (UTC) of its first
    /// response and lasts 5 hours; the first response after it starts the next block. The
    /// time between two blocks is a gap row.
    Blocks,
    /// By model.
    Models,
}

/// A time zone for grouping and labels: `UTC`, `local`, a fixed offset (`+02:00`) or an
/// IANA name (`Europe/Paris`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Zone {
    /// A zone from the IANA database (UTC is one).
    Named(chrono_tz::Tz),
    /// A fixed offset from UTC.
    Fixed(FixedOffset),
    /// The system's local time zone.
    Local,
}

impl FromStr for Zone {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        if let Ok(tz) = s.parse::<chrono_tz::Tz>() {
            return Ok(Zone::Named(tz));
        }
        if let Ok(offset) = FixedOffset::from_str(s) {
            return Ok(Zone::Fixed(offset));
        }
        Err(Error::Invalid {
            what: "time zone",
            reason: format!("{s:?} is not UTC, local, an offset like +02:00 or an IANA name"),
        })
    }
}

impl Zone {
    /// The UTC offset in force at `utc`.
    pub fn offset_at(&self, utc: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Named(tz) => tz.offset_from_utc_datetime(&utc.naive_utc()).fix(),
            Zone::Fixed(offset) => *offset,
            Zone::Local => chrono::Local
                .offset_from_utc_datetime(&utc.naive_utc())
                .fix(),
        }
    }

    /// `utc` in this zone.
    pub fn at(&self, micros: i64) -> DateTime<FixedOffset> {
        let utc = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
        utc.with_timezone(&self.offset_at(utc))
    }
}

/// Which records to report on, and how.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// The grouping.
    pub period: Period,
    /// The zone for days, weeks, months and labels.
    pub zone: Zone,
    /// Only projects containing this text.
    pub project: Option<String>,
    /// Only models containing this text.
    pub model: Option<String>,
    /// One sub-row per model under each row.
    pub breakdown: bool,
}

/// The exact cost of usage summed over responses of one model and one prompt tier, in
/// pico-USD: `price(model, usage, prompt_above)` (`prompt_above` as in
/// [`AggregateRow::prompt_above`]); `None` when the model has no price.
pub type PriceFn<'a> = &'a dyn Fn(&str, &Usage, Option<u64>) -> Option<u128>;

/// Pico-dollars in a micro-dollar.
const PICOS_PER_MICRO: u128 = 1_000_000;

/// Tokens and cost of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Responses.
    pub responses: u64,
    /// Usage by kind.
    pub usage: Usage,
    /// Every token.
    pub total_tokens: u64,
    /// Cost in micro-USD of the priced responses (the exact sum, rounded up once).
    pub cost_micro_usd: u64,
    /// Responses of models the price table does not know (not in the cost).
    pub unpriced_responses: u64,
}

/// [`Totals`] while folding: the cost exact, in pico-USD.
#[derive(Clone, Debug, Default)]
struct Sum {
    totals: Totals,
    picos: u128,
}

impl Sum {
    fn add(&mut self, row: &AggregateRow, cost: Option<u128>) {
        let t = &mut self.totals;
        t.responses = t.responses.saturating_add(row.responses);
        t.usage.add(&row.usage);
        t.total_tokens = t.total_tokens.saturating_add(row.usage.total_tokens());
        match cost {
            Some(c) => self.picos = self.picos.saturating_add(c),
            None => t.unpriced_responses = t.unpriced_responses.saturating_add(row.responses),
        }
    }

    fn finish(mut self) -> Totals {
        let micros = self.picos.div_ceil(PICOS_PER_MICRO);
        self.totals.cost_micro_usd = u64::try_from(micros).unwrap_or(u64::MAX);
        self.totals
    }
}

/// One row of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The group: a date, week, month, `project/session`, block start, or model.
    pub label: String,
    /// Blocks: the block's end (or the gap's end); empty otherwise.
    pub until: String,
    /// Blocks: this row is the gap between two blocks, not a block.
    pub gap: bool,
    /// The models seen, sorted.
    pub models: Vec<String>,
    /// Everything in the group.
    pub totals: Totals,
    /// With `breakdown`: per model, sorted by model.
    pub breakdown: Vec<(String, Totals)>,
}

/// A whole report: its rows and their sum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The rows, in label order (time order for time periods).
    pub rows: Vec<Row>,
    /// The sum of all rows.
    pub total: Totals,
}

const MINUTES_15: u32 = 900;
const HOUR_SECONDS: u32 = 3600;
const DAY_SECONDS: u32 = 86_400;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The bucket width that folds exactly into local days of `zone` (see the module docs).
pub fn day_bucket_seconds(zone: Zone) -> u32 {
    match zone {
        // A local midnight is a UTC midnight minus the offset: a width that divides both
        // a day and the offset puts every local midnight on a bucket edge.
        Zone::Fixed(offset) => gcd(DAY_SECONDS, offset.local_minus_utc().unsigned_abs()),
        Zone::Named(tz) if tz == chrono_tz::UTC => DAY_SECONDS,
        Zone::Named(_) | Zone::Local => MINUTES_15,
    }
}

/// What to ask the store for: the rows [`report`] folds into `options`' report of the time
/// range `[since, until)`, with `prompt_tiers` the price table's tier thresholds.
pub fn query(
    options: &ReportOptions,
    since: Option<i64>,
    until: Option<i64>,
    prompt_tiers: Vec<u64>,
) -> AggregateQuery {
    let model = GroupBy {
        model: true,
        ..GroupBy::default()
    };
    let (bucket_seconds, group) = match options.period {
        Period::Daily | Period::Weekly | Period::Monthly => {
            (day_bucket_seconds(options.zone), model)
        }
        Period::Blocks => (HOUR_SECONDS, model),
        Period::Session => (
            0,
            GroupBy {
                project: true,
                session: true,
                ..model
            },
        ),
        Period::Models => (0, model),
    };
    AggregateQuery {
        since,
        until,
        project: options.project.clone(),
        model: options.model.clone(),
        budget: None,
        session: None,
        bucket_seconds,
        group,
        prompt_tiers,
    }
}

/// The report of `rows` (the store's answer to [`query`] of the same `options`, any order)
/// under `options`, pricing each row with `price`.
pub fn report(rows: &[AggregateRow], options: &ReportOptions, price: PriceFn<'_>) -> Report {
    // The store applied the filters (a row not grouped by project has no project to test).
    let mut selected: Vec<&AggregateRow> = rows.iter().collect();
    selected.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let mut total = Sum::default();
    for r in &selected {
        total.add(r, price(&r.model, &r.usage, r.prompt_above));
    }
    let rows = match options.period {
        Period::Blocks => blocks(&selected, options, price),
        period => grouped(&selected, options, price, |r| {
            label(period, options.zone, r)
        }),
    };
    Report {
        rows,
        total: total.finish(),
    }
}

fn label(period: Period, zone: Zone, r: &AggregateRow) -> String {
    let t = zone.at(r.bucket.unwrap_or(r.first));
    match period {
        Period::Daily => t.format("%Y-%m-%d").to_string(),
        Period::Weekly => {
            let monday =
                t.date_naive() - Duration::days(i64::from(t.weekday().num_days_from_monday()));
            monday.format("%Y-%m-%d").to_string()
        }
        Period::Monthly => t.format("%Y-%m").to_string(),
        Period::Session => format!("{}/{}", r.project, r.session_id),
        Period::Models => r.model.clone(),
        Period::Blocks => String::new(),
    }
}

#[derive(Default)]
struct Group {
    totals: Sum,
    models: BTreeMap<String, Sum>,
}

impl Group {
    fn add(&mut self, r: &AggregateRow, price: PriceFn<'_>) {
        let cost = price(&r.model, &r.usage, r.prompt_above);
        self.totals.add(r, cost);
        self.models.entry(r.model.clone()).or_default().add(r, cost);
    }

    fn row(self, label: String, until: String, breakdown: bool) -> Row {
        Row {
            label,
            until,
            gap: false,
            models: self.models.keys().cloned().collect(),
            totals: self.totals.finish(),
            breakdown: if breakdown {
                self.models
                    .into_iter()
                    .map(|(model, sum)| (model, sum.finish()))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

fn grouped(
    rows: &[&AggregateRow],
    options: &ReportOptions,
    price: PriceFn<'_>,
    key: impl Fn(&AggregateRow) -> String,
) -> Vec<Row> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for r in rows {
        groups.entry(key(r)).or_default().add(r, price);
    }
    groups
        .into_iter()
        .map(|(label, g)| g.row(label, String::new(), options.breakdown))
        .collect()
}

const HOUR: i64 = 3_600_000_000;
const BLOCK: i64 = 5 * HOUR;

/// `rows` are sorted by bucket (hour buckets), so by their first response.
fn blocks(rows: &[&AggregateRow], options: &ReportOptions, price: PriceFn<'_>) -> Vec<Row> {
    let fmt = |micros: i64| options.zone.at(micros).format("%Y-%m-%d %H:%M").to_string();
    let mut out = Vec::new();
    // The open block: its start and what is in it.
    let mut current: Option<(i64, Group)> = None;
    let mut previous_end: Option<i64> = None;
    for r in rows {
        if let Some((start, group)) = current.take() {
            // A block ends on a whole hour, so a whole hour bucket is in it or after it; the
            // bucket's first response decides.
            if r.first < start.saturating_add(BLOCK) {
                current = Some((start, group));
            } else {
                out.push(group.row(fmt(start), fmt(start + BLOCK), options.breakdown));
                previous_end = Some(start + BLOCK);
            }
        }
        let (_, group) = current.get_or_insert_with(|| {
            let start = r.first.div_euclid(HOUR) * HOUR;
            if let Some(end) = previous_end.filter(|end| start > *end) {
                out.push(Row {
                    label: fmt(end),
                    until: fmt(start),
                    gap: true,
                    models: Vec::new(),
                    totals: Totals::default(),
                    breakdown: Vec::new(),
                });
            }
            (start, Group::default())
        });
        group.add(r, price);
    }
    if let Some((start, group)) = current {
        out.push(group.row(fmt(start), fmt(start + BLOCK), options.breakdown));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{of_records, prompt_tokens, tier_of};
    use crate::record::UsageRecord;

    const TIERS: [u64; 2] = [200_000, 100_000];

    /// A made-up price: pico-USD per token 3 below 100k prompts, 5 up to 200k, 7 above, and
    /// an unpriced model.
    fn price(model: &str, usage: &Usage, prompt_above: Option<u64>) -> Option<u128> {
        if model == "unpriced" {
            return None;
        }
        let rate = match prompt_above {
            None => 3_000_001,
            Some(100_000) => 5_000_000,
            Some(_) => 7_000_000,
        };
        Some(u128::from(usage.total_tokens()) * rate)
    }

    fn record(i: i64, ts: i64) -> UsageRecord {
        let models = ["m-a", "m-b", "unpriced"];
        UsageRecord {
            key: format!("k{i}"),
            source: "claude-code".into(),
            machine: String::new(),
            session_id: format!("s{}", i % 3),
            project: format!("p{}", i % 2),
            model: models[(i / 7 % 3) as usize].into(),
            timestamp: ts,
            usage: Usage {
                input: 10 + i as u64,
                output: 7,
                cache_write_5m: 1,
                cache_write_1h: 2,
                cache_read: if i % 5 == 0 { 150_000 } else { 300 } + (i as u64 % 4) * 60_000,
                web_search_requests: 0,
                web_fetch_requests: 0,
            },
            raw_usage: String::new(),
            file: "f".into(),
            offset: 0,
            estimated: false,
            budget: None,
        }
    }

    /// Records spread over days, with gaps of several hours (blocks) and times near local
    /// midnights of +05:45.
    fn records() -> Vec<UsageRecord> {
        let base = 1_764_000_000_000_000; // 2025-11-24T16:00:00Z
        let mut out = Vec::new();
        let mut ts = base;
        for i in 0..400 {
            // Steps from 30 seconds to almost 9 hours.
            ts += [60, 120, 17_000, 31_999, 30, 45][(i % 6) as usize] * 1_000_000;
            out.push(record(i, ts));
        }
        out
    }

    /// The per-record reference: group each record by its own label, price it alone (in its
    /// own tier), sum exact pico-dollars, round once per cell.
    fn reference(records: &[UsageRecord], options: &ReportOptions) -> Report {
        let as_row = |r: &UsageRecord| AggregateRow {
            bucket: Some(r.timestamp),
            model: r.model.clone(),
            project: r.project.clone(),
            session_id: r.session_id.clone(),
            budget: None,
            prompt_above: tier_of(prompt_tokens(&r.usage), &TIERS),
            usage: r.usage,
            responses: 1,
            first: r.timestamp,
            last: r.timestamp,
        };
        let rows: Vec<AggregateRow> = records.iter().map(as_row).collect();
        // One row per record is a valid aggregate (the finest buckets): fold it.
        report(&rows, options, &price)
    }

    fn options(period: Period, zone: &str) -> ReportOptions {
        ReportOptions {
            period,
            zone: zone.parse().unwrap(),
            project: None,
            model: None,
            breakdown: true,
        }
    }

    #[test]
    fn every_period_from_buckets_equals_the_per_record_report() {
        let records = records();
        for period in [
            Period::Daily,
            Period::Weekly,
            Period::Monthly,
            Period::Session,
            Period::Blocks,
            Period::Models,
        ] {
            for zone in [
                "UTC",
                "+05:30",
                "+05:45",
                "-09:30",
                "+05:07",
                "+02:00",
                "Asia/Kathmandu",
                "Europe/Paris",
            ] {
                let options = options(period, zone);
                let q = query(&options, None, None, TIERS.to_vec());
                let rows = of_records(&records, &q).unwrap();
                assert!(
                    rows.len() < records.len(),
                    "{period:?} {zone}: {} rows",
                    rows.len()
                );
                let got = report(&rows, &options, &price);
                assert_eq!(got, reference(&records, &options), "{period:?} {zone}");
                assert_eq!(got.total.responses, 400);
            }
        }
    }

    #[test]
    fn bucket_widths_follow_the_period_and_the_zone() {
        let q = |period, zone| query(&options(period, zone), None, None, Vec::new());
        assert_eq!(q(Period::Daily, "+05:45").bucket_seconds, 900);
        assert_eq!(q(Period::Daily, "UTC").bucket_seconds, 86_400);
        assert_eq!(q(Period::Weekly, "+00:00").bucket_seconds, 86_400);
        assert_eq!(q(Period::Daily, "+02:00").bucket_seconds, 7_200);
        assert_eq!(q(Period::Monthly, "-05:30").bucket_seconds, 1_800);
        assert_eq!(q(Period::Weekly, "Europe/Paris").bucket_seconds, 900);
        assert_eq!(q(Period::Monthly, "+05:07").bucket_seconds, 60);
        assert_eq!(q(Period::Blocks, "+05:45").bucket_seconds, 3600);
        assert_eq!(q(Period::Session, "UTC").bucket_seconds, 0);
        assert!(q(Period::Session, "UTC").group.session);
        assert!(q(Period::Session, "UTC").group.project);
        assert!(!q(Period::Models, "UTC").group.project);
        assert!(q(Period::Models, "UTC").group.model);
    }

    #[test]
    fn blocks_start_on_the_hour_of_their_first_response_and_show_gaps() {
        let h = 3_600_000_000;
        let base = 1_764_000_000_000_000;
        let at = |i: i64, ts: i64| record(i * 3, base + ts);
        // 10:20 and 14:59 in one block (10:00-15:00); 15:00 starts the next; 23:10 after a
        // gap.
        let records = [
            at(0, h / 3),
            at(1, 5 * h - 1),
            at(2, 5 * h),
            at(3, 13 * h + h / 6),
        ];
        let options = options(Period::Blocks, "UTC");
        let rows = of_records(&records, &query(&options, None, None, Vec::new())).unwrap();
        let r = report(&rows, &options, &price);
        let got: Vec<(&str, &str, bool, u64)> = r
            .rows
            .iter()
            .map(|r| {
                (
                    r.label.as_str(),
                    r.until.as_str(),
                    r.gap,
                    r.totals.responses,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("2025-11-24 16:00", "2025-11-24 21:00", false, 2),
                ("2025-11-24 21:00", "2025-11-25 02:00", false, 1),
                ("2025-11-25 02:00", "2025-11-25 05:00", true, 0),
                ("2025-11-25 05:00", "2025-11-25 10:00", false, 1),
            ]
        );
    }

    #[test]
    fn costs_are_exact_sums_rounded_up_once_and_unpriced_are_counted() {
        let mut a = record(0, 0);
        a.model = "m-a".into();
        a.usage = Usage {
            input: 1,
            ..Usage::default()
        };
        let mut b = a.clone();
        b.key = "k1".into();
        let mut c = a.clone();
        c.key = "k2".into();
        c.model = "unpriced".into();
        let options = options(Period::Models, "UTC");
        let rows = of_records(&[a, b, c], &query(&options, None, None, Vec::new())).unwrap();
        let r = report(&rows, &options, &price);
        // 2 tokens at 3.000001 micro-USD: 6.000002, rounded up once to 7.
        assert_eq!(r.total.cost_micro_usd, 7);
        assert_eq!(r.total.unpriced_responses, 1);
        assert_eq!(r.total.responses, 3);
        assert_eq!(r.rows[1].label, "unpriced");
        assert_eq!(r.rows[1].totals.cost_micro_usd, 0);
    }
}
