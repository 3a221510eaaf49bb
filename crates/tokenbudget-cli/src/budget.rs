//! `tokenbudget budget …`: create, status, list, events.

use serde_json::{json, Value};
use tokenbudget::{
    Budget, Event, EventKind, NewBudget, Period, ReleaseReason, Status, Timestamp, TokenBudget,
    Unit,
};

use crate::cli::{BudgetCommand, CreateArgs};
use crate::failure::Failure;
use crate::output::Out;
use crate::reserve::{bare, parse_amount, unit_of};

pub async fn run(cmd: BudgetCommand, budgets: &TokenBudget, out: &mut Out) -> Result<(), Failure> {
    match cmd {
        BudgetCommand::Create(args) => {
            let new = new_budget(args, budgets).await?;
            let status = budgets.create_budget(new).await?.status();
            out.emit(status_json(&status), || {
                let parent = status
                    .parent
                    .as_ref()
                    .map(|p| format!(" under {p}"))
                    .unwrap_or_default();
                let period = status
                    .period
                    .map(|p| format!(", starting again {}", period_text(&p)))
                    .unwrap_or_default();
                format!(
                    "created budget {}{parent} with limit {}{period}",
                    status.id,
                    bare(status.unit, status.limit)
                )
            })
        }
        BudgetCommand::Update { id, limit } => {
            let Some(before) = budgets.store().budget(&id).await? else {
                return Err(tokenbudget::CoreError::BudgetNotFound { id }.into());
            };
            let unit = before.unit;
            let limit = parse_amount(unit, "limit", &limit)?;
            let budget = budgets.update_limit(&id, limit).await?;
            changed(
                out,
                &budget,
                format!(
                    "limit {} (was {})",
                    bare(unit, budget.limit),
                    bare(unit, before.limit)
                ),
            )
        }
        BudgetCommand::Close { id } => {
            let budget = budgets.close(&id).await?;
            changed(out, &budget, "closed to new reservations".to_owned())
        }
        BudgetCommand::Reopen { id } => {
            let budget = budgets.reopen(&id).await?;
            changed(out, &budget, "open".to_owned())
        }
        BudgetCommand::Status { id } => {
            let status = budgets.status(&id).await?;
            out.emit(status_json(&status), || status_text(&status))
        }
        BudgetCommand::List => {
            let all = budgets.list().await?;
            if out.is_json() {
                for status in &all {
                    out.line(&status_json(status).to_string())?;
                }
                Ok(())
            } else if all.is_empty() {
                out.line("no budgets")
            } else {
                for line in table(&all) {
                    out.line(&line)?;
                }
                Ok(())
            }
        }
        BudgetCommand::Events { id, after } => {
            let unit = unit_of(budgets, &id).await?;
            let events = budgets.events(&id, after).await?;
            for event in &events {
                out.emit(event_json(event), || event_text(event, unit))?;
            }
            Ok(())
        }
    }
}

/// The budget `budget create` asks for: the limit in its unit (the parent's unless --unit
/// says otherwise), its period.
async fn new_budget(args: CreateArgs, budgets: &TokenBudget) -> Result<NewBudget, Failure> {
    let unit = match (args.unit, &args.parent) {
        (Some(unit), _) => Unit::from(unit),
        (None, Some(parent)) => match budgets.store().budget(parent).await? {
            Some(parent) => parent.unit,
            None => {
                return Err(tokenbudget::CoreError::ParentNotFound {
                    id: args.id,
                    parent: parent.clone(),
                }
                .into())
            }
        },
        (None, None) => Unit::Tokens,
    };
    let limit = parse_amount(unit, "limit", &args.limit)?;
    let mut new = match args.parent {
        Some(parent) => NewBudget::child(args.id, parent, limit),
        None => NewBudget::workflow(args.id, limit),
    }
    .with_unit(unit);
    if let Some(every) = &args.period {
        let anchor = args
            .anchor
            .as_deref()
            .map(Timestamp::parse)
            .transpose()
            .map_err(|e| Failure::usage(format!("--anchor: {e}")))?;
        let period = Period::parse_parts(every, args.tz.as_deref(), anchor)
            .map_err(|e| Failure::usage(e.to_string()))?;
        new = new.with_period(period);
    }
    Ok(new)
}

/// The answer to update, close and reopen: the budget's status (JSON) or what changed.
fn changed(out: &mut Out, budget: &Budget, what: String) -> Result<(), Failure> {
    let status = budget.status();
    out.emit(status_json(&status), || {
        format!("budget {}: {what}", status.id)
    })
}

/// `budget status --json`: `id`, `parent`, `unit`, `limit`, `used`, `reserved`,
/// `available`, `exhausted`, `held`, `closed` (amounts in the unit: micro-dollars for usd),
/// and for a periodic budget `period` and `window` (`start`, `end`: `used` counts what was
/// committed in it).
pub fn status_json(status: &Status) -> Value {
    let mut value = json!({
        "id": status.id,
        "parent": status.parent,
        "unit": status.unit,
        "limit": status.limit,
        "used": status.used,
        "reserved": status.reserved,
        "available": status.available,
        "exhausted": status.exhausted,
        "held": status.held,
        "closed": status.closed,
    });
    if let (Value::Object(map), Some(period), Some(window)) =
        (&mut value, status.period, status.window)
    {
        map.insert("period".into(), json!(period));
        map.insert("window".into(), json!(window));
    }
    value
}

/// `daily (Europe/Berlin)`, `every 5h`, …
fn period_text(period: &Period) -> String {
    let every = match period.every() {
        tokenbudget::Every::Fixed(len) => format!("every {}", humantime::format_duration(len)),
        other => other.to_string(),
    };
    match period.tz() {
        Some(tz) => format!("{every} ({})", tz.name()),
        None => every,
    }
}

fn status_text(s: &Status) -> String {
    let parent = s
        .parent
        .as_ref()
        .map_or("-".to_owned(), ToString::to_string);
    let amount = |n: u64| bare(s.unit, n);
    let mut text = format!(
        "budget     {}\nparent     {parent}\nlimit      {}\nused       {}\nreserved   {} ({} open reservations)\navailable  {}\nexhausted  {}",
        s.id,
        amount(s.limit),
        amount(s.used),
        amount(s.reserved),
        s.held,
        amount(s.available),
        if s.exhausted { "yes" } else { "no" },
    );
    if s.unit != Unit::Tokens {
        text.push_str(&format!("\nunit       {}", s.unit));
    }
    if let (Some(period), Some(window)) = (s.period, s.window) {
        text.push_str(&format!(
            "\nperiod     {}\nwindow     {} to {} (used counts this window)",
            period_text(&period),
            window.start,
            window.end
        ));
    }
    if s.closed {
        text.push_str("\nclosed     yes: no new reservations");
    }
    text
}

/// Budgets as aligned columns, with a header.
fn table(all: &[Status]) -> Vec<String> {
    let header = [
        "ID",
        "PARENT",
        "LIMIT",
        "USED",
        "RESERVED",
        "AVAILABLE",
        "EXHAUSTED",
    ];
    let rows: Vec<[String; 7]> = all
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                s.parent
                    .as_ref()
                    .map_or("-".to_owned(), ToString::to_string),
                bare(s.unit, s.limit),
                bare(s.unit, s.used),
                bare(s.unit, s.reserved),
                bare(s.unit, s.available),
                match (s.closed, s.exhausted) {
                    (true, _) => "closed",
                    (false, true) => "yes",
                    (false, false) => "no",
                }
                .to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let format_row = |cells: [&str; 7]| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Ids left-aligned, numbers right-aligned.
            let cell = if i < 2 {
                format!("{cell:<w$}")
            } else {
                format!("{cell:>w$}")
            };
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(&cell);
        }
        line.trim_end().to_owned()
    };
    let mut lines = vec![format_row(header)];
    lines.extend(
        rows.iter()
            .map(|r| format_row(r.each_ref().map(String::as_str))),
    );
    lines
}

/// One event: `seq`, `type`, `budget_id`, `reservation_id` (where one applies), `tokens`,
/// `at`, and the fields of its type (`origin`, `expires_at`, `overrun`, `reason`, …).
pub fn event_json(event: &Event) -> Value {
    let mut value =
        serde_json::to_value(event).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    if let (Value::Object(map), Some(tokens)) = (&mut value, event_tokens(&event.kind)) {
        map.entry("tokens").or_insert(json!(tokens));
    }
    value
}

/// The amount an event is about: the tokens moved, the limit of a new budget, the usage
/// that exhausted one.
fn event_tokens(kind: &EventKind) -> Option<u64> {
    Some(match kind {
        EventKind::BudgetCreated { limit, .. } => *limit,
        EventKind::TokensReserved { tokens, .. }
        | EventKind::TokensCommitted { tokens, .. }
        | EventKind::TokensReleased { tokens, .. }
        | EventKind::TokensCharged { tokens, .. } => *tokens,
        EventKind::BudgetExhausted { used, .. } => *used,
        EventKind::ReserveRefused { requested, .. } => *requested,
        EventKind::ReserveClamped { tokens, .. } => *tokens,
        _ => return None,
    })
}

fn event_text(event: &Event, unit: Unit) -> String {
    let n = |amount: &u64| bare(unit, *amount);
    let detail = match &event.kind {
        EventKind::BudgetCreated {
            parent,
            limit,
            period,
            ..
        } => {
            let mut text = format!("limit {}", n(limit));
            if let Some(p) = parent {
                text.push_str(&format!(", parent {p}"));
            }
            if let Some(period) = period {
                text.push_str(&format!(", {}", period_text(period)));
            }
            text
        }
        EventKind::BudgetReset {
            window_start,
            window_end,
            used,
            next_start,
        } => format!(
            "{} used in {window_start} to {window_end}; counting again from {next_start}",
            n(used)
        ),
        EventKind::BudgetUpdated {
            limit_before,
            limit,
        } => format!("limit {} (was {})", n(limit), n(limit_before)),
        EventKind::BudgetClosed {} => "closed to new reservations".to_owned(),
        EventKind::BudgetReopened {} => "reopened".to_owned(),
        EventKind::TokensReserved {
            reservation_id,
            origin,
            tokens,
            expires_at,
        } => format!(
            "{} held by {reservation_id} on {origin}, expires {expires_at}",
            n(tokens)
        ),
        EventKind::TokensCommitted {
            reservation_id,
            tokens,
            overrun,
            late,
            ..
        } => {
            let mut s = format!("{} used by {reservation_id}", n(tokens));
            if *overrun > 0 {
                s.push_str(&format!(", {} over the reservation", n(overrun)));
            }
            if *late {
                s.push_str(", after it expired");
            }
            s
        }
        EventKind::TokensReleased {
            reservation_id,
            tokens,
            reason,
            ..
        } => {
            let why = match reason {
                ReleaseReason::Rollback => "rolled back",
                ReleaseReason::Expired => "expired",
            };
            format!("{} released by {reservation_id} ({why})", n(tokens))
        }
        EventKind::BudgetExhausted { used, limit } => format!("{} used of {}", n(used), n(limit)),
        EventKind::ReservationExtended {
            reservation_id,
            expires_at,
            ..
        } => format!("{reservation_id} held until {expires_at}"),
        EventKind::TokensCharged {
            key,
            origin,
            tokens,
            overrun,
        } => {
            let mut text = format!("{} charged on {origin}, key {key}", unit.format(*tokens));
            if *overrun > 0 {
                text.push_str(&format!(" ({} past what was available)", n(overrun)));
            }
            text
        }
        EventKind::ReserveRefused {
            origin,
            requested,
            available,
            reason,
            ..
        } => match reason {
            tokenbudget::RefusalReason::Closed => {
                format!("refused {} on {origin}: closed", n(requested))
            }
            _ => format!(
                "refused {} on {origin}: {} available",
                n(requested),
                n(available)
            ),
        },
        EventKind::ReserveClamped {
            reservation_id,
            asked,
            tokens,
            ..
        } => format!(
            "{reservation_id} asked for {}, held {} (clamped to fit)",
            n(asked),
            n(tokens)
        ),
        other => format!("{other:?}"),
    };
    format!(
        "{:>6}  {}  {:<16}  {detail}",
        event.seq,
        event.at,
        event.kind.type_name()
    )
}
