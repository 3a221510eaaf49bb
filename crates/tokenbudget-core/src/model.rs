//! The stored state: budgets, reservations, and the status view of a budget.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::time::Timestamp;

/// The largest token amount any field may hold: SQL stores amounts as signed 64-bit integers.
pub const MAX_TOKENS: u64 = i64::MAX as u64;

/// How many levels a budget chain may have (a workflow budget is level 1, its phases level 2).
pub const MAX_DEPTH: usize = 16;

/// Checks that `value` is within `min..=MAX_TOKENS`.
pub fn check_amount(field: &'static str, value: u64, min: u64) -> Result<u64> {
    if (min..=MAX_TOKENS).contains(&value) {
        Ok(value)
    } else {
        Err(Error::InvalidAmount {
            field,
            value: i128::from(value),
            min,
            max: MAX_TOKENS,
        })
    }
}

/// A budget as stored: its limit and running totals.
///
/// A budget with no parent is a workflow budget; one whose parent is a workflow is a phase
/// budget. Deeper chains work the same way, up to [`MAX_DEPTH`] levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// The budget's id.
    pub id: BudgetId,
    /// The parent budget, whose totals include this budget's.
    pub parent: Option<BudgetId>,
    /// Tokens allowed in total.
    pub limit: u64,
    /// Tokens committed (actually spent), including overruns.
    pub used: u64,
    /// Tokens held by reservations not yet committed or released, including those of
    /// descendant budgets.
    pub reserved: u64,
    /// Reservations currently holding tokens on this budget, including descendants'.
    pub held: u64,
    /// When the budget was created.
    pub created_at: Timestamp,
}

impl Budget {
    /// `limit - used - reserved`, zero when overdrawn by an overrun.
    pub fn available(&self) -> u64 {
        self.limit
            .saturating_sub(self.used.saturating_add(self.reserved))
    }

    /// True once committed usage reached the limit.
    pub fn is_exhausted(&self) -> bool {
        self.used >= self.limit
    }

    /// The status view of this budget.
    pub fn status(&self) -> Status {
        Status {
            id: self.id.clone(),
            parent: self.parent.clone(),
            limit: self.limit,
            used: self.used,
            reserved: self.reserved,
            available: self.available(),
            exhausted: self.is_exhausted(),
            held: self.held,
        }
    }
}

/// What a caller asks for when creating a budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBudget {
    /// The new budget's id (unique in the store).
    pub id: BudgetId,
    /// The parent budget, which must already exist.
    pub parent: Option<BudgetId>,
    /// Tokens allowed in total, 1 to `i64::MAX`.
    pub limit: u64,
}

impl NewBudget {
    /// A workflow budget (no parent).
    pub fn workflow(id: BudgetId, limit: u64) -> Self {
        Self {
            id,
            parent: None,
            limit,
        }
    }

    /// A budget under `parent`.
    pub fn child(id: BudgetId, parent: BudgetId, limit: u64) -> Self {
        Self {
            id,
            parent: Some(parent),
            limit,
        }
    }
}

/// A budget's status: what callers read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The budget's id.
    pub id: BudgetId,
    /// Its parent, if any.
    pub parent: Option<BudgetId>,
    /// Tokens allowed in total.
    pub limit: u64,
    /// Tokens committed.
    pub used: u64,
    /// Tokens held by open reservations (descendants' included).
    pub reserved: u64,
    /// `limit - used - reserved`, never negative.
    pub available: u64,
    /// True once `used >= limit`.
    pub exhausted: bool,
    /// Open reservations holding tokens on this budget (descendants' included).
    pub held: u64,
}

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Holding tokens until committed, rolled back or expired.
    Held,
    /// Usage recorded.
    Committed,
    /// Rolled back by the caller; its tokens were released.
    Released,
    /// Its timeout passed before a commit; its tokens were released.
    Expired,
}

impl ReservationState {
    /// The lowercase name used in storage and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    /// Parses [`ReservationState::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "held" => Self::Held,
            "committed" => Self::Committed,
            "released" => Self::Released,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

impl fmt::Display for ReservationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Its id.
    pub id: ReservationId,
    /// The budget it was made on; it also holds on every ancestor of that budget.
    pub budget_id: BudgetId,
    /// Tokens held.
    pub tokens: u64,
    /// Where it is in its life.
    pub state: ReservationState,
    /// When it was granted.
    pub created_at: Timestamp,
    /// When it expires if still held.
    pub expires_at: Timestamp,
    /// The idempotency key it was reserved with.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Tokens committed, once committed.
    pub actual: Option<u64>,
    /// When it was committed, rolled back or expired.
    pub settled_at: Option<Timestamp>,
}

impl Reservation {
    /// True when the commit came after the reservation had expired.
    pub fn is_late(&self) -> bool {
        self.state == ReservationState::Committed
            && self.settled_at.is_some_and(|t| t >= self.expires_at)
    }
}

/// The longest note a charge may carry, in bytes.
pub const MAX_NOTE_LEN: usize = 1024;

/// Usage recorded with no reservation: learned after the fact (an imported log, a journal
/// replayed after an outage). Identified by its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The key that makes the charge happen once. Charges have their own key space, apart
    /// from reservations' idempotency keys.
    pub key: IdempotencyKey,
    /// The budget charged; the tokens count on every ancestor too.
    pub budget_id: BudgetId,
    /// Tokens used.
    pub tokens: u64,
    /// What the usage was, for people reading the log.
    pub note: Option<String>,
    /// When it was recorded.
    pub at: Timestamp,
}

impl Status {
    /// The live view of `budget`: its stored totals less the holds in `due_under_it`.
    ///
    /// `due_under_it` must be held reservations past their expiry made on `budget` or on a
    /// descendant of it: each still counts in the stored totals until a write releases it, but
    /// it no longer holds anything, so the view leaves it out.
    pub fn live(budget: &Budget, due_under_it: &[Reservation]) -> Self {
        let mut live = budget.clone();
        for hold in due_under_it {
            live.reserved = live.reserved.saturating_sub(hold.tokens);
            live.held = live.held.saturating_sub(1);
        }
        live.status()
    }
}

/// Every budget's live view (see [`Status::live`]), ordered by id. `due` holds the held
/// reservations past their expiry anywhere in `budgets`; each is left out of its budget and of
/// every ancestor.
pub fn live_statuses(
    budgets: impl IntoIterator<Item = Budget>,
    due: &[Reservation],
) -> Vec<Status> {
    let mut budgets: std::collections::BTreeMap<BudgetId, Budget> =
        budgets.into_iter().map(|b| (b.id.clone(), b)).collect();
    for hold in due {
        let mut next = Some(hold.budget_id.clone());
        let mut depth = 0;
        while let Some(id) = next.take() {
            let Some(budget) = budgets.get_mut(&id) else {
                break;
            };
            budget.reserved = budget.reserved.saturating_sub(hold.tokens);
            budget.held = budget.held.saturating_sub(1);
            depth += 1;
            if depth < MAX_DEPTH {
                next = budget.parent.clone();
            }
        }
    }
    budgets.values().map(Budget::status).collect()
}

/// Checks a note's length.
pub fn check_note(note: Option<&str>) -> Result<()> {
    match note {
        Some(note) if note.len() > MAX_NOTE_LEN => Err(Error::InvalidNote {
            len: note.len(),
            max: MAX_NOTE_LEN,
        }),
        _ => Ok(()),
    }
}
