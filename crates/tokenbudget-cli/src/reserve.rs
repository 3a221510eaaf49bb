//! `tokenbudget reserve`, `commit`, `rollback`, `extend`, `charge` and `sweep`.

use std::time::Duration;

use serde_json::json;
use tokenbudget::prices::PriceTable;
use tokenbudget::{BudgetId, ReservationId, ReserveOptions, ReserveOutcome, TokenBudget, Unit};

use crate::cli::{ChargeArgs, CommitArgs, ReserveArgs, UsageArgs};
use crate::failure::Failure;
use crate::output::Out;

/// The unit `budget` counts in (an unknown budget is the core's `BudgetNotFound`).
pub async fn unit_of(budgets: &TokenBudget, budget: &BudgetId) -> Result<Unit, Failure> {
    match budgets
        .store()
        .budget(budget)
        .await
        .map_err(Failure::from)?
    {
        Some(b) => Ok(b.unit),
        None => Err(tokenbudget::CoreError::BudgetNotFound { id: budget.clone() }.into()),
    }
}

/// An amount typed in `unit` (tokens, or dollars), a usage error when it does not parse.
pub fn parse_amount(unit: Unit, field: &'static str, text: &str) -> Result<u64, Failure> {
    unit.parse_amount(field, text)
        .map_err(|e| Failure::usage(e.to_string()))
}

/// The embedded price table, with `--prices FILE` over it.
pub fn price_table(usage: &UsageArgs) -> Result<PriceTable, Failure> {
    let table = PriceTable::embedded();
    match &usage.prices {
        None => Ok(table),
        Some(path) => Ok(
            table.with_overrides(PriceTable::from_path(path).map_err(|e| {
                Failure::usage(format!("reading prices from {}: {e}", path.display()))
            })?),
        ),
    }
}

/// An amount in `unit` without the word: `1234`, or `$1.25`.
pub fn bare(unit: Unit, amount: u64) -> String {
    match unit {
        Unit::Tokens => amount.to_string(),
        Unit::Usd => unit.format(amount),
    }
}

/// What the usage costs in `unit`, with the price table `--prices` selects.
fn priced(
    unit: Unit,
    model: Option<&str>,
    args: &UsageArgs,
    usage: &tokenbudget::prices::Usage,
) -> Result<u64, Failure> {
    let table = price_table(args)?;
    tokenbudget::amount_for(unit, &table, model, usage).map_err(Failure::from)
}

/// Prints the reservation id (text) or `reservation_id`, `budget_id`, `tokens`, `expires_at`
/// (JSON). A refusal prints `outcome: "refused"` with the budget that lacked room in JSON,
/// and fails with exit code 3.
pub async fn reserve(
    args: ReserveArgs,
    budgets: &TokenBudget,
    out: &mut Out,
) -> Result<(), Failure> {
    let mut options = ReserveOptions::new().with_timeout(args.timeout);
    if let Some(key) = args.idempotency_key {
        options = options.with_idempotency_key(key);
    }
    if let Some(id) = args.id {
        options = options.with_reservation_id(id);
    }
    if let Some(model) = &args.model {
        options = options.with_model(model.clone());
    }
    let unit = unit_of(budgets, &args.budget).await?;
    let amount = match (&args.amount, args.usage.usage()) {
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give the AMOUNT to hold or the usage by kind (--input, --output, …), not both",
            ))
        }
        (Some(text), None) => parse_amount(unit, "amount", text)?,
        (None, Some(_)) if unit == Unit::Usd && args.model.is_none() => {
            return Err(Failure::usage(format!(
                "budget {} counts in usd: name the --model that prices the usage",
                args.budget
            )))
        }
        (None, Some(usage)) => priced(unit, args.model.as_deref(), &args.usage, &usage)?,
        (None, None) => return Err(Failure::usage(
            "give the AMOUNT to hold, or --model with the estimated usage (--input N --output N)",
        )),
    };
    match budgets.reserve(&args.budget, amount, options).await? {
        ReserveOutcome::Granted(grant) => {
            let r = &grant.reservation;
            out.emit(
                json!({
                    "outcome": "granted",
                    "reservation_id": r.id,
                    "budget_id": r.budget_id,
                    "tokens": r.tokens,
                    "unit": unit,
                    "model": r.model,
                    "expires_at": r.expires_at,
                    "state": r.state,
                    "replayed": grant.replayed,
                }),
                || r.id.to_string(),
            )
        }
        ReserveOutcome::Refused(refusal) => {
            if out.is_json() {
                out.line(
                    &json!({
                        "outcome": "refused",
                        "budget_id": refusal.budget_id,
                        "requested": refusal.requested,
                        "available": refusal.available,
                        "reason": refusal.reason,
                        "unit": refusal.unit,
                    })
                    .to_string(),
                )?;
            }
            Err(Failure::refused(&refusal))
        }
    }
}

/// `reservation_id`, `state` (`committed`), and the usage recorded.
pub async fn commit(args: CommitArgs, budgets: &TokenBudget, out: &mut Out) -> Result<(), Failure> {
    let id = args.reservation;
    let held = budgets
        .reservation(id)
        .await?
        .ok_or(tokenbudget::CoreError::ReservationNotFound { id })?;
    let unit = unit_of(budgets, &held.budget_id).await?;
    let actual = match (&args.actual, args.usage.usage()) {
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "give the ACTUAL amount or the usage by kind (--input, --output, …), not both",
            ))
        }
        (Some(text), None) => parse_amount(unit, "actual", text)?,
        (None, Some(usage)) => priced(unit, held.model.as_deref(), &args.usage, &usage)?,
        (None, None) => {
            return Err(Failure::usage(
                "give the ACTUAL amount or the usage by kind",
            ))
        }
    };
    let done = budgets.commit(id, actual).await?;
    let r = &done.reservation;
    out.emit(
        json!({
            "reservation_id": r.id,
            "state": r.state,
            "budget_id": r.budget_id,
            "tokens": r.tokens,
            "actual": r.actual,
            "unit": unit,
            "overrun": done.overrun,
            "late": done.late,
            "replayed": done.replayed,
        }),
        || {
            let mut text = format!(
                "committed {}: {} used of {} reserved",
                r.id,
                unit.format(actual),
                bare(unit, r.tokens)
            );
            if done.overrun > 0 {
                text.push_str(&format!(" ({} over)", bare(unit, done.overrun)));
            }
            if done.late {
                text.push_str(" (after the reservation had expired)");
            }
            if done.replayed {
                text.push_str(" (already committed: nothing changed)");
            }
            text
        },
    )
}

/// `reservation_id`, `state` (`released`, or `expired` when its timeout had released it).
pub async fn rollback(
    id: ReservationId,
    budgets: &TokenBudget,
    out: &mut Out,
) -> Result<(), Failure> {
    let done = budgets.rollback(id).await?;
    let r = &done.reservation;
    let unit = unit_of(budgets, &r.budget_id).await?;
    out.emit(
        json!({
            "reservation_id": r.id,
            "state": r.state,
            "budget_id": r.budget_id,
            "released": done.released,
        }),
        || {
            if done.released > 0 {
                format!(
                    "rolled back {}: {} released",
                    r.id,
                    unit.format(done.released)
                )
            } else {
                format!("rolled back {}: nothing held ({})", r.id, r.state)
            }
        },
    )
}

/// `reservation_id`, `state` (`held`) and the new `expires_at`.
pub async fn extend(
    id: ReservationId,
    timeout: Duration,
    budgets: &TokenBudget,
    out: &mut Out,
) -> Result<(), Failure> {
    let done = budgets.extend(id, timeout).await?;
    let r = &done.reservation;
    out.emit(
        json!({
            "reservation_id": r.id,
            "state": r.state,
            "budget_id": r.budget_id,
            "tokens": r.tokens,
            "expires_at": r.expires_at,
        }),
        || format!("extended {}: held until {}", r.id, r.expires_at),
    )
}

/// `key`, `budget_id`, `tokens`, `overrun` and `replayed`.
pub async fn charge(args: ChargeArgs, budgets: &TokenBudget, out: &mut Out) -> Result<(), Failure> {
    let unit = unit_of(budgets, &args.budget).await?;
    let amount = parse_amount(unit, "amount", &args.amount)?;
    let done = budgets
        .charge(&args.budget, amount, args.key, args.note)
        .await?;
    let c = &done.charge;
    out.emit(
        json!({
            "key": c.key,
            "budget_id": c.budget_id,
            "tokens": c.tokens,
            "note": c.note,
            "at": c.at,
            "unit": unit,
            "overrun": done.overrun,
            "replayed": done.replayed,
        }),
        || {
            let mut text = format!("charged {} to {}", unit.format(c.tokens), c.budget_id);
            if done.overrun > 0 {
                text.push_str(&format!(
                    " ({} past what was available)",
                    bare(unit, done.overrun)
                ));
            }
            if done.replayed {
                text.push_str(" (already charged with this key: nothing changed)");
            }
            text
        },
    )
}

/// `released`: how many expired reservations were released.
pub async fn sweep(budgets: &TokenBudget, out: &mut Out) -> Result<(), Failure> {
    let released = budgets.sweep_expired().await?;
    out.emit(json!({ "released": released }), || {
        format!("released {released} expired reservations")
    })
}
