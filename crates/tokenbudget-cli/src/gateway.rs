//! `tokenbudget gateway`: the HTTP proxy that enforces budgets on live traffic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokenbudget::TokenBudget;
use tokenbudget_gateway::{keys, Gateway, Settings};

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
}

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
    let settings = settings.with_env_credentials();
    let keys = keys::open(db).await.map_err(config)?;
    keys.ping().await.map_err(config)?;
    let gateway = Gateway::new(budgets, keys, settings).map_err(config)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::error(format!("--listen {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::error(format!("--listen: {e}")))?;
    eprintln!("tokenbudget gateway listening on http://{addr}");
    tokenbudget_gateway::serve(gateway, listener, tokenbudget_gateway::signal(), args.grace)
        .await
        .map_err(|e| Failure::error(format!("serving: {e}")))
}
