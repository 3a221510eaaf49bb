//! The command line, as clap derives it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokenbudget::prices::Usage;
use tokenbudget::{BudgetId, IdempotencyKey, ReservationId, ReservationState, Unit};

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
    /// Hold AMOUNT (or what --model's usage costs) on BUDGET and its ancestors; prints the
    /// reservation id.
    Reserve(ReserveArgs),
    /// Record what a reservation actually used: ACTUAL, or the usage given by kind.
    Commit(CommitArgs),
    /// List reservations.
    #[command(subcommand)]
    Reservations(ReservationsCommand),
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
    /// Serve the web dashboard (budgets, live holds, events) over the database.
    Dashboard(crate::dashboard::DashboardArgs),
    /// Create, list and revoke gateway keys.
    #[command(subcommand)]
    Key(crate::key::KeyCommand),
}

#[derive(Debug, Args)]
pub struct ChargeArgs {
    /// The budget that pays (its ancestors pay too).
    #[arg(value_name = "BUDGET")]
    pub budget: BudgetId,
    /// What was used, in the budget's unit: tokens, or dollars (`0.25`) on a usd budget.
    #[arg(value_name = "AMOUNT")]
    pub amount: String,
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
    Create(CreateArgs),
    /// Change a budget's limit (raise it, or lower it even below what is used: new
    /// reservations are then refused).
    Update {
        #[arg(value_name = "ID")]
        id: BudgetId,
        /// The new limit, in the budget's unit (tokens, or dollars for a usd budget).
        #[arg(long, value_name = "AMOUNT")]
        limit: String,
    },
    /// Close a budget: no new reservations on it or below it (held ones may still commit
    /// or roll back).
    Close {
        #[arg(value_name = "ID")]
        id: BudgetId,
    },
    /// Reopen a closed budget.
    Reopen {
        #[arg(value_name = "ID")]
        id: BudgetId,
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
pub struct CreateArgs {
    /// The new budget's id: 1-128 characters of [A-Za-z0-9_.:-].
    #[arg(value_name = "ID")]
    pub id: BudgetId,
    /// The limit (per period for a periodic budget): tokens, or dollars with up to 6
    /// decimals for --unit usd (`20`, `0.5`).
    #[arg(long, value_name = "AMOUNT")]
    pub limit: String,
    /// The parent budget, whose totals include this one's.
    #[arg(long, value_name = "ID")]
    pub parent: Option<BudgetId>,
    /// What the budget counts. Defaults to the parent's unit, else tokens.
    #[arg(long, value_enum)]
    pub unit: Option<UnitArg>,
    /// Start again at 0 every period: daily, weekly, monthly, or a length (90s, 5h, 30d).
    #[arg(long, value_name = "PERIOD")]
    pub period: Option<String>,
    /// The IANA time zone of a daily, weekly or monthly period (default UTC).
    #[arg(long, value_name = "ZONE", requires = "period")]
    pub tz: Option<String>,
    /// Align the windows to this time (RFC 3339): a fixed length's windows start there (default:
    /// now); a calendar period starts at its local time of day (and weekday, or day of month).
    #[arg(long, value_name = "TIME", requires = "period")]
    pub anchor: Option<String>,
}

/// A budget's unit on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnitArg {
    /// Tokens.
    Tokens,
    /// US dollars (stored as micro-dollars).
    Usd,
}

impl From<UnitArg> for Unit {
    fn from(u: UnitArg) -> Self {
        match u {
            UnitArg::Tokens => Unit::Tokens,
            UnitArg::Usd => Unit::Usd,
        }
    }
}

/// A usage, token kind by kind (what an API response reports).
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Fresh prompt tokens.
    #[arg(long, value_name = "N")]
    pub input: Option<u64>,
    /// Generated tokens.
    #[arg(long, value_name = "N")]
    pub output: Option<u64>,
    /// Prompt tokens read from the cache.
    #[arg(long, value_name = "N")]
    pub cache_read: Option<u64>,
    /// Prompt tokens written to the 5 minute cache.
    #[arg(long = "cache-write-5m", value_name = "N")]
    pub cache_write_5m: Option<u64>,
    /// Prompt tokens written to the 1 hour cache.
    #[arg(long = "cache-write-1h", value_name = "N")]
    pub cache_write_1h: Option<u64>,
    /// A LiteLLM-format price file whose entries override the built-in prices, per model.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

impl UsageArgs {
    /// The usage, when any kind was given.
    pub fn usage(&self) -> Option<Usage> {
        let kinds = [
            self.input,
            self.output,
            self.cache_read,
            self.cache_write_5m,
            self.cache_write_1h,
        ];
        kinds.iter().any(Option::is_some).then(|| Usage {
            input: self.input.unwrap_or(0),
            output: self.output.unwrap_or(0),
            cache_write_5m: self.cache_write_5m.unwrap_or(0),
            cache_write_1h: self.cache_write_1h.unwrap_or(0),
            cache_read: self.cache_read.unwrap_or(0),
        })
    }
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The reservation id `reserve` printed.
    #[arg(value_name = "RESERVATION")]
    pub reservation: ReservationId,
    /// What was used, in the budget's unit (tokens, or dollars on a usd budget); may exceed
    /// the reservation: an overrun is recorded in full. Or give the usage by kind instead.
    #[arg(value_name = "ACTUAL", required_unless_present_any = ["input", "output", "cache_read", "cache_write_5m", "cache_write_1h"])]
    pub actual: Option<String>,
    #[command(flatten)]
    pub usage: UsageArgs,
}

#[derive(Debug, Subcommand)]
pub enum ReservationsCommand {
    /// List reservations, oldest first.
    List {
        /// Only those on this budget or below it.
        #[arg(long, value_name = "ID")]
        budget: Option<BudgetId>,
        /// Only those in this state now (a hold past its expiry is expired).
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// Only those after this reservation id (the last one of the previous page).
        #[arg(long, value_name = "RESERVATION")]
        after: Option<ReservationId>,
    },
}

/// A reservation state on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Holding until committed, rolled back or expired.
    Held,
    /// Usage recorded.
    Committed,
    /// Rolled back.
    Released,
    /// Its timeout passed first.
    Expired,
}

impl From<StateArg> for ReservationState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Held => ReservationState::Held,
            StateArg::Committed => ReservationState::Committed,
            StateArg::Released => ReservationState::Released,
            StateArg::Expired => ReservationState::Expired,
        }
    }
}

#[derive(Debug, Args)]
pub struct ReserveArgs {
    /// The budget to reserve on.
    #[arg(value_name = "BUDGET")]
    pub budget: BudgetId,
    /// What to hold, in the budget's unit (tokens, or dollars on a usd budget). Or give
    /// --model with the estimated usage by kind instead.
    #[arg(
        value_name = "AMOUNT",
        required_unless_present_any = ["model", "input", "output", "cache_read", "cache_write_5m", "cache_write_1h"]
    )]
    pub amount: Option<String>,
    /// The model the request goes to: the reservation keeps it, and a usd budget prices
    /// the estimate (and the commit's usage) with it.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    #[command(flatten)]
    pub usage: UsageArgs,
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
