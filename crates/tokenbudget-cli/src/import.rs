//! `tokenbudget import claude-code [PATH…]`: Claude Code transcripts into the usage ledger.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokenbudget_ledger::discover::{self, SourceFile};
use tokenbudget_ledger::import::Progress;
use tokenbudget_ledger::{Charger, ImportOptions, ImportSummary};

use crate::charge_import::{BudgetCharger, ChargeSummary};

use crate::failure::Failure;
use crate::output::Out;

/// Sources the importer reads.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Claude Code transcripts (`<project>/<session>.jsonl`, `<session>/subagents/*.jsonl`):
    /// new responses into the ledger, resuming each file at its checkpoint.
    ClaudeCode(ClaudeCodeArgs),
}

/// `import claude-code` arguments.
#[derive(Debug, Args)]
pub struct ClaudeCodeArgs {
    /// Directories or files to read. Defaults to every Claude Code data directory that
    /// exists: `$CLAUDE_CONFIG_DIR` (comma-separated), `~/.config/claude/projects`,
    /// `~/.claude/projects`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Labels the imported rows with the machine the files come from.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub machine: String,
    /// Also charges each newly imported response to this budget (its token total, or its
    /// price on a usd budget), once per response however often it is imported; the budget
    /// must exist.
    #[arg(long, value_name = "BUDGET")]
    pub charge: Option<String>,
}

/// The files under `paths` (or the default directories), each once.
pub fn sources(paths: &[PathBuf], machine: &str) -> Result<Vec<SourceFile>, Failure> {
    let roots = if paths.is_empty() {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let config = std::env::var("CLAUDE_CONFIG_DIR").ok();
        let roots = discover::default_roots(config.as_deref(), home.as_deref());
        if roots.is_empty() {
            return Err(Failure::usage(
                "no Claude Code data directory found ($CLAUDE_CONFIG_DIR, ~/.config/claude/projects, \
                 ~/.claude/projects): give a PATH",
            ));
        }
        roots
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for root in roots {
        files.extend(
            discover::discover(&root, machine).map_err(|e| Failure::error(e).context("reading"))?,
        );
    }
    files.sort_by(|a, b| a.ctx.file.cmp(&b.ctx.file));
    files.dedup_by(|a, b| a.ctx.file == b.ctx.file);
    Ok(files)
}

/// A progress bar on a terminal (files, lines, MB/s), hidden under `--json` or without one.
fn bar(files: &[SourceFile], json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(&f.path).ok())
        .map(|m| m.len())
        .sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub async fn run(cmd: ImportCommand, db: &str, out: &mut Out) -> Result<(), Failure> {
    let ImportCommand::ClaudeCode(args) = cmd;
    let files = sources(&args.paths, &args.machine)?;
    let store = crate::ledger::open(db).await?;
    // The budgets, in the same database, only when charging; an unknown budget stops the
    // import before anything is read.
    let budgets = match &args.charge {
        Some(_) => Some(
            tokenbudget::TokenBudget::builder()
                .url(db)
                .sweep_every(None)
                .build()
                .await
                .map_err(|e| {
                    Failure::from(e).context(format!("opening {}", tokenbudget::redact(db)))
                })?,
        ),
        None => None,
    };
    let charger = match (&budgets, &args.charge) {
        (Some(budgets), Some(budget)) => Some(
            BudgetCharger::new(budgets, budget)
                .await
                .map_err(|e| Failure::from(e).context("--charge: nothing imported"))?,
        ),
        _ => None,
    };
    let bar = bar(&files, out.is_json());
    let (mut done, mut lines) = (0u64, 0u64);
    let count = files.len();
    let started = Instant::now();
    let mut on_progress = |p: Progress| {
        lines += p.lines;
        done += u64::from(p.file_done);
        // Skipped (unchanged) files count their whole size as done.
        bar.inc(p.bytes);
        bar.set_message(format!("{done}/{count} files, {lines} lines"));
    };
    let result = tokenbudget_ledger::import_charging(
        &*store,
        &files,
        ImportOptions::default(),
        charger.as_ref().map(|c| c as &dyn Charger),
        &mut on_progress,
    )
    .await;
    bar.finish_and_clear();
    let summary = result.map_err(|e| Failure::error(e).context("importing"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let charged = charger.as_ref().map(BudgetCharger::summary);
    report(&summary, charged.as_ref(), elapsed, out)?;
    if summary.errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::error(format!(
            "{} file(s) could not be read (listed above); the others were imported",
            summary.errors.len()
        )))
    }
}

fn report(
    s: &ImportSummary,
    charged: Option<&ChargeSummary>,
    elapsed: f64,
    out: &mut Out,
) -> Result<(), Failure> {
    let mut value = serde_json::to_value(s).map_err(Failure::error)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("seconds".into(), serde_json::json!(elapsed));
        if let Some(c) = charged {
            map.insert(
                "charge".into(),
                serde_json::to_value(c).map_err(Failure::error)?,
            );
        }
    }
    out.emit(value, || {
        let mb = s.bytes_read as f64 / 1e6;
        let mut text = format!(
            "imported {} new and {} updated responses ({} already in the ledger) from {} files \
             ({} unchanged, {} resumed, {} from the start, {} rewritten)\n\
             read {:.1} MB, {} lines, {} with usage, in {:.2} s ({:.0} MB/s)",
            s.inserted,
            s.replaced,
            s.unchanged,
            s.files,
            s.files_unchanged,
            s.files_resumed,
            s.files_from_start,
            s.files_rewritten,
            mb,
            s.lines,
            s.usage_lines,
            elapsed,
            if elapsed > 0.0 { mb / elapsed } else { 0.0 }
        );
        let skipped: Vec<String> = s
            .skipped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if !skipped.is_empty() {
            text.push_str(&format!("\nlines without a record: {}", skipped.join(", ")));
        }
        let notes = [
            ("invalid UTF-8 lines (counted)", s.invalid_utf8_lines),
            ("CRLF lines", s.crlf_lines),
            ("files with a BOM", s.bom_files),
            ("over-long lines skipped", s.oversized_lines),
            (
                "files ending in an incomplete line (left for the next run)",
                s.torn_files,
            ),
        ];
        for (what, n) in notes {
            if n > 0 {
                text.push_str(&format!("\n{what}: {n}"));
            }
        }
        if let Some(c) = charged {
            text.push_str(&format!(
                "\ncharged {} responses to {} ({} {}), {} topped up, {} already charged",
                c.charged, c.budget, c.amount, c.unit, c.topped_up, c.already_charged
            ));
            if c.unpriced > 0 {
                text.push_str(&format!(
                    ", {} of models without a price not charged",
                    c.unpriced
                ));
            }
        }
        for e in &s.errors {
            text.push_str(&format!("\nerror: {}: {}", e.file, e.message));
        }
        text
    })
}
