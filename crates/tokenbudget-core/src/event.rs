//! The append-only event log and its replay.
//!
//! A reservation on a phase appends one event per budget in its chain (the phase, then each
//! ancestor), all with the same reservation id, so each budget's own events rebuild its
//! status exactly, its share of its descendants' reservations included ([`replay`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::model::{Budget, Unit};
use crate::outcome::RefusalReason;
use crate::period::Period;
use crate::time::Timestamp;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the store's log: strictly increasing in the order the store commits them
    /// for any one budget.
    pub seq: u64,
    /// The budget whose state this event changes.
    pub budget_id: BudgetId,
    /// When it happened (the tracker's clock).
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// An event before the store gave it a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The budget whose state this event changes.
    pub budget_id: BudgetId,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

impl NewEvent {
    /// The stored event with sequence number `seq`.
    pub fn with_seq(self, seq: u64) -> Event {
        Event {
            seq,
            budget_id: self.budget_id,
            at: self.at,
            kind: self.kind,
        }
    }
}

/// Why held tokens were released without a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The caller rolled the reservation back.
    Rollback,
    /// The reservation's timeout passed.
    Expired,
}

/// What happened, serialized with a `type` tag of `BUDGET_CREATED`, `TOKENS_RESERVED`, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum EventKind {
    /// The budget was created.
    BudgetCreated {
        /// Its parent.
        parent: Option<BudgetId>,
        /// Its limit.
        limit: u64,
        /// Its unit (absent in the log for `tokens`).
        #[serde(default, skip_serializing_if = "is_tokens")]
        unit: Unit,
        /// Its period, anchored (absent for a lifetime budget).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        period: Option<Period>,
    },
    /// A periodic budget's window ended: `used` starts again at 0 in the window holding the
    /// operation that noticed (windows that passed with no traffic produce no event of their
    /// own). Holds stay as they were.
    BudgetReset {
        /// The start of the window that closed.
        window_start: Timestamp,
        /// Its end.
        window_end: Timestamp,
        /// What was used in it.
        used: u64,
        /// The start of the window now counting.
        next_start: Timestamp,
    },
    /// The limit changed (raised or lowered; lowered below `used` refuses new reservations).
    BudgetUpdated {
        /// The limit before.
        limit_before: u64,
        /// The limit now.
        limit: u64,
    },
    /// The budget was closed: no new reservations on it or below it.
    BudgetClosed {},
    /// The budget was reopened.
    BudgetReopened {},
    /// A reservation started holding `tokens` on this budget.
    TokensReserved {
        /// The reservation.
        reservation_id: ReservationId,
        /// The budget the reservation was made on (this one or a descendant).
        origin: BudgetId,
        /// Tokens held.
        tokens: u64,
        /// When the hold expires.
        expires_at: Timestamp,
    },
    /// A reservation's usage was recorded.
    TokensCommitted {
        /// The reservation.
        reservation_id: ReservationId,
        /// The budget the reservation was made on.
        origin: BudgetId,
        /// Tokens used (added to `used`).
        tokens: u64,
        /// Held tokens this commit released (the reservation's size; zero for a late commit,
        /// whose hold had already been released by expiry).
        released: u64,
        /// Tokens used beyond the reservation (`tokens - reserved`, or zero).
        overrun: u64,
        /// True when the commit arrived after the reservation expired.
        late: bool,
    },
    /// Held tokens were released without being used.
    TokensReleased {
        /// The reservation.
        reservation_id: ReservationId,
        /// The budget the reservation was made on.
        origin: BudgetId,
        /// Tokens released.
        tokens: u64,
        /// Rollback or expiry.
        reason: ReleaseReason,
    },
    /// A held reservation's expiry moved later.
    ReservationExtended {
        /// The reservation.
        reservation_id: ReservationId,
        /// The budget the reservation was made on.
        origin: BudgetId,
        /// Its new expiry.
        expires_at: Timestamp,
    },
    /// Usage with no reservation was recorded (added to `used`), even past the limit.
    TokensCharged {
        /// The charge's idempotency key.
        key: IdempotencyKey,
        /// The budget the charge was made on (this one or a descendant).
        origin: BudgetId,
        /// Tokens used.
        tokens: u64,
        /// Tokens beyond what this budget had available when charged (zero when it fit).
        overrun: u64,
    },
    /// Committed usage reached the limit. Appended once per budget.
    BudgetExhausted {
        /// Tokens used when it happened.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// A reserve was refused by this budget (the one of the chain nearest the target that
    /// lacked room or is closed). Changes no state: replay skips it. A refusal is an answer,
    /// so it is kept for people reading the log (the dashboard's recent refusals).
    ReserveRefused {
        /// The reservation id the refused command carried (nothing is stored under it).
        reservation_id: ReservationId,
        /// The budget the reserve was made on (this one or a descendant).
        origin: BudgetId,
        /// The amount asked for, in this budget's unit.
        requested: u64,
        /// What this budget had available.
        available: u64,
        /// No room, or closed.
        reason: RefusalReason,
        /// The model the amount was priced for, if the caller named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// A reservation was granted for less than its caller first asked (the gateway lowered a
    /// request's `max_tokens` to fit). Appended once, on the budget the reservation was made
    /// on, right after its `TOKENS_RESERVED`. Changes no state: replay skips it.
    ReserveClamped {
        /// The reservation.
        reservation_id: ReservationId,
        /// What the caller first asked to hold, in this budget's unit.
        asked: u64,
        /// What was held.
        tokens: u64,
        /// The model the amount was priced for, if the caller named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
}

impl EventKind {
    /// The `type` tag: `BUDGET_CREATED`, `TOKENS_RESERVED`, …
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::BudgetCreated { .. } => "BUDGET_CREATED",
            Self::TokensReserved { .. } => "TOKENS_RESERVED",
            Self::TokensCommitted { .. } => "TOKENS_COMMITTED",
            Self::TokensReleased { .. } => "TOKENS_RELEASED",
            Self::ReservationExtended { .. } => "RESERVATION_EXTENDED",
            Self::TokensCharged { .. } => "TOKENS_CHARGED",
            Self::BudgetExhausted { .. } => "BUDGET_EXHAUSTED",
            Self::BudgetReset { .. } => "BUDGET_RESET",
            Self::BudgetUpdated { .. } => "BUDGET_UPDATED",
            Self::BudgetClosed {} => "BUDGET_CLOSED",
            Self::BudgetReopened {} => "BUDGET_REOPENED",
            Self::ReserveRefused { .. } => "RESERVE_REFUSED",
            Self::ReserveClamped { .. } => "RESERVE_CLAMPED",
        }
    }

    /// The reservation this event is about, if any.
    pub const fn reservation_id(&self) -> Option<ReservationId> {
        match self {
            Self::TokensReserved { reservation_id, .. }
            | Self::TokensCommitted { reservation_id, .. }
            | Self::TokensReleased { reservation_id, .. }
            | Self::ReservationExtended { reservation_id, .. }
            | Self::ReserveClamped { reservation_id, .. } => Some(*reservation_id),
            Self::BudgetCreated { .. }
            | Self::TokensCharged { .. }
            | Self::BudgetExhausted { .. }
            | Self::BudgetReset { .. }
            | Self::BudgetUpdated { .. }
            | Self::BudgetClosed {}
            | Self::BudgetReopened {}
            // Nothing is stored under a refused reservation's id.
            | Self::ReserveRefused { .. } => None,
        }
    }
}

/// Rebuilds every budget's stored state from its events, applied in `seq` order.
///
/// Returns an error when the log is inconsistent (an event for a budget never created,
/// a release of more than was held): a log written by a correct store never is.
pub fn replay<'a>(
    events: impl IntoIterator<Item = &'a Event>,
) -> Result<BTreeMap<BudgetId, Budget>> {
    let mut sorted: Vec<&Event> = events.into_iter().collect();
    sorted.sort_by_key(|e| e.seq);
    let mut budgets = BTreeMap::new();
    for event in sorted {
        apply(&mut budgets, event)?;
    }
    Ok(budgets)
}

/// Applies one event to replayed state; see [`replay`].
pub fn apply(budgets: &mut BTreeMap<BudgetId, Budget>, event: &Event) -> Result<()> {
    let corrupt = |what: &str| Error::Storage {
        backend: "replay",
        message: format!("event {} for budget {}: {what}", event.seq, event.budget_id),
        retryable: false,
        source: None,
    };
    if let EventKind::BudgetCreated {
        parent,
        limit,
        unit,
        period,
    } = &event.kind
    {
        if budgets.contains_key(&event.budget_id) {
            return Err(corrupt("budget created twice"));
        }
        budgets.insert(
            event.budget_id.clone(),
            Budget {
                id: event.budget_id.clone(),
                parent: parent.clone(),
                limit: *limit,
                used: 0,
                reserved: 0,
                held: 0,
                created_at: event.at,
                unit: *unit,
                period: *period,
                window_start: period.map(|p| p.window_at(event.at).start),
                closed: false,
            },
        );
        return Ok(());
    }
    let budget = budgets
        .get_mut(&event.budget_id)
        .ok_or_else(|| corrupt("budget never created"))?;
    match &event.kind {
        EventKind::BudgetCreated { .. } => unreachable!("handled above"),
        EventKind::TokensReserved { tokens, .. } => {
            budget.reserved = budget
                .reserved
                .checked_add(*tokens)
                .ok_or_else(|| corrupt("reserved overflows"))?;
            budget.held += 1;
        }
        EventKind::TokensCommitted {
            tokens, released, ..
        } => {
            if *released > 0 {
                budget.reserved = budget
                    .reserved
                    .checked_sub(*released)
                    .ok_or_else(|| corrupt("commit releases more than is reserved"))?;
                budget.held = budget
                    .held
                    .checked_sub(1)
                    .ok_or_else(|| corrupt("commit of a hold that does not exist"))?;
            }
            budget.used = budget
                .used
                .checked_add(*tokens)
                .ok_or_else(|| corrupt("used overflows"))?;
        }
        EventKind::TokensReleased { tokens, .. } => {
            budget.reserved = budget
                .reserved
                .checked_sub(*tokens)
                .ok_or_else(|| corrupt("release of more than is reserved"))?;
            budget.held = budget
                .held
                .checked_sub(1)
                .ok_or_else(|| corrupt("release of a hold that does not exist"))?;
        }
        EventKind::TokensCharged { tokens, .. } => {
            budget.used = budget
                .used
                .checked_add(*tokens)
                .ok_or_else(|| corrupt("used overflows"))?;
        }
        EventKind::BudgetReset { next_start, .. } => {
            budget.used = 0;
            budget.window_start = Some(*next_start);
        }
        EventKind::BudgetUpdated { limit, .. } => budget.limit = *limit,
        EventKind::BudgetClosed {} => budget.closed = true,
        EventKind::BudgetReopened {} => budget.closed = false,
        EventKind::ReservationExtended { .. }
        | EventKind::BudgetExhausted { .. }
        | EventKind::ReserveRefused { .. }
        | EventKind::ReserveClamped { .. } => {}
    }
    Ok(())
}

fn is_tokens(unit: &Unit) -> bool {
    *unit == Unit::Tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_screaming_type_names_and_flat_fields() {
        let event = Event {
            seq: 7,
            budget_id: BudgetId::new("wf").unwrap(),
            at: Timestamp::from_micros(0),
            kind: EventKind::TokensReleased {
                reservation_id: "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap(),
                origin: BudgetId::new("wf:plan").unwrap(),
                tokens: 40,
                reason: ReleaseReason::Expired,
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "seq": 7,
                "budget_id": "wf",
                "at": "1970-01-01T00:00:00.000000Z",
                "type": "TOKENS_RELEASED",
                "reservation_id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
                "origin": "wf:plan",
                "tokens": 40,
                "reason": "expired",
            })
        );
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.kind.type_name(), "TOKENS_RELEASED");
    }
}
