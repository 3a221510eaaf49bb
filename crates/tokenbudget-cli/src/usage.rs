//! `tokenbudget usage …`: reports on the usage ledger, and `usage verify`.

use std::path::PathBuf;

use chrono::{NaiveDate, TimeZone};
use clap::{Args, Subcommand};
use tokenbudget_ledger::report::{self, Period, Report, ReportOptions, Row, Totals, Zone};
use tokenbudget_ledger::VerifyReport;

use crate::failure::Failure;
use crate::output::Out;

/// Reports and verification of the usage ledger.
#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Tokens and cost per day.
    Daily(ReportArgs),
    /// Per ISO week (labelled with its Monday).
    Weekly(ReportArgs),
    /// Per month.
    Monthly(ReportArgs),
    /// Per project and session.
    Session(ReportArgs),
    /// Per 5-hour block (a block starts at the hour of its first response), with the gaps.
    Blocks(ReportArgs),
    /// Per model.
    Models(ReportArgs),
    /// Re-reads the transcripts and compares with the ledger: exit 0 when equal, 1 otherwise.
    Verify {
        /// As for `import claude-code`: defaults to the Claude Code data directories.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// The machine label the rows were imported with.
        #[arg(long, value_name = "NAME", default_value = "")]
        machine: String,
    },
}

/// Options every report takes.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// From this day on (YYYY-MM-DD or YYYYMMDD, in --tz).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub since: Option<NaiveDate>,
    /// Up to and including this day.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub until: Option<NaiveDate>,
    /// Only projects whose name contains this.
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
    /// Only models whose name contains this.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Time zone for days and labels: UTC, local, +02:00 or an IANA name.
    #[arg(long, value_name = "TZ", default_value = "UTC", value_parser = parse_zone)]
    pub tz: Zone,
    /// One line per model under each row.
    #[arg(long)]
    pub breakdown: bool,
    /// Comma-separated values instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(text, "%Y%m%d"))
        .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD or YYYYMMDD)"))
}

fn parse_zone(text: &str) -> Result<Zone, String> {
    text.parse()
        .map_err(|e: tokenbudget_ledger::Error| e.to_string())
}

/// Microseconds at the start of `day` in `zone`.
fn start_of(day: NaiveDate, zone: Zone) -> i64 {
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    let utc_guess = chrono::Utc.from_utc_datetime(&naive);
    let offset = zone.offset_at(utc_guess);
    (naive - chrono::Duration::seconds(i64::from(offset.local_minus_utc())))
        .and_utc()
        .timestamp_micros()
}

pub async fn run(cmd: UsageCommand, db: &str, out: &mut Out) -> Result<(), Failure> {
    let (period, args) = match cmd {
        UsageCommand::Verify { paths, machine } => return verify(&paths, &machine, db, out).await,
        UsageCommand::Daily(a) => (Period::Daily, a),
        UsageCommand::Weekly(a) => (Period::Weekly, a),
        UsageCommand::Monthly(a) => (Period::Monthly, a),
        UsageCommand::Session(a) => (Period::Session, a),
        UsageCommand::Blocks(a) => (Period::Blocks, a),
        UsageCommand::Models(a) => (Period::Models, a),
    };
    let store = crate::ledger::open(db).await?;
    let options = ReportOptions {
        period,
        zone: args.tz,
        project: args.project,
        model: args.model,
        breakdown: args.breakdown,
    };
    let query = report::query(
        &options,
        args.since.map(|d| start_of(d, args.tz)),
        args.until
            .and_then(|d| d.succ_opt())
            .map(|d| start_of(d, args.tz)),
        crate::ledger::tier_thresholds(),
    );
    let rows = store
        .aggregate(&query)
        .await
        .map_err(|e| Failure::error(e).context("reading the ledger"))?;
    let report = report::report(&rows, &options, &crate::ledger::cost);
    if out.is_json() {
        let value = serde_json::to_value(&report).map_err(Failure::error)?;
        return out.emit(value, String::new);
    }
    let text = if args.csv {
        csv(&report)
    } else {
        table(&report, period)
    };
    out.line(text.trim_end())
}

/// Dollars and cents, rounded half up.
fn usd_exact(micros: u64) -> String {
    let cents = (micros + 5_000) / 10_000;
    format!("${}.{:02}", cents / 100, cents % 100)
}

fn tokens(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const HEADERS: [&str; 7] = [
    "",
    "Input",
    "Output",
    "Cache write",
    "Cache read",
    "Total",
    "Cost",
];

fn cells(label: String, t: &Totals) -> [String; 7] {
    let u = &t.usage;
    let mut cost = usd_exact(t.cost_micro_usd);
    if t.unpriced_responses > 0 {
        cost.push('*');
    }
    [
        label,
        tokens(u.input),
        tokens(u.output),
        tokens(u.cache_write_5m + u.cache_write_1h),
        tokens(u.cache_read),
        tokens(t.total_tokens),
        cost,
    ]
}

/// A table that fits 100 columns (labels are cut to fit).
fn table(report: &Report, period: Period) -> String {
    let first = match period {
        Period::Daily => "Date",
        Period::Weekly => "Week",
        Period::Monthly => "Month",
        Period::Session => "Session",
        Period::Blocks => "Block start (5 h)",
        Period::Models => "Model",
    };
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut header = HEADERS.map(str::to_owned);
    header[0] = first.to_owned();
    rows.push(header);
    for row in &report.rows {
        rows.push(if row.gap {
            [
                format!("(gap until {})", row.until),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]
        } else {
            cells(row_label(row), &row.totals)
        });
        for (model, t) in &row.breakdown {
            rows.push(cells(format!("  {model}"), t));
        }
    }
    rows.push(cells("Total".to_owned(), &report.total));
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let numbers: usize = widths[1..].iter().sum::<usize>() + 2 * 6;
    widths[0] = widths[0].min(100usize.saturating_sub(numbers + 1).max(10));
    let mut text = String::new();
    for (i, r) in rows.iter().enumerate() {
        let label: String = r[0].chars().take(widths[0]).collect();
        let mut line = format!("{label:<w$}", w = widths[0]);
        for (c, w) in r[1..].iter().zip(&widths[1..]) {
            line.push_str(&format!("  {c:>w$}"));
        }
        text.push_str(line.trim_end());
        text.push('\n');
        if i == 0 || i + 2 == rows.len() {
            text.push_str(&"-".repeat(line.chars().count().min(100)));
            text.push('\n');
        }
    }
    if report.total.unpriced_responses > 0 {
        text.push_str(&format!(
            "* {} responses of models without a price are not in the cost\n",
            report.total.unpriced_responses
        ));
    }
    text
}

fn row_label(row: &Row) -> String {
    row.label.clone()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv(report: &Report) -> String {
    let mut text = String::from(
        "label,until,gap,model,responses,input,output,cache_write_5m,cache_write_1h,cache_read,\
         web_search_requests,total_tokens,cost_usd,unpriced_responses\n",
    );
    let line = |label: &str, until: &str, gap: bool, model: &str, t: &Totals| {
        let u = &t.usage;
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}.{:06},{}\n",
            csv_field(label),
            csv_field(until),
            gap,
            csv_field(model),
            t.responses,
            u.input,
            u.output,
            u.cache_write_5m,
            u.cache_write_1h,
            u.cache_read,
            u.web_search_requests,
            t.total_tokens,
            t.cost_micro_usd / 1_000_000,
            t.cost_micro_usd % 1_000_000,
            t.unpriced_responses
        )
    };
    for row in &report.rows {
        text.push_str(&line(&row.label, &row.until, row.gap, "", &row.totals));
        for (model, t) in &row.breakdown {
            text.push_str(&line(&row.label, &row.until, false, model, t));
        }
    }
    text
}

async fn verify(paths: &[PathBuf], machine: &str, db: &str, out: &mut Out) -> Result<(), Failure> {
    let files = crate::import::sources(paths, machine)?;
    let store = crate::ledger::open(db).await?;
    let report = tokenbudget_ledger::verify(&*store, &files)
        .await
        .map_err(|e| Failure::error(e).context("verifying"))?;
    let value = serde_json::to_value(&report).map_err(Failure::error)?;
    out.emit(value, || verify_text(&report))?;
    if report.is_equal() {
        Ok(())
    } else {
        Err(Failure::error(format!(
            "the ledger differs from the sources in {} file(s)",
            report.differing.len().max(1)
        )))
    }
}

fn verify_text(r: &VerifyReport) -> String {
    let mut text = format!(
        "sources: {} files, {} responses, {} tokens\nledger:  {} responses, {} tokens",
        r.files,
        r.expected.records,
        tokens(r.expected.usage.total_tokens()),
        r.ledger.records,
        tokens(r.ledger.usage.total_tokens()),
    );
    if r.is_equal() {
        text.push_str("\nthe ledger agrees with the sources");
    }
    for d in &r.differing {
        text.push_str(&format!(
            "\ndiffers: {}: sources {} responses {} tokens (output {}), ledger {} responses {} tokens (output {})",
            d.file,
            d.expected.records,
            d.expected.usage.total_tokens(),
            d.expected.usage.output,
            d.ledger.records,
            d.ledger.usage.total_tokens(),
            d.ledger.usage.output
        ));
    }
    for k in &r.differing_keys {
        text.push_str(&format!("\ndiffering response: {k}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_numbers_format() {
        assert_eq!(usd_exact(0), "$0.00");
        assert_eq!(usd_exact(1_234_567), "$1.23");
        assert_eq!(usd_exact(1_995_000), "$2.00");
        assert_eq!(tokens(1234567), "1,234,567");
        assert_eq!(tokens(12), "12");
    }

    #[test]
    fn days_start_in_the_zone() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(start_of(day, "UTC".parse().unwrap()), 1_793_491_200_000_000);
        assert_eq!(
            start_of(day, "+02:00".parse().unwrap()),
            1_793_491_200_000_000 - 7_200_000_000
        );
    }
}
