//! `tokenbudget budget …`: create, status, list, events.

use serde_json::{json, Value};
use tokenbudget::{Event, EventKind, NewBudget, ReleaseReason, Status, TokenBudget};

use crate::cli::BudgetCommand;
use crate::failure::Failure;
use crate::output::Out;

pub async fn run(cmd: BudgetCommand, budgets: &TokenBudget, out: &mut Out) -> Result<(), Failure> {
    match cmd {
        BudgetCommand::Create { id, limit, parent } => {
            let new = NewBudget { id, parent, limit };
            let status = budgets.create_budget(new).await?.status();
            out.emit(status_json(&status), || {
                let parent = status
                    .parent
                    .as_ref()
                    .map(|p| format!(" under {p}"))
                    .unwrap_or_default();
                format!(
                    "created budget {}{parent} with limit {}",
                    status.id, status.limit
                )
            })
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
            let events = budgets.events(&id, after).await?;
            for event in &events {
                out.emit(event_json(event), || event_text(event))?;
            }
            Ok(())
        }
    }
}

/// `budget status --json`: `id`, `parent`, `limit`, `used`, `reserved`, `available`,
/// `exhausted`, `held`.
pub fn status_json(status: &Status) -> Value {
    json!({
        "id": status.id,
        "parent": status.parent,
        "limit": status.limit,
        "used": status.used,
        "reserved": status.reserved,
        "available": status.available,
        "exhausted": status.exhausted,
        "held": status.held,
    })
}

fn status_text(s: &Status) -> String {
    let parent = s
        .parent
        .as_ref()
        .map_or("-".to_owned(), ToString::to_string);
    format!(
        "budget     {}\nparent     {parent}\nlimit      {}\nused       {}\nreserved   {} ({} open reservations)\navailable  {}\nexhausted  {}",
        s.id,
        s.limit,
        s.used,
        s.reserved,
        s.held,
        s.available,
        if s.exhausted { "yes" } else { "no" },
    )
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
                s.limit.to_string(),
                s.used.to_string(),
                s.reserved.to_string(),
                s.available.to_string(),
                if s.exhausted { "yes" } else { "no" }.to_owned(),
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
        _ => return None,
    })
}

fn event_text(event: &Event) -> String {
    let detail = match &event.kind {
        EventKind::BudgetCreated { parent, limit } => match parent {
            Some(p) => format!("limit {limit}, parent {p}"),
            None => format!("limit {limit}"),
        },
        EventKind::TokensReserved {
            reservation_id,
            origin,
            tokens,
            expires_at,
        } => format!("{tokens} held by {reservation_id} on {origin}, expires {expires_at}"),
        EventKind::TokensCommitted {
            reservation_id,
            tokens,
            overrun,
            late,
            ..
        } => {
            let mut s = format!("{tokens} used by {reservation_id}");
            if *overrun > 0 {
                s.push_str(&format!(", {overrun} over the reservation"));
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
            format!("{tokens} released by {reservation_id} ({why})")
        }
        EventKind::BudgetExhausted { used, limit } => format!("{used} used of {limit}"),
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
            let mut text = format!("{tokens} tokens charged on {origin}, key {key}");
            if *overrun > 0 {
                text.push_str(&format!(" ({overrun} past what was available)"));
            }
            text
        }
        other => format!("{other:?}"),
    };
    format!(
        "{:>6}  {}  {:<16}  {detail}",
        event.seq,
        event.at,
        event.kind.type_name()
    )
}
