//! Usage history from the ledger, shaped for the page: pure functions over the ledger's
//! [`AggregateRow`]s (summed in SQL), priced at read time, tested without I/O.
//!
//! The handlers ask the ledger for sums grouped by model (and by the price table's
//! long-context tiers, so a group never mixes responses priced at different rates) in small
//! time buckets, and fold them here: into the local days of the chosen zone, into Claude's
//! 5-hour blocks, into totals per model, project or session.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, NaiveTime, TimeZone as _};
use serde::Serialize;
use tokenbudget_ledger::report::Zone;
use tokenbudget_ledger::{AggregateRow, Usage};
use tokenbudget_prices::{PriceTable, TokenKind};

const MICROS: i64 = 1_000_000;
const HOUR: i64 = 3_600 * MICROS;
const BLOCK: i64 = 5 * HOUR;

/// The longest range one answer covers, in days.
pub const MAX_DAYS: i64 = 366;

/// A web search request: $10 per 1,000 (Anthropic's list price), in micro-USD, as the CLI's
/// `usage` report prices it.
pub const WEB_SEARCH_MICROS: u64 = 10_000;

/// A range of whole local days in a zone, both ends included.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// The first day.
    pub since: NaiveDate,
    /// The last day (included).
    pub until: NaiveDate,
    /// The zone days are counted in.
    pub zone: Zone,
    /// The zone as given (`UTC` by default).
    pub zone_name: String,
}

/// Why a range could not be read from a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError(pub String);

impl Range {
    /// The range a query asks for: `since`/`until` dates (`YYYY-MM-DD`, `until` included),
    /// or `range=Nd` (the `N` days ending today, or ending `until`), in zone `tz` (`UTC`, an
    /// offset like `+02:00`, an IANA name; defaults to `UTC`). Without either, the last 30
    /// days. `now` is microseconds since the epoch.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        range: Option<&str>,
        tz: Option<&str>,
        now: i64,
    ) -> Result<Self, RangeError> {
        let zone_name = tz.unwrap_or("UTC").to_owned();
        let zone: Zone = zone_name
            .parse()
            .map_err(|e: tokenbudget_ledger::Error| RangeError(format!("tz: {e}")))?;
        let date = |what: &str, text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| RangeError(format!("{what}: {text:?} is not a date like 2026-12-01")))
        };
        if since.is_some() && range.is_some() {
            return Err(RangeError(
                "give since (and until) or range, not both".to_owned(),
            ));
        }
        let until = match until {
            Some(text) => date("until", text)?,
            None => zone.at(now).date_naive(),
        };
        let since = match (since, range) {
            (Some(text), _) => date("since", text)?,
            (None, range) => {
                let days = parse_days(range.unwrap_or("30d"))?;
                until - Duration::days(days - 1)
            }
        };
        if since > until {
            return Err(RangeError(format!("since {since} is after until {until}")));
        }
        if (until - since).num_days() >= MAX_DAYS {
            return Err(RangeError(format!(
                "a range covers at most {MAX_DAYS} days"
            )));
        }
        Ok(Self {
            since,
            until,
            zone,
            zone_name,
        })
    }

    /// Every day of the range, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        self.since
            .iter_days()
            .take_while(|d| *d <= self.until)
            .collect()
    }

    /// The range's start: the first day's local midnight, in microseconds.
    pub fn start(&self) -> i64 {
        local_midnight(&self.zone, self.since)
    }

    /// The range's end (excluded): the local midnight after the last day.
    pub fn end(&self) -> i64 {
        local_midnight(&self.zone, self.until + Duration::days(1))
    }

    /// The bucket width the ledger sums in before days are folded: whole days in UTC, else
    /// 15 minutes (every UTC offset in use is a multiple of them, so buckets fold exactly
    /// into any zone's days).
    pub fn bucket_seconds(&self) -> u32 {
        let utc = match self.zone {
            Zone::Named(tz) => tz == chrono_tz::UTC,
            Zone::Fixed(offset) => offset.local_minus_utc() == 0,
            Zone::Local => false,
        };
        if utc {
            86_400
        } else {
            900
        }
    }
}

fn parse_days(text: &str) -> Result<i64, RangeError> {
    text.strip_suffix('d')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| (1..=MAX_DAYS).contains(n))
        .ok_or_else(|| {
            RangeError(format!(
                "range: {text:?} is not a number of days like 7d (1d to {MAX_DAYS}d)"
            ))
        })
}

/// Midnight starting `date` in `zone`, in microseconds since the epoch (the first instant of
/// the day where a transition skips midnight).
pub fn local_midnight(zone: &Zone, date: NaiveDate) -> i64 {
    let naive = date.and_time(NaiveTime::MIN);
    let as_utc = chrono::Utc.from_utc_datetime(&naive);
    // The offset at the guess, then at the corrected instant: exact away from transitions.
    let first = zone.offset_at(as_utc);
    let guess = as_utc - Duration::seconds(i64::from(first.local_minus_utc()));
    let second = zone.offset_at(guess);
    (as_utc - Duration::seconds(i64::from(second.local_minus_utc()))).timestamp_micros()
}

/// Prices summed usage at read time with a price table.
#[derive(Debug, Clone)]
pub struct Pricer {
    table: PriceTable,
    tiers: Vec<u64>,
}

impl Pricer {
    /// A pricer over `table`; it learns every long-context threshold the table has.
    pub fn new(table: PriceTable) -> Self {
        let mut tiers: Vec<u64> = table
            .names()
            .filter_map(|name| table.resolve(name).ok())
            .flat_map(|r| r.price.tiers.iter().map(|t| t.above_input_tokens))
            .collect();
        tiers.sort_unstable();
        tiers.dedup();
        Self { table, tiers }
    }

    /// The thresholds to group by ([`AggregateQuery::prompt_tiers`](tokenbudget_ledger::AggregateQuery::prompt_tiers)).
    pub fn tiers(&self) -> &[u64] {
        &self.tiers
    }

    /// What `usage` (summed over responses whose prompts were all above `prompt_above` and
    /// at or below the next threshold) of `model` costs in micro-USD, rounded up once; web
    /// searches at [`WEB_SEARCH_MICROS`]. `None` for a model the table does not price.
    pub fn cost(&self, model: &str, usage: &Usage, prompt_above: Option<u64>) -> Option<u64> {
        let price = self.table.resolve(model).ok()?.price;
        // The model's own tier: its greatest threshold at or below the group's.
        let tier = prompt_above.and_then(|above| {
            price
                .tiers
                .iter()
                .filter(|t| t.above_input_tokens <= above)
                .max_by_key(|t| t.above_input_tokens)
        });
        let tokens = tokenbudget_prices::Usage {
            input: usage.input,
            output: usage.output,
            cache_write_5m: usage.cache_write_5m,
            cache_write_1h: usage.cache_write_1h,
            cache_read: usage.cache_read,
        };
        let mut picos: u128 = 0;
        for kind in TokenKind::ALL {
            let n = tokens.get(kind);
            if n == 0 {
                continue;
            }
            let rate = tier
                .and_then(|t| t.rates.get(kind))
                .or_else(|| price.base.get(kind))?;
            picos = picos.checked_add(u128::from(n) * u128::from(rate.picos()))?;
        }
        let micros = u64::try_from(picos.div_ceil(1_000_000)).ok()?;
        micros.checked_add(usage.web_search_requests.checked_mul(WEB_SEARCH_MICROS)?)
    }
}

/// Tokens by kind and their cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Fresh input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cache writes (5-minute and 1-hour).
    pub cache_write: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Every token.
    pub total_tokens: u64,
    /// The cost of the priced responses, in micro-USD.
    pub cost_micro_usd: u64,
    /// Responses.
    pub responses: u64,
    /// Responses of models the price table does not know (not in the cost).
    pub unpriced_responses: u64,
}

impl Totals {
    /// Adds another group's totals.
    pub fn add_totals(&mut self, o: &Totals) {
        self.input = self.input.saturating_add(o.input);
        self.output = self.output.saturating_add(o.output);
        self.cache_write = self.cache_write.saturating_add(o.cache_write);
        self.cache_read = self.cache_read.saturating_add(o.cache_read);
        self.total_tokens = self.total_tokens.saturating_add(o.total_tokens);
        self.cost_micro_usd = self.cost_micro_usd.saturating_add(o.cost_micro_usd);
        self.responses = self.responses.saturating_add(o.responses);
        self.unpriced_responses = self.unpriced_responses.saturating_add(o.unpriced_responses);
    }

    fn add(&mut self, row: &AggregateRow, cost: Option<u64>) {
        let u = &row.usage;
        let cache_write = u.cache_write_5m.saturating_add(u.cache_write_1h);
        self.input = self.input.saturating_add(u.input);
        self.output = self.output.saturating_add(u.output);
        self.cache_write = self.cache_write.saturating_add(cache_write);
        self.cache_read = self.cache_read.saturating_add(u.cache_read);
        self.total_tokens = self.total_tokens.saturating_add(u.total_tokens());
        self.responses = self.responses.saturating_add(row.responses);
        match cost {
            Some(c) => self.cost_micro_usd = self.cost_micro_usd.saturating_add(c),
            None => self.unpriced_responses = self.unpriced_responses.saturating_add(row.responses),
        }
    }
}

/// One local day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD` in the range's zone.
    pub date: String,
    /// Its local midnight, in seconds since the epoch (the chart's x).
    pub start: i64,
    /// What was used in it.
    #[serde(flatten)]
    pub totals: Totals,
}

/// Every day of `range` (days without usage too, at zero), from rows bucketed by
/// [`Range::bucket_seconds`] and grouped by model and tier.
pub fn daily(rows: &[AggregateRow], range: &Range, pricer: &Pricer) -> Vec<Day> {
    let mut days: BTreeMap<NaiveDate, Totals> = range
        .days()
        .into_iter()
        .map(|d| (d, Totals::default()))
        .collect();
    for row in rows {
        let Some(bucket) = row.bucket else { continue };
        let date = range.zone.at(bucket).date_naive();
        if let Some(totals) = days.get_mut(&date) {
            totals.add(row, pricer.cost(&row.model, &row.usage, row.prompt_above));
        }
    }
    days.into_iter()
        .map(|(date, totals)| Day {
            date: date.format("%Y-%m-%d").to_string(),
            start: local_midnight(&range.zone, date) / MICROS,
            totals,
        })
        .collect()
}

/// One group of a breakdown: a model, a project or a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The model, project, or `project/session`.
    pub key: String,
    /// The project (sessions and projects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The session id (sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The models seen, sorted.
    pub models: Vec<String>,
    /// What it used.
    #[serde(flatten)]
    pub totals: Totals,
    /// The earliest response, microseconds.
    pub first: i64,
    /// The latest response, microseconds.
    pub last: i64,
}

/// What a breakdown groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// Per model.
    Model,
    /// Per project.
    Project,
    /// Per project and session.
    Session,
}

/// Rows (grouped by model and tier, and by the key of `by`) folded into one group per key,
/// most expensive first (then most tokens, then key), at most `limit`.
pub fn groups(rows: &[AggregateRow], by: By, pricer: &Pricer, limit: usize) -> Vec<Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for row in rows {
        let key = match by {
            By::Model => row.model.clone(),
            By::Project => row.project.clone(),
            By::Session => format!("{}/{}", row.project, row.session_id),
        };
        let group = groups.entry(key.clone()).or_insert_with(|| Group {
            key,
            project: (by != By::Model).then(|| row.project.clone()),
            session_id: (by == By::Session).then(|| row.session_id.clone()),
            models: Vec::new(),
            totals: Totals::default(),
            first: row.first,
            last: row.last,
        });
        count_row(&mut group.totals, &mut group.models, row, pricer);
        group.first = group.first.min(row.first);
        group.last = group.last.max(row.last);
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    out.sort_by(|a, b| {
        (b.totals.cost_micro_usd, b.totals.total_tokens)
            .cmp(&(a.totals.cost_micro_usd, a.totals.total_tokens))
            .then_with(|| a.key.cmp(&b.key))
    });
    out.truncate(limit);
    out
}

/// Adds `row` (priced at its tier) to `totals`, and its model to the sorted `models`.
fn count_row(totals: &mut Totals, models: &mut Vec<String>, row: &AggregateRow, pricer: &Pricer) {
    totals.add(row, pricer.cost(&row.model, &row.usage, row.prompt_above));
    if !models.contains(&row.model) {
        models.push(row.model.clone());
        models.sort();
    }
}

/// One of Claude's 5-hour usage windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    /// Its start: the hour (UTC) of its first response, seconds since the epoch.
    pub start: i64,
    /// Its end, 5 hours later.
    pub end: i64,
    /// The models seen, sorted.
    pub models: Vec<String>,
    /// What it used.
    #[serde(flatten)]
    pub totals: Totals,
}

/// The 5-hour blocks of rows bucketed by the hour (grouped by model and tier), oldest first:
/// a block starts at the hour of its first response and lasts 5 hours; the first response
/// after it starts the next one (the rule of `tokenbudget usage blocks`).
pub fn blocks(rows: &[AggregateRow], pricer: &Pricer) -> Vec<Block> {
    let mut sorted: Vec<&AggregateRow> = rows.iter().filter(|r| r.bucket.is_some()).collect();
    sorted.sort_by_key(|r| r.bucket);
    let mut out: Vec<Block> = Vec::new();
    for row in sorted {
        let hour = row.bucket.unwrap_or_default();
        let open = out.last().is_some_and(|b| hour < b.end * MICROS);
        if !open {
            let start = hour.div_euclid(HOUR) * HOUR;
            out.push(Block {
                start: start / MICROS,
                end: (start + BLOCK) / MICROS,
                models: Vec::new(),
                totals: Totals::default(),
            });
        }
        let block = out.last_mut().expect("pushed above");
        count_row(&mut block.totals, &mut block.models, row, pricer);
    }
    out
}

/// The chart's data: x (seconds) and one stacked layer per token kind, each layer the sum of
/// the kinds below it, so drawing them largest first shows a stack; and the cost in dollars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stacked {
    /// The days' starts.
    pub x: Vec<i64>,
    /// `(kind, cumulative values)`, bottom layer first: input, output, cache writes, cache
    /// reads.
    pub layers: Vec<(&'static str, Vec<u64>)>,
    /// Each day's cost in dollars.
    pub cost_usd: Vec<f64>,
}

/// A layer's name and how to read it from a day's totals.
type Layer = (&'static str, fn(&Totals) -> u64);

/// The stacked series of `days`.
pub fn stacked(days: &[Day]) -> Stacked {
    let kinds: [Layer; 4] = [
        ("input", |t| t.input),
        ("output", |t| t.output),
        ("cache_write", |t| t.cache_write),
        ("cache_read", |t| t.cache_read),
    ];
    let mut below = vec![0u64; days.len()];
    let layers = kinds
        .iter()
        .map(|(name, value)| {
            for (sum, day) in below.iter_mut().zip(days) {
                *sum = sum.saturating_add(value(&day.totals));
            }
            (*name, below.clone())
        })
        .collect();
    Stacked {
        x: days.iter().map(|d| d.start).collect(),
        layers,
        cost_usd: days
            .iter()
            .map(|d| d.totals.cost_micro_usd as f64 / 1e6)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400 * MICROS;
    /// 2026-12-01T00:00:00Z.
    const DEC1: i64 = 1_796_083_200 * MICROS;

    fn row(bucket: i64, model: &str, input: u64, output: u64) -> AggregateRow {
        AggregateRow {
            bucket: Some(bucket),
            model: model.into(),
            usage: Usage {
                input,
                output,
                ..Usage::default()
            },
            responses: 1,
            first: bucket,
            last: bucket,
            ..AggregateRow::default()
        }
    }

    fn utc(since: &str, until: &str) -> Range {
        Range::parse(Some(since), Some(until), None, None, 0).unwrap()
    }

    #[test]
    fn ranges_parse_dates_days_and_zones_and_refuse_the_rest() {
        let r = Range::parse(None, None, Some("7d"), None, DEC1 + 5 * HOUR).unwrap();
        assert_eq!(
            (r.since.to_string(), r.until.to_string()),
            ("2026-11-25".into(), "2026-12-01".into())
        );
        assert_eq!(r.days().len(), 7);
        assert_eq!((r.start(), r.end()), (DEC1 - 6 * DAY, DEC1 + DAY));
        assert_eq!(r.bucket_seconds(), 86_400);
        let default = Range::parse(None, None, None, None, DEC1).unwrap();
        assert_eq!(default.days().len(), 30);
        // Berlin is an hour ahead in December: its day starts at 23:00 UTC.
        let berlin = berlin_dec1();
        assert_eq!(
            (berlin.start(), berlin.end()),
            (DEC1 - HOUR, DEC1 + DAY - HOUR)
        );
        assert_eq!(berlin.bucket_seconds(), 900);
        for (since, until, range, tz) in [
            (Some("2026-13-01"), None, None, None),
            (Some("yesterday"), None, None, None),
            (None, Some("2026-12-1x"), None, None),
            (None, None, Some("7"), None),
            (None, None, Some("0d"), None),
            (None, None, Some("367d"), None),
            (None, None, None, Some("Mars/Olympus")),
            (Some("2026-12-02"), Some("2026-12-01"), None, None),
            (Some("2025-01-01"), Some("2026-12-01"), None, None),
            (Some("2026-12-01"), None, Some("7d"), None),
        ] {
            assert!(
                Range::parse(since, until, range, tz, DEC1).is_err(),
                "{since:?} {until:?} {range:?} {tz:?}"
            );
        }
    }

    /// December 1st, 2026, in Berlin (an hour ahead of UTC then).
    fn berlin_dec1() -> Range {
        Range::parse(
            Some("2026-12-01"),
            Some("2026-12-01"),
            None,
            Some("Europe/Berlin"),
            0,
        )
        .unwrap()
    }

    #[test]
    fn days_fold_buckets_into_the_zones_days_and_keep_empty_days() {
        let pricer = Pricer::new(PriceTable::embedded());
        let rows = [
            row(DEC1 - 30 * 60 * MICROS, "unknown-model", 10, 1), // 23:30Z on Nov 30
            row(DEC1 + HOUR, "unknown-model", 20, 2),
            row(DEC1 + 2 * DAY, "unknown-model", 40, 4),
        ];
        let r = utc("2026-11-30", "2026-12-03");
        let days = daily(&rows, &r, &pricer);
        let got: Vec<(&str, u64, u64)> = days
            .iter()
            .map(|d| (d.date.as_str(), d.totals.input, d.totals.unpriced_responses))
            .collect();
        assert_eq!(
            got,
            [
                ("2026-11-30", 10, 1),
                ("2026-12-01", 20, 1),
                ("2026-12-02", 0, 0),
                ("2026-12-03", 40, 1)
            ]
        );
        assert_eq!(days[1].start, DEC1 / MICROS);
        // In Berlin 23:30Z on Nov 30 is already Dec 1.
        let berlin = berlin_dec1();
        let days = daily(&rows, &berlin, &pricer);
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].totals.input, 30);
    }

    #[test]
    fn costs_come_from_the_price_table_at_the_groups_tier() {
        let pricer = Pricer::new(PriceTable::embedded());
        assert!(pricer.tiers().contains(&200_000), "{:?}", pricer.tiers());
        let model = "claude-sonnet-4-20250514";
        let usage = Usage {
            input: 1_000_000,
            output: 1_000_000,
            ..Usage::default()
        };
        let table = PriceTable::embedded();
        let priced = |input, output| {
            table
                .cost(model, &tokenbudget_prices::Usage::new(input, output))
                .unwrap()
                .micros()
        };
        // Ten responses of 100k each, summed: base rates, however large the sum.
        let small = priced(100_000, 100_000);
        assert_eq!(pricer.cost(model, &usage, None), Some(10 * small));
        // One response of 1M input is in the long-context tier: priced as the table does.
        let tiered = pricer.cost(model, &usage, Some(200_000)).unwrap();
        assert_eq!(tiered, priced(1_000_000, 1_000_000));
        assert_ne!(tiered, 10 * small, "the tier has its own rates");
        let searches = Usage {
            web_search_requests: 3,
            ..Usage::default()
        };
        assert_eq!(pricer.cost(model, &searches, None), Some(30_000));
        assert_eq!(pricer.cost("not-a-model-anyone-prices", &usage, None), None);
    }

    #[test]
    fn groups_sort_by_cost_and_fold_models_and_tiers() {
        let pricer = Pricer::new(PriceTable::embedded());
        let model = "claude-sonnet-4-5-20250929";
        let mut a = row(DEC1, model, 1_000, 0);
        a.project = "p".into();
        a.session_id = "s1".into();
        let mut b = row(DEC1 + HOUR, model, 9_000, 0);
        b.project = "p".into();
        b.session_id = "s2".into();
        let mut c = row(DEC1 + 2 * HOUR, "unknown-model", 5, 0);
        c.project = "p".into();
        c.session_id = "s1".into();
        let sessions = groups(&[a.clone(), b.clone(), c], By::Session, &pricer, 10);
        let keys: Vec<(&str, u64, &[String])> = sessions
            .iter()
            .map(|g| (g.key.as_str(), g.totals.input, g.models.as_slice()))
            .collect();
        assert_eq!(keys[0].0, "p/s2");
        assert_eq!(keys[1].0, "p/s1");
        assert_eq!(keys[1].1, 1_005);
        assert_eq!(keys[1].2.len(), 2);
        assert_eq!(sessions[1].first, DEC1);
        assert_eq!(sessions[1].last, DEC1 + 2 * HOUR);
        assert_eq!(sessions[1].totals.unpriced_responses, 1);
        assert_eq!(groups(&[a, b], By::Session, &pricer, 1).len(), 1);
    }

    #[test]
    fn blocks_start_at_the_hour_of_their_first_response_and_last_five_hours() {
        let pricer = Pricer::new(PriceTable::embedded());
        let rows = [
            row(DEC1 + HOUR, "m", 1, 0),
            row(DEC1 + 3 * HOUR, "n", 2, 0),
            row(DEC1 + 5 * HOUR, "m", 4, 0), // still inside 01:00..06:00
            row(DEC1 + 6 * HOUR, "m", 8, 0), // starts the next block
            row(DEC1 + 20 * HOUR, "m", 16, 0),
        ];
        let got: Vec<(i64, i64, u64, usize)> = blocks(&rows, &pricer)
            .iter()
            .map(|b| {
                (
                    (b.start * MICROS - DEC1) / HOUR,
                    (b.end * MICROS - DEC1) / HOUR,
                    b.totals.input,
                    b.models.len(),
                )
            })
            .collect();
        assert_eq!(got, [(1, 6, 7, 2), (6, 11, 8, 1), (20, 25, 16, 1)]);
    }

    #[test]
    fn stacked_layers_add_up_kind_by_kind() {
        let day = |input, output, cache_write, cache_read, cost| Day {
            date: String::new(),
            start: 0,
            totals: Totals {
                input,
                output,
                cache_write,
                cache_read,
                cost_micro_usd: cost,
                ..Totals::default()
            },
        };
        let s = stacked(&[day(1, 2, 3, 4, 1_500_000), day(0, 0, 0, 0, 0)]);
        assert_eq!(
            s.layers,
            [
                ("input", vec![1, 0]),
                ("output", vec![3, 0]),
                ("cache_write", vec![6, 0]),
                ("cache_read", vec![10, 0]),
            ]
        );
        assert_eq!(s.cost_usd, [1.5, 0.0]);
        assert_eq!(s.x.len(), 2);
    }
}
