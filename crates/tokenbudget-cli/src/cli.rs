//! The command line, as clap derives it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokenbudget::{BudgetId, IdempotencyKey, ReservationId};

/// The database when neither `--db` nor `TOKENBUDGET_DATABASE_URL` names one: a file in the
/// working directory, created on first use.
pub const DEFAULT_DB: &str = "sqlite://tokenbudget.db";

/// Keep LLM token spending inside budgets: count tokens, create budgets, reserve before a
/// call, commit what it used.
///
/// Exit codes: 0 success, 1 error, 2 bad usage, 3 refused for lack of budget.
#[derive(Debug, Parser)]
#[command(name = "tokenbudget", version, max_term_width = 100)]
pub struct Cli {
    /// The store: sqlite://rel/path.db, sqlite:///abs/path.db, sqlite::memory:,
    /// postgres://user:pass@host/db[?schema=name], memory://
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "TOKENBUDGET_DATABASE_URL",
        hide_env_values = true,
        default_value = DEFAULT_DB
    )]
    pub db: String,

    /// Print one JSON object (one per line for lists and events) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Count the tokens of a text or of a chat request (stdin when no FILE).
    Count(CountArgs),
    /// What a usage of a model costs, in dollars, from the built-in price table.
    Cost(crate::cost::CostArgs),
    /// Create budgets and read their status and events.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Hold TOKENS on BUDGET and its ancestors; prints the reservation id.
    Reserve(ReserveArgs),
    /// Record the tokens a reservation actually used.
    Commit {
        /// The reservation id `reserve` printed.
        #[arg(value_name = "RESERVATION")]
        reservation: ReservationId,
        /// Tokens actually used (may exceed the reservation: an overrun is recorded in full).
        #[arg(value_name = "ACTUAL")]
        actual: u64,
    },
    /// Release a reservation's hold without using it.
    Rollback {
        /// The reservation id `reserve` printed.
        #[arg(value_name = "RESERVATION")]
        reservation: ReservationId,
    },
    /// Push a held reservation's expiry to TIMEOUT from now (a long call still running).
    Extend {
        /// The reservation id `reserve` printed.
        #[arg(value_name = "RESERVATION")]
        reservation: ReservationId,
        /// The new expiry, from now: 30s, 10m, 1h, … (never earlier than it already is).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Record TOKENS used on BUDGET with no reservation (usage learned after the fact),
    /// once per --key, even past the limit.
    Charge(ChargeArgs),
    /// Release every reservation whose timeout has passed.
    Sweep,
    /// Imports usage from other tools' records into the usage ledger.
    #[command(subcommand)]
    Import(crate::import::ImportCommand),
    /// Reports on the usage ledger, and its verification against the sources.
    #[command(subcommand)]
    Usage(crate::usage::UsageCommand),
    /// Run the HTTP gateway (Anthropic and OpenAI compatible) that enforces budgets.
    Gateway(crate::gateway::GatewayArgs),
    /// Create, list and revoke gateway keys.
    #[command(subcommand)]
    Key(crate::key::KeyCommand),
}

#[derive(Debug, Args)]
pub struct ChargeArgs {
    /// The budget that pays (its ancestors pay too).
    #[arg(value_name = "BUDGET")]
    pub budget: BudgetId,
    /// Tokens used.
    #[arg(value_name = "TOKENS")]
    pub tokens: u64,
    /// Makes the charge happen once: the same key again records nothing more.
    #[arg(long, value_name = "KEY")]
    pub key: IdempotencyKey,
    /// What the usage was (at most 1024 bytes).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// Which tokenizer counts.
    #[arg(long, value_enum, default_value_t = Provider::Openai)]
    pub provider: Provider,
    /// The model (openai, estimate: picks the encoding, default o200k_base; claude: required).
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// Read a JSON array of chat messages and count the request's prompt tokens.
    #[arg(long)]
    pub messages: bool,
    /// The input; stdin when absent or `-`.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// Exact OpenAI counts (tiktoken encodings).
    Openai,
    /// Anthropic's count_tokens API (ANTHROPIC_API_KEY); falls back to the estimate when
    /// unavailable.
    Claude,
    /// The local estimator: no network, microseconds, not exact.
    Estimate,
}

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Create a budget (a workflow, or a phase under --parent).
    Create {
        /// The new budget's id: 1-128 characters of [A-Za-z0-9_.:-].
        #[arg(value_name = "ID")]
        id: BudgetId,
        /// Tokens allowed in total.
        #[arg(long, value_name = "N")]
        limit: u64,
        /// The parent budget, whose totals include this one's.
        #[arg(long, value_name = "ID")]
        parent: Option<BudgetId>,
    },
    /// Show a budget's limit, usage, holds and what is left.
    Status {
        #[arg(value_name = "ID")]
        id: BudgetId,
    },
    /// List every budget.
    List,
    /// Show a budget's event log. In --json, `tokens` is the limit for BUDGET_CREATED and
    /// the usage for BUDGET_EXHAUSTED.
    Events {
        #[arg(value_name = "ID")]
        id: BudgetId,
        /// Only events after this sequence number.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: u64,
    },
}

#[derive(Debug, Args)]
pub struct ReserveArgs {
    /// The budget to reserve on.
    #[arg(value_name = "BUDGET")]
    pub budget: BudgetId,
    /// Tokens to hold.
    #[arg(value_name = "TOKENS")]
    pub tokens: u64,
    /// How long the hold lasts without a commit: 30s, 5m, 1h 30m, …
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Makes a retried reserve return the first reservation instead of holding again.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<IdempotencyKey>,
    /// The reservation's id (a UUID) instead of a new one, so a script can retry or roll back a
    /// reserve whose answer it never saw.
    #[arg(long, value_name = "UUID")]
    pub id: Option<ReservationId>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}
