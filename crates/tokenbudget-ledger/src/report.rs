//! Usage reports (pure): records grouped by day, week, month, session, 5-hour block or
//! model, with tokens by kind and cost computed now from a price function.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, FixedOffset, Offset, TimeZone, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::record::{Usage, UsageRecord};

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
    /// Only this project (exact name, or a substring of it).
    pub project: Option<String>,
    /// Only models containing this text.
    pub model: Option<String>,
    /// One sub-row per model under each row.
    pub breakdown: bool,
}

/// Tokens and cost of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Responses.
    pub responses: u64,
    /// Usage by kind.
    pub usage: Usage,
    /// Every token.
    pub total_tokens: u64,
    /// Cost in micro-USD of the priced responses.
    pub cost_micro_usd: u64,
    /// Responses of models the price table does not know (not in the cost).
    pub unpriced_responses: u64,
}

impl Totals {
    fn add(&mut self, r: &UsageRecord, cost: Option<u64>) {
        self.responses += 1;
        self.usage.add(&r.usage);
        self.total_tokens = self.total_tokens.saturating_add(r.usage.total_tokens());
        match cost {
            Some(c) => self.cost_micro_usd = self.cost_micro_usd.saturating_add(c),
            None => self.unpriced_responses += 1,
        }
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

/// The report of `records` (any order) under `options`, pricing each response with
/// `price(model, usage)` (micro-USD, `None` when the model has no price).
pub fn report(
    records: &[UsageRecord],
    options: &ReportOptions,
    price: &dyn Fn(&str, &Usage) -> Option<u64>,
) -> Report {
    let mut selected: Vec<&UsageRecord> = records
        .iter()
        .filter(|r| {
            options
                .project
                .as_deref()
                .is_none_or(|p| r.project == p || r.project.contains(p))
        })
        .filter(|r| options.model.as_deref().is_none_or(|m| r.model.contains(m)))
        .collect();
    selected.sort_by(|a, b| (a.timestamp, &a.key).cmp(&(b.timestamp, &b.key)));
    let mut total = Totals::default();
    for r in &selected {
        total.add(r, price(&r.model, &r.usage));
    }
    let rows = match options.period {
        Period::Blocks => blocks(&selected, options, price),
        period => grouped(&selected, options, price, |r| {
            label(period, options.zone, r)
        }),
    };
    Report { rows, total }
}

fn label(period: Period, zone: Zone, r: &UsageRecord) -> String {
    let t = zone.at(r.timestamp);
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
    totals: Totals,
    models: BTreeMap<String, Totals>,
}

impl Group {
    fn add(&mut self, r: &UsageRecord, price: &dyn Fn(&str, &Usage) -> Option<u64>) {
        let cost = price(&r.model, &r.usage);
        self.totals.add(r, cost);
        self.models.entry(r.model.clone()).or_default().add(r, cost);
    }

    fn row(self, label: String, until: String, breakdown: bool) -> Row {
        Row {
            label,
            until,
            gap: false,
            models: self.models.keys().cloned().collect(),
            totals: self.totals,
            breakdown: if breakdown {
                self.models.into_iter().collect()
            } else {
                Vec::new()
            },
        }
    }
}

fn grouped(
    records: &[&UsageRecord],
    options: &ReportOptions,
    price: &dyn Fn(&str, &Usage) -> Option<u64>,
    key: impl Fn(&UsageRecord) -> String,
) -> Vec<Row> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for r in records {
        groups.entry(key(r)).or_default().add(r, price);
    }
    groups
        .into_iter()
        .map(|(label, g)| g.row(label, String::new(), options.breakdown))
        .collect()
}

const HOUR: i64 = 3_600_000_000;
const BLOCK: i64 = 5 * HOUR;

fn blocks(
    records: &[&UsageRecord],
    options: &ReportOptions,
    price: &dyn Fn(&str, &Usage) -> Option<u64>,
) -> Vec<Row> {
    let fmt = |micros: i64| options.zone.at(micros).format("%Y-%m-%d %H:%M").to_string();
    let mut rows = Vec::new();
    // The open block: its start and what is in it.
    let mut current: Option<(i64, Group)> = None;
    let mut previous_end: Option<i64> = None;
    for r in records {
        if let Some((start, group)) = current.take() {
            if r.timestamp < start + BLOCK {
                current = Some((start, group));
            } else {
                rows.push(group.row(fmt(start), fmt(start + BLOCK), options.breakdown));
                previous_end = Some(start + BLOCK);
            }
        }
        let (_, group) = current.get_or_insert_with(|| {
            let start = r.timestamp.div_euclid(HOUR) * HOUR;
            if let Some(end) = previous_end.filter(|end| start > *end) {
                rows.push(Row {
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
        rows.push(group.row(fmt(start), fmt(start + BLOCK), options.breakdown));
    }
    rows
}
