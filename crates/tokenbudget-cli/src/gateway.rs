//! `tokenbudget gateway`: the HTTP proxy that enforces budgets on live traffic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokenbudget::TokenBudget;
use tokenbudget_gateway::logging::LogFormat;
use tokenbudget_gateway::{keys, Gateway, OnStoreError, PromptCount, Settings};

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// The Anthropic API base URL (default https://api.anthropic.com, or the config's).
    #[arg(long, value_name = "URL")]
    pub anthropic_url: Option<String>,
    /// An OpenAI-compatible base URL ending in /v1.
    #[arg(long, value_name = "URL")]
    pub openai_url: Option<String>,
    /// gateway.toml: timeouts, weights, minimum output, prompt sizing.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How long open responses may run on after SIGTERM/Ctrl-C before they are cut and
    /// settled.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Log lines as `text` or `json` (one object a line), to stderr; `RUST_LOG` filters them
    /// (default `info`). Keys and credentials never appear in either.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub log_format: LogFormat,
    /// How Claude prompts are sized for admission: `bound` (UTF-8 bytes plus fixed costs,
    /// never below the truth), `estimate` (smaller, can be exceeded), or `count_tokens`
    /// (the upstream's count, falling back to the bound on a timeout or an error); overrides
    /// the config's `prompt_count`.
    #[arg(long, value_name = "HOW", value_parser = parse_prompt_count)]
    pub prompt_count: Option<PromptCount>,
    /// When the budget store is unreachable: `closed` (503, nothing forwarded) or `open`
    /// (forward within the config's `open_limit` tokens and journal the settlements);
    /// overrides the config's `on_store_error`.
    #[arg(long, value_name = "MODE", value_parser = parse_on_store_error)]
    pub on_store_error: Option<OnStoreError>,
    /// The settlement journal: settlements the store could not take, fsynced, replayed into
    /// the store when it is back and at start [default: the config's `journal`, else
    /// tokenbudget-gateway.journal in the working directory].
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

fn parse_on_store_error(text: &str) -> Result<OnStoreError, String> {
    match text {
        "closed" => Ok(OnStoreError::Closed),
        "open" => Ok(OnStoreError::Open),
        other => Err(format!("{other:?}: expected \"closed\" or \"open\"")),
    }
}

fn parse_prompt_count(text: &str) -> Result<PromptCount, String> {
    text.parse()
        .map_err(|e: tokenbudget_gateway::Error| e.to_string())
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    text.parse()
        .map_err(|e: tokenbudget_gateway::Error| e.to_string())
}

/// The journal's file when neither `--journal` nor the config names one.
const DEFAULT_JOURNAL: &str = "tokenbudget-gateway.journal";

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

fn config(e: tokenbudget_gateway::Error) -> Failure {
    Failure::error(e)
}

pub async fn run(args: GatewayArgs, db: &str, budgets: TokenBudget) -> Result<(), Failure> {
    let mut settings = match &args.config {
        Some(path) => Settings::from_file(path).map_err(config)?,
        None => Settings::default(),
    };
    if let Some(url) = &args.anthropic_url {
        settings = settings.with_anthropic_url(url).map_err(config)?;
    }
    if let Some(url) = &args.openai_url {
        settings = settings.with_openai_url(url).map_err(config)?;
    }
    if let Some(how) = args.prompt_count {
        settings.prompt_count = how;
    }
    if let Some(mode) = args.on_store_error {
        settings.on_store_error = mode;
    }
    settings.journal = args
        .journal
        .clone()
        .or(settings.journal.take())
        .or_else(|| Some(PathBuf::from(DEFAULT_JOURNAL)));
    let settings = settings.with_env_credentials();
    let keys = keys::open(db).await.map_err(config)?;
    keys.ping().await.map_err(config)?;
    let secrets = settings.credentials();
    // Every settled response becomes a row of the usage ledger in the same database, where
    // `usage` reports and the dashboard read it beside imported transcripts.
    let ledger = crate::ledger::open(db).await?;
    let ledger = Arc::new(tokenbudget_gateway::UsageLedger::new(ledger));
    let gateway = Gateway::with_ledger(budgets, keys, settings, ledger).map_err(config)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::error(format!("--listen {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::error(format!("--listen: {e}")))?;
    // After every start-up check: a failure to start stays one plain line on stderr.
    tokenbudget_gateway::logging::init(args.log_format, secrets).map_err(config)?;
    tokenbudget_gateway::logging::listening(args.log_format, addr);
    tokenbudget_gateway::serve(gateway, listener, tokenbudget_gateway::signal(), args.grace)
        .await
        .map_err(|e| Failure::error(format!("serving: {e}")))
}
