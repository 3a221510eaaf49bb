//! `tokenbudget reservations list`.

use serde_json::json;
use tokenbudget::{Reservation, TokenBudget, Unit};

use crate::cli::ReservationsCommand;
use crate::failure::Failure;
use crate::output::Out;
use crate::reserve::bare;

pub async fn run(
    cmd: ReservationsCommand,
    budgets: &TokenBudget,
    out: &mut Out,
) -> Result<(), Failure> {
    let ReservationsCommand::List {
        budget,
        state,
        limit,
        after,
    } = cmd;
    let now = budgets.clock().now();
    let found = budgets
        .reservations(budget, state.map(Into::into), after, limit)
        .await?;
    let units: std::collections::BTreeMap<_, _> = budgets
        .list()
        .await?
        .into_iter()
        .map(|s| (s.id, s.unit))
        .collect();
    let unit_of = |r: &Reservation| units.get(&r.budget_id).copied().unwrap_or_default();
    if out.is_json() {
        for r in &found {
            out.line(
                &json!({
                    "reservation_id": r.id,
                    "budget_id": r.budget_id,
                    "state": r.state_at(now),
                    "tokens": r.tokens,
                    "actual": r.actual,
                    "unit": unit_of(r),
                    "model": r.model,
                    "created_at": r.created_at,
                    "expires_at": r.expires_at,
                    "settled_at": r.settled_at,
                    "idempotency_key": r.idempotency_key,
                })
                .to_string(),
            )?;
        }
        return Ok(());
    }
    if found.is_empty() {
        return out.line("no reservations");
    }
    out.line(&format!(
        "{:<36}  {:<9}  {:>12}  {:>12}  {:<26}  BUDGET",
        "RESERVATION", "STATE", "HELD", "USED", "EXPIRES"
    ))?;
    for r in &found {
        let unit: Unit = unit_of(r);
        out.line(&format!(
            "{:<36}  {:<9}  {:>12}  {:>12}  {:<26}  {}",
            r.id,
            r.state_at(now).as_str(),
            bare(unit, r.tokens),
            r.actual.map_or("-".to_owned(), |a| bare(unit, a)),
            r.expires_at.to_string(),
            r.budget_id
        ))?;
    }
    Ok(())
}
