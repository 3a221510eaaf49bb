//! Rows to models and models to statement parameters.
//!
//! Amounts are stored as BIGINT and timestamps as BIGINT microseconds, so every value read
//! back equals the value written; a stored value the model cannot hold is a corrupt row.

use tokenbudget_core::rules::Changes;
use tokenbudget_core::{
    Budget, BudgetId, Charge, Event, EventKind, IdempotencyKey, NewEvent, Period, Reservation,
    ReservationId, ReservationState, Timestamp, Unit,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::PgError;

fn amount(what: &'static str, value: i64) -> Result<u64, PgError> {
    u64::try_from(value).map_err(|_| PgError::corrupt(what, format!("negative amount {value}")))
}

fn budget_id(what: &'static str, id: String) -> Result<BudgetId, PgError> {
    BudgetId::new(id).map_err(|e| PgError::corrupt(what, e))
}

/// A model amount as BIGINT. The core caps amounts at `i64::MAX`, so this only fails on a bug.
fn bigint(value: u64) -> Result<i64, PgError> {
    i64::try_from(value).map_err(|_| PgError::corrupt("amount", format!("{value} exceeds BIGINT")))
}

/// A row of `budget_columns!()`.
pub(crate) fn budget(row: &Row) -> Result<Budget, PgError> {
    Ok(Budget {
        id: budget_id("budget id", row.try_get(0)?)?,
        parent: row
            .try_get::<_, Option<String>>(1)?
            .map(|p| budget_id("budget parent", p))
            .transpose()?,
        limit: amount("budget limit", row.try_get(2)?)?,
        used: amount("budget used", row.try_get(3)?)?,
        reserved: amount("budget reserved", row.try_get(4)?)?,
        held: amount("budget held", row.try_get(5)?)?,
        created_at: Timestamp::from_micros(row.try_get(6)?),
        unit: {
            let unit: String = row.try_get(7)?;
            Unit::parse(&unit).ok_or_else(|| PgError::corrupt("budget unit", unit))?
        },
        period: row
            .try_get::<_, Option<String>>(8)?
            .map(|p| p.parse::<Period>())
            .transpose()
            .map_err(|e| PgError::corrupt("budget period", e))?,
        window_start: row
            .try_get::<_, Option<i64>>(9)?
            .map(Timestamp::from_micros),
        closed: row.try_get(10)?,
    })
}

/// A row starting with `reservation_columns!()`.
pub(crate) fn reservation(row: &Row) -> Result<Reservation, PgError> {
    reservation_at(row, 0)
}

/// `reservation_columns!()` from column `at` on.
fn reservation_at(row: &Row, at: usize) -> Result<Reservation, PgError> {
    let state: String = row.try_get(at + 3)?;
    Ok(Reservation {
        id: ReservationId::from_uuid(row.try_get(at)?),
        budget_id: budget_id("reservation budget", row.try_get(at + 1)?)?,
        tokens: amount("reservation tokens", row.try_get(at + 2)?)?,
        state: ReservationState::parse(&state)
            .ok_or_else(|| PgError::corrupt("reservation state", state))?,
        created_at: Timestamp::from_micros(row.try_get(at + 4)?),
        expires_at: Timestamp::from_micros(row.try_get(at + 5)?),
        idempotency_key: row
            .try_get::<_, Option<String>>(at + 6)?
            .map(IdempotencyKey::new)
            .transpose()
            .map_err(|e| PgError::corrupt("idempotency key", e))?,
        actual: row
            .try_get::<_, Option<i64>>(at + 7)?
            .map(|a| amount("reservation actual", a))
            .transpose()?,
        settled_at: row
            .try_get::<_, Option<i64>>(at + 8)?
            .map(Timestamp::from_micros),
        model: row.try_get(at + 9)?,
    })
}

/// A row of `seq, budget_id, at, kind`.
pub(crate) fn event(row: &Row) -> Result<Event, PgError> {
    let seq: i64 = row.try_get(0)?;
    let kind: serde_json::Value = row.try_get(3)?;
    Ok(Event {
        seq: u64::try_from(seq).map_err(|_| PgError::corrupt("event seq", seq))?,
        budget_id: budget_id("event budget", row.try_get(1)?)?,
        at: Timestamp::from_micros(row.try_get(2)?),
        kind: serde_json::from_value::<EventKind>(kind)
            .map_err(|e| PgError::corrupt("event kind", e))?,
    })
}

/// A row of [`CHARGE`](crate::sql::CHARGE).
pub(crate) fn charge(row: &Row) -> Result<Charge, PgError> {
    Ok(Charge {
        key: IdempotencyKey::new(row.try_get::<_, String>(0)?)
            .map_err(|e| PgError::corrupt("charge key", e))?,
        budget_id: budget_id("charge budget", row.try_get(1)?)?,
        tokens: amount("charge tokens", row.try_get(2)?)?,
        note: row.try_get(3)?,
        at: Timestamp::from_micros(row.try_get(4)?),
    })
}

/// A row of [`STATUS`](crate::sql::STATUS) or [`STATUSES`](crate::sql::STATUSES): the budget
/// and, when the row has one, a due reservation.
pub(crate) fn budget_and_due(row: &Row) -> Result<(Budget, Option<Reservation>), PgError> {
    let budget = budget(row)?;
    if row.try_get::<_, Option<Uuid>>(11)?.is_none() {
        return Ok((budget, None));
    }
    Ok((budget, Some(reservation_at(row, 11)?)))
}

/// The decision's time of a [`STATUS`](crate::sql::STATUS) or
/// [`STATUSES`](crate::sql::STATUSES) row: its last column.
pub(crate) fn status_clock(row: &Row) -> Result<Timestamp, PgError> {
    Ok(Timestamp::from_micros(row.try_get(21)?))
}

/// A row of [`LOG_AFTER`](crate::sql::LOG_AFTER): the event and its transaction id.
pub(crate) fn log_event(row: &Row) -> Result<(Event, u64), PgError> {
    let xid: i64 = row.try_get(4)?;
    let xid = u64::try_from(xid).map_err(|_| PgError::corrupt("event xid", xid))?;
    Ok((event(row)?, xid))
}

/// What one write statement writes: the [`Changes`] of one decision, or the merged changes of
/// a batch's decisions (several new reservations and charges; each budget and reservation
/// once, in its last state).
#[derive(Debug, Default)]
pub(crate) struct BatchChanges {
    pub(crate) new_budget: Option<Budget>,
    pub(crate) budgets: Vec<Budget>,
    pub(crate) new_reservations: Vec<Reservation>,
    pub(crate) reservations: Vec<Reservation>,
    pub(crate) new_charges: Vec<Charge>,
    pub(crate) events: Vec<NewEvent>,
}

impl BatchChanges {
    pub(crate) fn is_empty(&self) -> bool {
        self.new_budget.is_none()
            && self.budgets.is_empty()
            && self.new_reservations.is_empty()
            && self.reservations.is_empty()
            && self.new_charges.is_empty()
            && self.events.is_empty()
    }
}

impl From<Changes> for BatchChanges {
    fn from(c: Changes) -> Self {
        Self {
            new_budget: c.new_budget,
            budgets: c.budgets,
            new_reservations: c.new_reservation.into_iter().collect(),
            reservations: c.reservations,
            new_charges: c.new_charge.into_iter().collect(),
            events: c.events,
        }
    }
}

/// The 36 parameters of [`WRITE_CHANGES`](crate::sql::WRITE_CHANGES), owned.
#[derive(Debug, Default)]
pub(crate) struct WriteParams {
    nb_id: Vec<String>,
    nb_parent: Vec<Option<String>>,
    nb_limit: Vec<i64>,
    nb_used: Vec<i64>,
    nb_reserved: Vec<i64>,
    nb_held: Vec<i64>,
    nb_created: Vec<i64>,
    b_id: Vec<String>,
    b_limit: Vec<i64>,
    b_used: Vec<i64>,
    b_reserved: Vec<i64>,
    b_held: Vec<i64>,
    nr_id: Vec<Uuid>,
    nr_budget: Vec<String>,
    nr_tokens: Vec<i64>,
    nr_state: Vec<&'static str>,
    nr_created: Vec<i64>,
    nr_expires: Vec<i64>,
    nr_key: Vec<Option<String>>,
    nr_actual: Vec<Option<i64>>,
    nr_settled: Vec<Option<i64>>,
    r_id: Vec<Uuid>,
    r_state: Vec<&'static str>,
    r_actual: Vec<Option<i64>>,
    r_settled: Vec<Option<i64>>,
    r_expires: Vec<i64>,
    nc_key: Vec<String>,
    nc_budget: Vec<String>,
    nc_tokens: Vec<i64>,
    nc_note: Vec<Option<String>>,
    nc_at: Vec<i64>,
    e_budget: Vec<String>,
    e_at: Vec<i64>,
    e_type: Vec<&'static str>,
    e_reservation: Vec<Option<Uuid>>,
    e_kind: Vec<serde_json::Value>,
    nb_unit: Vec<&'static str>,
    nb_period: Vec<Option<String>>,
    nb_window: Vec<Option<i64>>,
    nb_closed: Vec<bool>,
    b_window: Vec<Option<i64>>,
    b_closed: Vec<bool>,
    nr_model: Vec<Option<String>>,
}

impl WriteParams {
    /// Flattens `changes` into parallel arrays. Full rows are written for budgets; for
    /// existing reservations only what a rule can change (state, actual, settled_at,
    /// expires_at).
    pub(crate) fn new(changes: &BatchChanges) -> Result<Self, PgError> {
        let mut p = Self::default();
        if let Some(b) = &changes.new_budget {
            p.nb_id.push(b.id.to_string());
            p.nb_parent.push(b.parent.as_ref().map(ToString::to_string));
            p.nb_limit.push(bigint(b.limit)?);
            p.nb_used.push(bigint(b.used)?);
            p.nb_reserved.push(bigint(b.reserved)?);
            p.nb_held.push(bigint(b.held)?);
            p.nb_created.push(b.created_at.as_micros());
            p.nb_unit.push(b.unit.as_str());
            p.nb_period.push(b.period.map(|p| p.to_string()));
            p.nb_window.push(b.window_start.map(Timestamp::as_micros));
            p.nb_closed.push(b.closed);
        }
        for b in &changes.budgets {
            p.b_id.push(b.id.to_string());
            p.b_limit.push(bigint(b.limit)?);
            p.b_used.push(bigint(b.used)?);
            p.b_reserved.push(bigint(b.reserved)?);
            p.b_held.push(bigint(b.held)?);
            p.b_window.push(b.window_start.map(Timestamp::as_micros));
            p.b_closed.push(b.closed);
        }
        for r in &changes.new_reservations {
            p.nr_id.push(*r.id.as_uuid());
            p.nr_budget.push(r.budget_id.to_string());
            p.nr_tokens.push(bigint(r.tokens)?);
            p.nr_state.push(r.state.as_str());
            p.nr_created.push(r.created_at.as_micros());
            p.nr_expires.push(r.expires_at.as_micros());
            p.nr_key
                .push(r.idempotency_key.as_ref().map(|k| k.as_str().to_owned()));
            p.nr_actual.push(r.actual.map(bigint).transpose()?);
            p.nr_settled.push(r.settled_at.map(Timestamp::as_micros));
            p.nr_model.push(r.model.clone());
        }
        for r in &changes.reservations {
            p.r_id.push(*r.id.as_uuid());
            p.r_state.push(r.state.as_str());
            p.r_actual.push(r.actual.map(bigint).transpose()?);
            p.r_settled.push(r.settled_at.map(Timestamp::as_micros));
            p.r_expires.push(r.expires_at.as_micros());
        }
        for c in &changes.new_charges {
            p.nc_key.push(c.key.as_str().to_owned());
            p.nc_budget.push(c.budget_id.to_string());
            p.nc_tokens.push(bigint(c.tokens)?);
            p.nc_note.push(c.note.clone());
            p.nc_at.push(c.at.as_micros());
        }
        for e in &changes.events {
            p.e_budget.push(e.budget_id.to_string());
            p.e_at.push(e.at.as_micros());
            p.e_type.push(e.kind.type_name());
            p.e_reservation
                .push(e.kind.reservation_id().map(|id| *id.as_uuid()));
            p.e_kind.push(
                serde_json::to_value(&e.kind).map_err(|e| PgError::corrupt("event kind", e))?,
            );
        }
        Ok(p)
    }

    /// The parameters, in statement order.
    pub(crate) fn as_params(&self) -> [&(dyn ToSql + Sync); 43] {
        [
            &self.nb_id,
            &self.nb_parent,
            &self.nb_limit,
            &self.nb_used,
            &self.nb_reserved,
            &self.nb_held,
            &self.nb_created,
            &self.b_id,
            &self.b_limit,
            &self.b_used,
            &self.b_reserved,
            &self.b_held,
            &self.nr_id,
            &self.nr_budget,
            &self.nr_tokens,
            &self.nr_state,
            &self.nr_created,
            &self.nr_expires,
            &self.nr_key,
            &self.nr_actual,
            &self.nr_settled,
            &self.r_id,
            &self.r_state,
            &self.r_actual,
            &self.r_settled,
            &self.e_budget,
            &self.e_at,
            &self.e_type,
            &self.e_reservation,
            &self.e_kind,
            &self.r_expires,
            &self.nc_key,
            &self.nc_budget,
            &self.nc_tokens,
            &self.nc_note,
            &self.nc_at,
            &self.nb_unit,
            &self.nb_period,
            &self.nb_window,
            &self.nb_closed,
            &self.b_window,
            &self.b_closed,
            &self.nr_model,
        ]
    }
}
