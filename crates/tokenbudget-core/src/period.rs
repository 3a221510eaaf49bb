//! Budget periods: the window a periodic budget's `used` counts in, computed as a pure
//! function of the period and an instant.
//!
//! A period is `daily`, `weekly`, `monthly` (calendar periods, in a time zone: UTC unless one
//! is given) or a fixed length of whole seconds (`90s`, `5h`, `30d`). Windows are aligned to
//! an anchor: for a fixed length, the anchor instant (the budget's creation time unless one is
//! given), so windows are `[anchor + k·len, anchor + (k+1)·len)`; for calendar periods, local
//! midnight, Monday and the 1st by default, or the anchor's local time of day (and its weekday
//! for weekly, its day of the month for monthly, clamped to the month's last day).
//!
//! Local times are turned into instants with the IANA database of `chrono-tz`: a boundary
//! that falls in a daylight-saving gap moves to the first local time after the gap, one that
//! falls in a repeated hour takes its first occurrence.
//!
//! ```
//! use tokenbudget_core::period::Period;
//! use tokenbudget_core::Timestamp;
//!
//! let daily: Period = "daily tz=Europe/Berlin".parse()?;
//! // 2026-03-29 is the spring-forward day in Berlin: that day is 23 hours long.
//! let noon = Timestamp::parse("2026-03-29T10:00:00Z")?;
//! let window = daily.window_at(noon);
//! assert_eq!(window.start, Timestamp::parse("2026-03-28T23:00:00Z")?);
//! assert_eq!(window.end, Timestamp::parse("2026-03-29T22:00:00Z")?);
//! # Ok::<(), tokenbudget_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike,
    Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::Timestamp;

/// The longest fixed period accepted: 100 years of seconds.
pub const MAX_FIXED_PERIOD: Duration = Duration::from_secs(100 * 366 * 24 * 60 * 60);

/// How often a periodic budget starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Every {
    /// Each calendar day.
    Daily,
    /// Each calendar week (from Monday unless anchored otherwise).
    Weekly,
    /// Each calendar month (from the 1st unless anchored otherwise).
    Monthly,
    /// A fixed length of whole seconds, at least one.
    Fixed(Duration),
}

/// A budget's period: how long a window lasts and where windows are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    every: Every,
    tz: Option<Tz>,
    anchor: Option<Timestamp>,
}

/// One window of a period: `start <= t < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// The first instant in the window.
    pub start: Timestamp,
    /// The first instant after it (the next window's start).
    pub end: Timestamp,
}

impl Window {
    /// True when `t` is in the window.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

impl Period {
    /// A period. `tz` only applies to calendar periods (a fixed length with a time zone is
    /// [`Error::InvalidPeriod`]); `anchor` aligns the windows (see the module docs).
    pub fn new(every: Every, tz: Option<Tz>, anchor: Option<Timestamp>) -> Result<Self> {
        if let Every::Fixed(len) = every {
            if len < Duration::from_secs(1) || len > MAX_FIXED_PERIOD || len.subsec_nanos() != 0 {
                return Err(invalid(format!(
                    "a fixed period must be whole seconds from 1s to 100 years, not {len:?}"
                )));
            }
            if tz.is_some() {
                return Err(invalid(
                    "a time zone applies to daily, weekly and monthly periods, not to a fixed length"
                        .to_owned(),
                ));
            }
        }
        Ok(Self { every, tz, anchor })
    }

    /// Parses the parts a user types: `daily|weekly|monthly|DURATION` (`90s`, `5h`, `30d`),
    /// an optional IANA time zone (`Europe/Berlin`) and an optional anchor.
    pub fn parse_parts(every: &str, tz: Option<&str>, anchor: Option<Timestamp>) -> Result<Self> {
        let every = match every.trim() {
            "daily" => Every::Daily,
            "weekly" => Every::Weekly,
            "monthly" => Every::Monthly,
            other => Every::Fixed(humantime::parse_duration(other).map_err(|e| {
                invalid(format!(
                    "period {other:?}: expected daily, weekly, monthly or a duration such as 90s, 5h, 30d ({e})"
                ))
            })?),
        };
        let tz = tz
            .map(|name| {
                name.parse::<Tz>().map_err(|_| {
                    invalid(format!(
                        "unknown time zone {name:?}: expected an IANA name such as Europe/Berlin"
                    ))
                })
            })
            .transpose()?;
        Self::new(every, tz, anchor)
    }

    /// How often it starts again.
    pub fn every(&self) -> Every {
        self.every
    }

    /// Its time zone (calendar periods; `None` means UTC).
    pub fn tz(&self) -> Option<Tz> {
        self.tz
    }

    /// Its anchor, when set.
    pub fn anchor(&self) -> Option<Timestamp> {
        self.anchor
    }

    /// The period as a budget created at `now` keeps it: a fixed length without an anchor is
    /// anchored at `now`, so its windows start at the creation time.
    pub fn anchored_at(mut self, now: Timestamp) -> Self {
        if matches!(self.every, Every::Fixed(_)) && self.anchor.is_none() {
            self.anchor = Some(now);
        }
        self
    }

    /// The window holding `t`.
    pub fn window_at(&self, t: Timestamp) -> Window {
        match self.every {
            Every::Fixed(len) => self.fixed_window(len, t),
            _ => self.calendar_window(t),
        }
    }

    fn fixed_window(&self, len: Duration, t: Timestamp) -> Window {
        let len = i128::from(len.as_secs()) * 1_000_000;
        let anchor = i128::from(self.anchor.unwrap_or(Timestamp::EPOCH).as_micros());
        let k = (i128::from(t.as_micros()) - anchor).div_euclid(len);
        let start = anchor + k * len;
        Window {
            start: clamp(start),
            end: clamp(start + len),
        }
    }

    fn calendar_window(&self, t: Timestamp) -> Window {
        let tz = self.tz.unwrap_or(Tz::UTC);
        let local = t.to_datetime().with_timezone(&tz).naive_local();
        let anchor = self
            .anchor
            .map(|a| a.to_datetime().with_timezone(&tz).naive_local());
        let time = anchor.map_or(NaiveTime::MIN, |a| a.time());
        // The boundary at or before `local` by calendar arithmetic, then corrected for the
        // rare boundary that daylight saving moved past `t` (or before the previous one).
        let mut start = self.boundary_at_or_before(local, anchor, time);
        loop {
            let begins = to_instant(tz, start);
            if begins > t {
                start = self.step(start, anchor, time, false);
                continue;
            }
            let next = self.step(start, anchor, time, true);
            let ends = to_instant(tz, next);
            if ends <= t {
                start = next;
                continue;
            }
            return Window {
                start: begins,
                end: ends,
            };
        }
    }

    /// The latest local boundary not after `local`.
    fn boundary_at_or_before(
        &self,
        local: NaiveDateTime,
        anchor: Option<NaiveDateTime>,
        time: NaiveTime,
    ) -> NaiveDateTime {
        let candidate = match self.every {
            Every::Daily => local.date().and_time(time),
            Every::Weekly => {
                let weekday = anchor.map_or(Weekday::Mon, |a| a.weekday());
                let back = (7 + local.weekday().num_days_from_monday()
                    - weekday.num_days_from_monday())
                    % 7;
                (local.date() - Days::new(u64::from(back))).and_time(time)
            }
            Every::Monthly => month_boundary(local.year(), local.month(), anchor, time),
            Every::Fixed(_) => unreachable!("fixed periods have no calendar"),
        };
        if candidate > local {
            self.step(candidate, anchor, time, false)
        } else {
            candidate
        }
    }

    /// The next (or previous) local boundary after (before) the boundary `from`.
    fn step(
        &self,
        from: NaiveDateTime,
        anchor: Option<NaiveDateTime>,
        time: NaiveTime,
        forward: bool,
    ) -> NaiveDateTime {
        let date = from.date();
        let moved = match (self.every, forward) {
            (Every::Daily, true) => date + Days::new(1),
            (Every::Daily, false) => date - Days::new(1),
            (Every::Weekly, true) => date + Days::new(7),
            (Every::Weekly, false) => date - Days::new(7),
            (Every::Monthly, _) => {
                // The boundary's month is the one whose clamped anchor day it is on.
                let first = NaiveDate::from_ymd_opt(date.year(), date.month(), 1)
                    .expect("day 1 of a valid month");
                let month = if forward {
                    first + Months::new(1)
                } else {
                    first - Months::new(1)
                };
                return month_boundary(month.year(), month.month(), anchor, time);
            }
            (Every::Fixed(_), _) => unreachable!("fixed periods have no calendar"),
        };
        moved.and_time(time)
    }
}

/// The monthly boundary in `year`-`month`: the anchor's day (the 1st by default), clamped to
/// the month's last day, at `time`.
fn month_boundary(
    year: i32,
    month: u32,
    anchor: Option<NaiveDateTime>,
    time: NaiveTime,
) -> NaiveDateTime {
    let day = anchor.map_or(1, |a| a.day());
    let first = NaiveDate::from_ymd_opt(year, month, 1).expect("a valid month");
    let last = (first + Months::new(1) - Days::new(1)).day();
    first
        .with_day(day.min(last))
        .expect("a day within the month")
        .and_time(time)
}

/// The instant of a local time in `tz`: the first occurrence of a repeated time, the first
/// existing time after a gap.
fn to_instant(tz: Tz, local: NaiveDateTime) -> Timestamp {
    let mut probe = local;
    // Gaps are at most a few hours (a day for the odd date-line move): step in minutes.
    for _ in 0..(26 * 60) {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                return Timestamp::from(t.with_timezone(&chrono::Utc));
            }
            LocalResult::None => {
                probe = (probe + chrono::Duration::minutes(1))
                    .with_second(0)
                    .unwrap_or(probe);
            }
        }
    }
    Timestamp::from(DateTime::<chrono::Utc>::from_naive_utc_and_offset(
        local,
        chrono::Utc,
    ))
}

fn clamp(micros: i128) -> Timestamp {
    Timestamp::from_micros(micros.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

fn invalid(message: String) -> Error {
    Error::InvalidPeriod { message }
}

impl fmt::Display for Every {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Daily => f.write_str("daily"),
            Self::Weekly => f.write_str("weekly"),
            Self::Monthly => f.write_str("monthly"),
            Self::Fixed(len) => write!(f, "{}s", len.as_secs()),
        }
    }
}

/// The canonical text form, as stored and shown: `EVERY[ tz=ZONE][ anchor=RFC3339]`, e.g.
/// `daily tz=Europe/Berlin` or `3600s anchor=2026-12-01T00:00:00.000000Z`.
impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.every)?;
        if let Some(tz) = self.tz {
            write!(f, " tz={}", tz.name())?;
        }
        if let Some(anchor) = self.anchor {
            write!(f, " anchor={anchor}")?;
        }
        Ok(())
    }
}

impl FromStr for Period {
    type Err = Error;

    /// Parses [`Period`]'s `Display` form.
    fn from_str(s: &str) -> Result<Self> {
        let mut parts = s.split_whitespace();
        let every = parts
            .next()
            .ok_or_else(|| invalid("an empty period".to_owned()))?;
        let (mut tz, mut anchor) = (None, None);
        for part in parts {
            match part.split_once('=') {
                Some(("tz", zone)) => tz = Some(zone),
                Some(("anchor", at)) => {
                    anchor = Some(Timestamp::parse(at).map_err(|e| invalid(e.to_string()))?)
                }
                _ => {
                    return Err(invalid(format!(
                        "period {s:?}: unexpected {part:?} (expected tz=ZONE or anchor=TIME)"
                    )))
                }
            }
        }
        Self::parse_parts(every, tz, anchor)
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn window(period: &str, t: &str) -> (String, String) {
        let w = period.parse::<Period>().unwrap().window_at(at(t));
        (w.start.to_string(), w.end.to_string())
    }

    fn pair(start: &str, end: &str) -> (String, String) {
        (at(start).to_string(), at(end).to_string())
    }

    #[test]
    fn calendar_periods_default_to_utc_midnight_monday_and_the_first() {
        assert_eq!(
            window("daily", "2026-12-02T13:45:00Z"),
            pair("2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z")
        );
        // 2026-12-02 is a Wednesday.
        assert_eq!(
            window("weekly", "2026-12-02T13:45:00Z"),
            pair("2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z")
        );
        assert_eq!(
            window("monthly", "2026-12-02T13:45:00Z"),
            pair("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")
        );
        // A boundary instant starts its window.
        assert_eq!(
            window("daily", "2026-12-03T00:00:00Z"),
            pair("2026-12-03T00:00:00Z", "2026-12-04T00:00:00Z")
        );
    }

    #[test]
    fn daily_in_a_zone_follows_its_daylight_saving_days() {
        // Spring forward (23 h) and fall back (25 h) in Berlin, 2026.
        assert_eq!(
            window("daily tz=Europe/Berlin", "2026-03-29T10:00:00Z"),
            pair("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z")
        );
        assert_eq!(
            window("daily tz=Europe/Berlin", "2026-10-25T10:00:00Z"),
            pair("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z")
        );
        // Just before local midnight is still the same local day.
        assert_eq!(
            window("daily tz=America/New_York", "2026-12-03T04:59:59Z"),
            pair("2026-12-02T05:00:00Z", "2026-12-03T05:00:00Z")
        );
    }

    #[test]
    fn a_boundary_in_a_gap_moves_to_the_end_of_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29: that day's window starts at 03:00.
        let p = "daily tz=Europe/Berlin anchor=2026-01-10T01:30:00Z"; // 02:30 local
        assert_eq!(
            window(p, "2026-03-29T05:00:00Z"),
            pair("2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z")
        );
        assert_eq!(
            window(p, "2026-03-29T00:59:59Z"),
            pair("2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z")
        );
    }

    #[test]
    fn a_boundary_in_a_repeated_hour_takes_its_first_occurrence() {
        // 02:30 happens twice in Berlin on 2026-10-25 (00:30 and 01:30 UTC).
        let p = "daily tz=Europe/Berlin anchor=2026-01-10T01:30:00Z";
        assert_eq!(
            window(p, "2026-10-25T01:10:00Z"),
            pair("2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z")
        );
        assert_eq!(
            window(p, "2026-10-25T00:10:00Z"),
            pair("2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn anchors_move_calendar_boundaries_to_their_local_time_weekday_and_day() {
        // Daily at 09:00 Berlin (08:00 UTC in winter).
        assert_eq!(
            window(
                "daily tz=Europe/Berlin anchor=2026-12-01T08:00:00Z",
                "2026-12-02T07:59:00Z"
            ),
            pair("2026-12-01T08:00:00Z", "2026-12-02T08:00:00Z")
        );
        // Weekly from Friday 00:00 UTC (2026-11-27 is a Friday).
        assert_eq!(
            window("weekly anchor=2026-11-27T00:00:00Z", "2026-12-02T13:00:00Z"),
            pair("2026-11-27T00:00:00Z", "2026-12-04T00:00:00Z")
        );
        // Monthly on the 31st: clamped to the last day of shorter months.
        let p = "monthly anchor=2026-01-31T00:00:00Z";
        assert_eq!(
            window(p, "2026-02-15T00:00:00Z"),
            pair("2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z")
        );
        assert_eq!(
            window(p, "2026-03-01T00:00:00Z"),
            pair("2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z")
        );
    }

    #[test]
    fn fixed_lengths_tile_time_from_their_anchor_both_ways() {
        let p = "90s anchor=2026-12-01T00:00:00Z";
        assert_eq!(
            window(p, "2026-12-01T00:03:00Z"),
            pair("2026-12-01T00:03:00Z", "2026-12-01T00:04:30Z")
        );
        assert_eq!(
            window(p, "2026-11-30T23:59:59Z"),
            pair("2026-11-30T23:58:30Z", "2026-12-01T00:00:00Z")
        );
        let unanchored: Period = "5h".parse().unwrap();
        let created = at("2026-12-01T10:17:00Z");
        assert_eq!(
            unanchored
                .anchored_at(created)
                .window_at(at("2026-12-01T16:00:00Z")),
            Window {
                start: at("2026-12-01T15:17:00Z"),
                end: at("2026-12-01T20:17:00Z"),
            }
        );
    }

    #[test]
    fn the_text_form_round_trips_and_bad_input_is_a_typed_error() {
        for text in [
            "daily",
            "weekly tz=Asia/Kolkata",
            "monthly tz=Europe/Berlin anchor=2026-01-31T08:00:00.000000Z",
            "2592000s anchor=2026-12-01T00:00:00.000000Z",
        ] {
            assert_eq!(text.parse::<Period>().unwrap().to_string(), text);
        }
        assert_eq!("30d".parse::<Period>().unwrap().to_string(), "2592000s");
        for bad in [
            "",
            "hourly-ish",
            "0s",
            "1500ms",
            "daily tz=Mars/Olympus",
            "90s tz=UTC",
            "daily when=now",
        ] {
            assert!(
                matches!(bad.parse::<Period>(), Err(Error::InvalidPeriod { .. })),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn every_instant_is_in_exactly_the_window_window_at_gives() {
        let periods = [
            "daily tz=Europe/Berlin",
            "weekly tz=America/Sao_Paulo",
            "monthly tz=Australia/Lord_Howe anchor=2026-01-30T13:00:00Z",
            "daily tz=Pacific/Apia",
            "7s anchor=2026-01-01T00:00:00Z",
        ];
        for text in periods {
            let period: Period = text.parse().unwrap();
            let mut t = at("2025-12-20T00:00:00Z");
            let mut previous: Option<Window> = None;
            while t < at("2027-01-10T00:00:00Z") {
                let w = period.window_at(t);
                assert!(w.contains(t), "{text}: {t} not in {w:?}");
                assert_eq!(period.window_at(w.start), w, "{text}: start of {w:?}");
                if let (Some(p), false) = (previous, matches!(period.every(), Every::Fixed(_))) {
                    assert!(p == w || p.end == w.start, "{text}: {p:?} then {w:?}");
                }
                previous = Some(w);
                t = t.checked_add(Duration::from_secs(3 * 3600 + 17)).unwrap();
            }
        }
    }
}
