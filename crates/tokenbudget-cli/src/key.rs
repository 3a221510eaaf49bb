//! `tokenbudget key create | list | revoke`: gateway keys, stored hashed beside the budgets.

use clap::Subcommand;
use serde_json::json;
use tokenbudget::{BudgetId, TokenBudget};
use tokenbudget_gateway::keys;

use crate::failure::Failure;
use crate::output::Out;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a gateway key paying from BUDGET; prints the key (tbk_…) once, alone on stdout.
    Create {
        /// The budget that pays for the key's requests.
        #[arg(long, value_name = "ID")]
        budget: BudgetId,
        /// A label shown by `key list`.
        #[arg(long, value_name = "N")]
        name: Option<String>,
        /// Give each Claude Code session its own phase under BUDGET with this limit.
        #[arg(long, value_name = "N")]
        session_limit: Option<u64>,
    },
    /// List keys (never the secrets).
    List,
    /// Revoke a key by the id `key list` shows.
    Revoke {
        #[arg(value_name = "KEY_ID")]
        id: String,
    },
}

fn gw(e: tokenbudget_gateway::Error) -> Failure {
    Failure::error(e)
}

pub async fn run(
    cmd: KeyCommand,
    db: &str,
    budgets: &TokenBudget,
    out: &mut Out,
) -> Result<(), Failure> {
    let store = keys::open(db).await.map_err(gw)?;
    match cmd {
        KeyCommand::Create {
            budget,
            name,
            session_limit,
        } => {
            // The budget must exist: a key for nothing would only ever be refused.
            budgets.status(&budget).await?;
            let (key, record) = keys::generate(budget, name, session_limit).map_err(gw)?;
            store.insert(&record).await.map_err(gw)?;
            out.emit(
                json!({
                    "key": key,
                    "id": record.id,
                    "budget_id": record.budget_id,
                    "name": record.name,
                    "session_limit": record.session_limit,
                    "created_at": record.created_at,
                }),
                || key.clone(),
            )
        }
        KeyCommand::List => {
            for r in store.list().await.map_err(gw)? {
                out.emit(serde_json::to_value(&r).unwrap_or_default(), || {
                    format!(
                        "{}\t{}\t{}\t{}{}",
                        r.id,
                        r.budget_id,
                        r.name.as_deref().unwrap_or("-"),
                        r.session_limit
                            .map_or("-".to_owned(), |l| format!("session-limit={l}")),
                        if r.revoked_at.is_some() {
                            "\trevoked"
                        } else {
                            ""
                        }
                    )
                })?;
            }
            Ok(())
        }
        KeyCommand::Revoke { id } => {
            if !store.revoke(&id, chrono::Utc::now()).await.map_err(gw)? {
                return Err(Failure::error(format!("no key with id {id}")));
            }
            out.emit(json!({"id": id, "revoked": true}), || {
                format!("revoked {id}")
            })
        }
    }
}
