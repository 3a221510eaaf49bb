//! What the page shows, from the budgets' live statuses: pure functions, tested without I/O.

use std::collections::BTreeMap;

use serde::Serialize;
use tokenbudget_core::{
    format_usd, BudgetId, Event, EventKind, RefusalReason, ReservationId, Status, Timestamp, Unit,
};

/// One budget as a row of the tree: its status, how deep it sits, and its bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The live status (what `budget status --json` prints).
    #[serde(flatten)]
    pub status: Status,
    /// 0 for a root, 1 for its children, …
    pub depth: usize,
    /// The bar: committed and held as parts of the limit, in per mille (0..=1000 each, their
    /// sum at most 1000; a budget used past its limit shows a full bar).
    pub bar: Bar,
    /// When the current window ends and the budget starts again, for a periodic budget.
    pub resets_at: Option<Timestamp>,
}

/// A budget's bar, in per mille of its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bar {
    /// Committed usage.
    pub used: u32,
    /// Held by open reservations.
    pub held: u32,
}

impl Bar {
    /// The bar of `used` and `reserved` against `limit`; rounding never makes a budget with
    /// room look full, nor a full one look as if it had room.
    pub fn of(limit: u64, used: u64, reserved: u64) -> Self {
        if limit == 0 {
            return Self {
                used: 1000,
                held: 0,
            };
        }
        let per_mille = |x: u64| ((u128::from(x.min(limit)) * 1000) / u128::from(limit)) as u32;
        let used_pm = per_mille(used);
        let total = per_mille(used.saturating_add(reserved));
        Self {
            used: used_pm,
            held: total - used_pm,
        }
    }
}

/// The statuses as a tree: each root followed by its descendants, depth first, siblings by
/// id. A budget whose parent is missing from `statuses` (a page of a larger list) is shown as
/// a root.
pub fn tree(statuses: Vec<Status>) -> Vec<Row> {
    let ids: std::collections::HashSet<_> = statuses.iter().map(|s| s.id.clone()).collect();
    let mut children: BTreeMap<Option<String>, Vec<Status>> = BTreeMap::new();
    for s in statuses {
        let parent = s
            .parent
            .as_ref()
            .filter(|p| ids.contains(*p))
            .map(|p| p.as_str().to_owned());
        children.entry(parent).or_default().push(s);
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let mut out = Vec::new();
    let mut stack: Vec<(Status, usize)> = children
        .remove(&None)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .map(|s| (s, 0))
        .collect();
    while let Some((status, depth)) = stack.pop() {
        if let Some(kids) = children.remove(&Some(status.id.as_str().to_owned())) {
            stack.extend(kids.into_iter().rev().map(|s| (s, depth + 1)));
        }
        out.push(Row {
            bar: Bar::of(status.limit, status.used, status.reserved),
            resets_at: status.window.map(|w| w.end),
            status,
            depth,
        });
    }
    out
}

/// A refusal or a clamp from the log, as `/api/refusals` answers and the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// The event's sequence number (pages go `before` it).
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// `refused` or `clamped`.
    pub kind: &'static str,
    /// The budget that refused (for a clamp: the one the reservation was made on).
    pub budget_id: BudgetId,
    /// The budget the reserve was made on.
    pub origin: BudgetId,
    /// The clamped reservation (a refused one has none).
    pub reservation_id: Option<ReservationId>,
    /// What was asked for, in `unit`.
    pub requested: u64,
    /// What the refusing budget had available (refusals).
    pub available: Option<u64>,
    /// What was held instead (clamps).
    pub granted: Option<u64>,
    /// `no_room` or `closed` (refusals).
    pub reason: Option<RefusalReason>,
    /// The model the amount was priced for, if any.
    pub model: Option<String>,
    /// The unit of the amounts (the budget's).
    pub unit: Unit,
    /// One line for people: `refused 200 on wf:a: 100 available`.
    pub text: String,
}

/// The notice for a `RESERVE_REFUSED` or `RESERVE_CLAMPED` event on a budget counted in
/// `unit`; `None` for any other event.
pub fn notice(event: &Event, unit: Unit) -> Option<Notice> {
    let a = |v: u64| amount_with_unit(unit, v);
    match &event.kind {
        EventKind::ReserveRefused {
            origin,
            requested,
            available,
            reason,
            model,
            ..
        } => Some(Notice {
            seq: event.seq,
            at: event.at,
            kind: "refused",
            budget_id: event.budget_id.clone(),
            origin: origin.clone(),
            reservation_id: None,
            requested: *requested,
            available: Some(*available),
            granted: None,
            reason: Some(*reason),
            model: model.clone(),
            unit,
            text: match reason {
                RefusalReason::Closed => {
                    format!(
                        "refused {} on {origin}: {} is closed",
                        a(*requested),
                        event.budget_id
                    )
                }
                _ => format!(
                    "refused {} on {origin}: {} has {} available",
                    a(*requested),
                    event.budget_id,
                    a(*available)
                ),
            },
        }),
        EventKind::ReserveClamped {
            reservation_id,
            asked,
            tokens,
            model,
        } => Some(Notice {
            seq: event.seq,
            at: event.at,
            kind: "clamped",
            budget_id: event.budget_id.clone(),
            origin: event.budget_id.clone(),
            reservation_id: Some(*reservation_id),
            requested: *asked,
            available: None,
            granted: Some(*tokens),
            reason: None,
            model: model.clone(),
            unit,
            text: format!(
                "clamped on {}: asked {}, held {}",
                event.budget_id,
                a(*asked),
                a(*tokens)
            ),
        }),
        _ => None,
    }
}

/// An amount with its unit spelled out: `1,234 tokens` or `$1.25`.
pub fn amount_with_unit(unit: Unit, value: u64) -> String {
    match unit {
        Unit::Usd => amount(unit, value),
        Unit::Tokens => format!("{} tokens", amount(unit, value)),
    }
}

/// An amount in `unit` as the page prints it: `1,234 tokens` or `$1.25`.
pub fn amount(unit: Unit, value: u64) -> String {
    match unit {
        Unit::Usd => format!("${}", format_usd(value)),
        Unit::Tokens => {
            let digits = value.to_string();
            let mut out = String::with_capacity(digits.len() + digits.len() / 3);
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenbudget_core::BudgetId;

    fn status(id: &str, parent: Option<&str>, limit: u64, used: u64, reserved: u64) -> Status {
        Status {
            id: BudgetId::new(id).unwrap(),
            parent: parent.map(|p| BudgetId::new(p).unwrap()),
            limit,
            used,
            reserved,
            available: limit.saturating_sub(used + reserved),
            exhausted: used + reserved >= limit,
            held: u64::from(reserved > 0),
            unit: Unit::Tokens,
            period: None,
            window: None,
            closed: false,
        }
    }

    #[test]
    fn the_tree_puts_children_under_their_parent_depth_first() {
        let rows = tree(vec![
            status("b", None, 10, 0, 0),
            status("a:y", Some("a"), 10, 0, 0),
            status("a", None, 10, 0, 0),
            status("a:x:1", Some("a:x"), 10, 0, 0),
            status("a:x", Some("a"), 10, 0, 0),
            status("orphan:1", Some("orphan"), 10, 0, 0),
        ]);
        let shape: Vec<(&str, usize)> = rows
            .iter()
            .map(|r| (r.status.id.as_str(), r.depth))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", 0),
                ("a:x", 1),
                ("a:x:1", 2),
                ("a:y", 1),
                ("b", 0),
                ("orphan:1", 0)
            ]
        );
    }

    #[test]
    fn bars_round_down_and_never_overflow() {
        assert_eq!(
            Bar::of(1000, 250, 100),
            Bar {
                used: 250,
                held: 100
            }
        );
        assert_eq!(
            Bar::of(3, 1, 1),
            Bar {
                used: 333,
                held: 333
            }
        );
        // Used past the limit (a late commit, a charge): full, all used.
        assert_eq!(
            Bar::of(100, 150, 20),
            Bar {
                used: 1000,
                held: 0
            }
        );
        assert_eq!(
            Bar::of(100, 90, 50),
            Bar {
                used: 900,
                held: 100
            }
        );
        assert_eq!(
            Bar::of(u64::MAX, u64::MAX / 2, u64::MAX),
            Bar {
                used: 499,
                held: 501
            }
        );
        // Room left never rounds to a full bar.
        assert!(Bar::of(10_000, 9_999, 0).used < 1000);
    }

    #[test]
    fn refusals_and_clamps_become_notices_and_other_events_do_not() {
        let at = Timestamp::from_micros(0);
        let event = |seq, budget: &str, kind| Event {
            seq,
            budget_id: BudgetId::new(budget).unwrap(),
            at,
            kind,
        };
        let rid: ReservationId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
        let refused = event(
            7,
            "wf",
            EventKind::ReserveRefused {
                reservation_id: rid,
                origin: BudgetId::new("wf:a").unwrap(),
                requested: 1_500,
                available: 200,
                reason: RefusalReason::NoRoom,
                model: None,
            },
        );
        let n = notice(&refused, Unit::Tokens).unwrap();
        assert_eq!(
            (
                n.kind,
                n.budget_id.as_str(),
                n.origin.as_str(),
                n.requested,
                n.available
            ),
            ("refused", "wf", "wf:a", 1_500, Some(200))
        );
        assert_eq!(
            n.reservation_id, None,
            "nothing is stored under a refused id"
        );
        assert_eq!(
            n.text,
            "refused 1,500 tokens on wf:a: wf has 200 tokens available"
        );
        let closed = event(
            8,
            "solo",
            EventKind::ReserveRefused {
                reservation_id: rid,
                origin: BudgetId::new("solo").unwrap(),
                requested: 2_500_000,
                available: 0,
                reason: RefusalReason::Closed,
                model: Some("m".into()),
            },
        );
        assert_eq!(
            notice(&closed, Unit::Usd).unwrap().text,
            "refused $2.50 on solo: solo is closed"
        );
        let clamped = event(
            9,
            "wf:a",
            EventKind::ReserveClamped {
                reservation_id: rid,
                asked: 9_000,
                tokens: 4_000,
                model: None,
            },
        );
        let n = notice(&clamped, Unit::Tokens).unwrap();
        assert_eq!(
            (n.kind, n.requested, n.granted, n.reservation_id),
            ("clamped", 9_000, Some(4_000), Some(rid))
        );
        assert_eq!(
            n.text,
            "clamped on wf:a: asked 9,000 tokens, held 4,000 tokens"
        );
        let other = event(10, "wf", EventKind::BudgetClosed {});
        assert_eq!(notice(&other, Unit::Tokens), None);
    }

    #[test]
    fn amounts_print_in_their_unit() {
        assert_eq!(amount(Unit::Tokens, 0), "0");
        assert_eq!(amount(Unit::Tokens, 1_234_567), "1,234,567");
        assert_eq!(amount(Unit::Tokens, 999), "999");
        assert_eq!(amount(Unit::Usd, 1_250_000), "$1.25");
        assert_eq!(amount(Unit::Usd, 125), "$0.000125");
    }
}
