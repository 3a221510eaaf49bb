//! `tokenbudget`: the command-line tool of the tokenbudget project.
//!
//! Exit codes: 0 success, 1 error, 2 bad usage, 3 refused for lack of budget. Every failure
//! is one line on stderr.

mod budget;
mod charge_import;
mod cli;
mod cost;
mod count;
mod dashboard;
mod failure;
mod gateway;
mod import;
mod key;
mod ledger;
mod output;
mod reservations;
mod reserve;
mod usage;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tokenbudget::TokenBudget;

use crate::cli::{Cli, Command};
use crate::failure::{Failure, OK, USAGE};
use crate::output::Out;

fn main() -> ExitCode {
    // A bug must still end as one line and exit code 1, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(
            std::io::stderr(),
            "tokenbudget: internal error: {}",
            failure::one_line(&info.to_string())
        );
        std::process::exit(i32::from(failure::ERROR));
    }));

    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    // An empty TOKENBUDGET_DATABASE_URL means unset, as for most tools that read one.
    if cli.db.trim().is_empty() {
        cli.db = cli::DEFAULT_DB.to_owned();
    }
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::error(format!("starting the runtime: {e}")))
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if failure.code != OK {
                let _ = writeln!(
                    std::io::stderr(),
                    "tokenbudget: {}",
                    failure::one_line(&failure.message)
                );
            }
            failure.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let mut out = Out::new(cli.json);
    match cli.command {
        // Counting needs no database: don't create one.
        Command::Count(args) => count::run(args, &mut out).await?,
        Command::Cost(args) => cost::run(args, &mut out)?,
        // The ledger opens the database itself (the same one as the budgets).
        Command::Import(cmd) => import::run(cmd, &cli.db, &mut out).await?,
        Command::Usage(cmd) => usage::run(cmd, &cli.db, &mut out).await?,
        command => {
            // One command per process needs no background sweeper (`tokenbudget sweep` is
            // there); the gateway is a server, and runs one.
            let sweep = matches!(command, Command::Gateway(_))
                .then_some(tokenbudget::DEFAULT_SWEEP_INTERVAL);
            let budgets = TokenBudget::builder()
                .url(cli.db.as_str())
                .sweep_every(sweep)
                .build()
                .await
                .map_err(|e| {
                    Failure::from(e).context(format!("opening {}", tokenbudget::redact(&cli.db)))
                })?;
            match command {
                Command::Count(_) | Command::Cost(_) | Command::Import(_) | Command::Usage(_) => {
                    unreachable!("handled above")
                }
                Command::Budget(cmd) => budget::run(cmd, &budgets, &mut out).await?,
                Command::Reserve(args) => reserve::reserve(args, &budgets, &mut out).await?,
                Command::Commit(args) => reserve::commit(args, &budgets, &mut out).await?,
                Command::Reservations(cmd) => reservations::run(cmd, &budgets, &mut out).await?,
                Command::Rollback { reservation } => {
                    reserve::rollback(reservation, &budgets, &mut out).await?
                }
                Command::Extend {
                    reservation,
                    timeout,
                } => reserve::extend(reservation, timeout, &budgets, &mut out).await?,
                Command::Charge(args) => reserve::charge(args, &budgets, &mut out).await?,
                Command::Sweep => reserve::sweep(&budgets, &mut out).await?,
                Command::Gateway(args) => gateway::run(args, &cli.db, budgets).await?,
                Command::Key(cmd) => key::run(cmd, &cli.db, &budgets, &mut out).await?,
                Command::Dashboard(args) => dashboard::run(args, &cli.db, &budgets).await?,
            }
        }
    }
    out.flush()
}

/// `--help` and `--version` print to stdout and succeed; anything else clap rejects is bad
/// usage: what was wrong and the usage line, on one line of stderr, exit code 2.
fn clap_exit(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(std::io::stderr(), "tokenbudget: {}", clap_line(e));
    ExitCode::from(USAGE)
}

/// clap's message is several paragraphs: what was wrong, a tip, the usage. Keep the first
/// and the usage line.
fn clap_line(e: &clap::Error) -> String {
    let rendered = e.to_string();
    let usage = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(|u| format!(" (usage: {u})"))
        .unwrap_or_default();
    let what = if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "missing command".to_owned()
    } else {
        let paragraph: Vec<&str> = rendered
            .lines()
            .map(str::trim)
            .skip_while(|l| l.is_empty())
            .take_while(|l| !l.is_empty())
            .collect();
        let text = paragraph.join(" ");
        text.strip_prefix("error: ").unwrap_or(&text).to_owned()
    };
    failure::one_line(&format!("{what}{usage}"))
}
