//! The stored state: budgets, reservations, and the status view of a budget.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::period::{Period, Window};
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
    /// What its amounts count: tokens, or micro-dollars. A chain has one unit.
    pub unit: Unit,
    /// For a periodic budget, how often `used` starts again at 0.
    pub period: Option<Period>,
    /// For a periodic budget, the start of the window `used` counts in, as stored (the
    /// current window may have started since: see [`Budget::status_at`]).
    pub window_start: Option<Timestamp>,
    /// A closed budget grants no new reservation; held ones may still commit or roll back.
    pub closed: bool,
}

impl Budget {
    /// The stored window `used` counts in, for a periodic budget.
    pub fn window(&self) -> Option<Window> {
        let period = self.period?;
        Some(period.window_at(self.window_start.unwrap_or(self.created_at)))
    }

    /// The window holding `now`, for a periodic budget.
    pub fn window_at(&self, now: Timestamp) -> Option<Window> {
        self.period.map(|period| period.window_at(now))
    }

    /// True when a periodic budget's stored window ended at or before `now`: the next write
    /// rolls it over, and the live view already counts `used` as 0.
    pub fn window_ended(&self, now: Timestamp) -> bool {
        self.window().is_some_and(|w| w.end <= now)
    }

    /// `limit - used - reserved`, zero when overdrawn by an overrun.
    pub fn available(&self) -> u64 {
        self.limit
            .saturating_sub(self.used.saturating_add(self.reserved))
    }

    /// True once committed usage reached the limit.
    pub fn is_exhausted(&self) -> bool {
        self.used >= self.limit
    }

    /// The status view of this budget as stored (its stored window).
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
            unit: self.unit,
            period: self.period,
            window: self.window(),
            closed: self.closed,
        }
    }

    /// The status view at `now`: a periodic budget whose stored window has ended shows the
    /// current window with nothing used yet, as the next write will store it.
    pub fn status_at(&self, now: Timestamp) -> Status {
        if self.window_ended(now) {
            let mut rolled = self.clone();
            rolled.used = 0;
            rolled.window_start = self.window_at(now).map(|w| w.start);
            rolled.status()
        } else {
            self.status()
        }
    }
}

/// What a budget's amounts count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Tokens (the default).
    #[default]
    Tokens,
    /// US dollars, as integer micro-dollars (1 = $0.000001): no floating point in the rules.
    Usd,
}

impl Unit {
    /// Micro-dollars per dollar.
    pub const MICROS_PER_USD: u64 = 1_000_000;

    /// The lowercase name used in storage and JSON: `tokens` or `usd`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::Usd => "usd",
        }
    }

    /// Parses [`Unit::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tokens" => Some(Self::Tokens),
            "usd" => Some(Self::Usd),
            _ => None,
        }
    }

    /// An amount as people read it: `1234 tokens`, or `$1.50` / `$0.000125` for micro-dollars
    /// (at least two decimals, no trailing zeros past them).
    pub fn format(self, amount: u64) -> String {
        match self {
            Self::Tokens => format!("{amount} tokens"),
            Self::Usd => format!("${}", format_usd(amount)),
        }
    }

    /// Parses an amount typed in this unit: whole tokens, or dollars with up to six decimals
    /// (`20`, `0.5`, `$1.234567`) into micro-dollars.
    pub fn parse_amount(self, field: &'static str, text: &str) -> Result<u64> {
        let bad = |why: &str| Error::InvalidAmountText {
            field,
            text: text.to_owned(),
            reason: why.to_owned(),
        };
        let t = text.trim();
        match self {
            Self::Tokens => t.parse::<u64>().map_err(|e| match e.kind() {
                std::num::IntErrorKind::PosOverflow => bad("number too large"),
                _ => bad("expected a whole number of tokens"),
            }),
            Self::Usd => {
                let t = t.strip_prefix('$').unwrap_or(t);
                let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if !digits(whole) || !(frac.is_empty() || digits(frac)) {
                    return Err(bad("expected dollars such as 20 or 0.125"));
                }
                if frac.len() > 6 {
                    return Err(bad("dollars take at most 6 decimals (micro-dollars)"));
                }
                let whole: u64 = whole.parse().map_err(|_| bad("too large"))?;
                let frac: u64 = format!("{frac:0<6}")
                    .parse()
                    .map_err(|_| bad("too large"))?;
                whole
                    .checked_mul(Self::MICROS_PER_USD)
                    .and_then(|w| w.checked_add(frac))
                    .filter(|&v| v <= MAX_TOKENS)
                    .ok_or_else(|| bad("too large"))
            }
        }
    }
}

/// Micro-dollars as dollars, `1.50` or `0.000125`, without the sign.
pub fn format_usd(micros: u64) -> String {
    let (whole, frac) = (micros / Unit::MICROS_PER_USD, micros % Unit::MICROS_PER_USD);
    let mut frac = format!("{frac:06}");
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{whole}.{frac}")
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller asks for when creating a budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBudget {
    /// The new budget's id (unique in the store).
    pub id: BudgetId,
    /// The parent budget, which must already exist.
    pub parent: Option<BudgetId>,
    /// The limit, 1 to `i64::MAX`, in the budget's unit (per window for a periodic budget).
    pub limit: u64,
    /// What amounts count. A child must have its parent's unit.
    pub unit: Unit,
    /// How often `used` starts again at 0; `None` for a lifetime total.
    pub period: Option<Period>,
}

impl NewBudget {
    /// A workflow budget (no parent) counting tokens, with no period.
    pub fn workflow(id: BudgetId, limit: u64) -> Self {
        Self {
            id,
            parent: None,
            limit,
            unit: Unit::Tokens,
            period: None,
        }
    }

    /// A budget under `parent` counting tokens, with no period.
    pub fn child(id: BudgetId, parent: BudgetId, limit: u64) -> Self {
        Self {
            parent: Some(parent),
            ..Self::workflow(id, limit)
        }
    }

    /// The same budget counting in `unit` (the limit is in that unit: micro-dollars for usd).
    pub fn with_unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }

    /// The same budget, starting again at 0 every `period`.
    pub fn with_period(mut self, period: Period) -> Self {
        self.period = Some(period);
        self
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
    /// What the amounts count (`tokens`, or `usd` in micro-dollars).
    pub unit: Unit,
    /// The period, for a periodic budget.
    pub period: Option<Period>,
    /// The current window (`used` counts what was committed in it), for a periodic budget.
    pub window: Option<Window>,
    /// True when the budget grants no new reservations.
    pub closed: bool,
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
    /// The model the reservation was priced for, when the caller named one (a `usd` budget
    /// prices the commit's usage with it).
    pub model: Option<String>,
}

impl Reservation {
    /// True when the commit came after the reservation had expired.
    pub fn is_late(&self) -> bool {
        self.state == ReservationState::Committed
            && self.settled_at.is_some_and(|t| t >= self.expires_at)
    }

    /// The state as seen at `now`: a hold past its expiry is `Expired`, even before a write
    /// releases it (its `settled_at` stays `None` until then).
    pub fn state_at(&self, now: Timestamp) -> ReservationState {
        if self.state == ReservationState::Held && self.expires_at <= now {
            ReservationState::Expired
        } else {
            self.state
        }
    }
}

/// The longest model name a reservation keeps, in bytes.
pub const MAX_MODEL_LEN: usize = 256;

/// Checks a model name's length (1 to [`MAX_MODEL_LEN`] bytes, no control characters).
pub fn check_model(model: Option<&str>) -> Result<()> {
    match model {
        Some(m) if m.is_empty() || m.len() > MAX_MODEL_LEN || m.chars().any(char::is_control) => {
            Err(Error::InvalidModel {
                model: m.chars().take(80).collect(),
            })
        }
        _ => Ok(()),
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
    /// A periodic budget whose stored window ended before `now` shows the current window,
    /// with nothing used in it yet ([`Budget::status_at`]).
    pub fn live(budget: &Budget, due_under_it: &[Reservation], now: Timestamp) -> Self {
        let mut live = budget.clone();
        for hold in due_under_it {
            live.reserved = live.reserved.saturating_sub(hold.tokens);
            live.held = live.held.saturating_sub(1);
        }
        live.status_at(now)
    }
}

/// Every budget's live view (see [`Status::live`]), ordered by id. `due` holds the held
/// reservations past their expiry anywhere in `budgets`; each is left out of its budget and of
/// every ancestor.
pub fn live_statuses(
    budgets: impl IntoIterator<Item = Budget>,
    due: &[Reservation],
    now: Timestamp,
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
    budgets.values().map(|b| b.status_at(now)).collect()
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
