//! `tokenbudget dashboard`: the web dashboard on its own, over the `--db` database (its
//! budgets and its usage ledger).

use std::net::SocketAddr;

use tokenbudget::TokenBudget;

use crate::failure::Failure;

/// `tokenbudget dashboard [--listen ADDR] [--token T]`.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Where to listen. Off loopback, a token is required.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,
    /// The token every request must carry (`Authorization: Bearer …`, or `?token=` once in
    /// the browser), at least 16 characters.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TOKENBUDGET_DASHBOARD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Serves until Ctrl-C or SIGTERM, over the budgets and the usage ledger of `db`.
pub async fn run(args: DashboardArgs, db: &str, budgets: &TokenBudget) -> Result<(), Failure> {
    let ledger = crate::ledger::open(db).await?;
    let mut dashboard = tokenbudget_dashboard::Dashboard::new(budgets.store().clone())
        .with_usage(ledger)
        .with_prices(budgets.prices().clone());
    if let Some(token) = args.token {
        dashboard = dashboard
            .with_token(token)
            .map_err(|e| Failure::usage(format!("--token: {e}")))?;
    }
    dashboard
        .check_listen(args.listen)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::error(format!("listening on {}: {e}", args.listen)))?;
    eprintln!("tokenbudget dashboard on http://{}/dashboard", args.listen);
    dashboard
        .serve(listener, tokenbudget_gateway::signal())
        .await
        .map_err(|e| Failure::error(e.to_string()))
}
