//! The SQL: loading rows into the core's models and writing [`Changes`] back.
//!
//! Nothing here decides anything about budgets; the rules in `tokenbudget_core::rules` do.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use tokenbudget_core::{
    Budget, BudgetId, Charge, Event, EventKind, EventQuery, IdempotencyKey, NewEvent, Period,
    RecentQuery, Reservation, ReservationId, ReservationQuery, ReservationState, Timestamp, Unit,
    MAX_DEPTH,
};

use crate::error::{Result, SqliteError};

const BUDGET_COLUMNS: &str =
    "id, parent, limit_tokens, used, reserved, held, created_at, unit, period, window_start, closed";
const RESERVATION_COLUMNS: &str = "id, budget_id, tokens, state, created_at, expires_at, \
                                   idempotency_key, actual, settled_at, model";

/// The columns [`load`] and [`everything_due`] add after `depth` (12 to 16): a budget's
/// unit, period, window start and closed flag, a reservation's model.
const BUDGET_EXTRA: &str = "unit, period, window_start, closed, NULL";

/// Where a chain starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Leaf<'a> {
    /// At this budget.
    Budget(&'a BudgetId),
    /// At the budget this reservation was made on (no chain if it does not exist).
    ReservationOf(ReservationId),
}

/// The recursive CTE `chain (id, depth)`: the leaf (bound as `?1`: a budget id, or with
/// `of_reservation` a reservation id whose budget is the leaf) and its ancestors, bounded one
/// level past [`MAX_DEPTH`] (bound as `?2`) so a corrupt cycle cannot loop forever; the rules
/// report a chain that deep as a broken snapshot.
fn chain_cte(of_reservation: bool) -> &'static str {
    if of_reservation {
        "WITH RECURSIVE chain (id, depth) AS (
             SELECT (SELECT budget_id FROM reservations WHERE id = ?1), 0
             UNION ALL
             SELECT b.parent, chain.depth + 1 FROM budgets b JOIN chain ON b.id = chain.id
             WHERE b.parent IS NOT NULL AND chain.depth < ?2
         )"
    } else {
        "WITH RECURSIVE chain (id, depth) AS (
             SELECT ?1, 0
             UNION ALL
             SELECT b.parent, chain.depth + 1 FROM budgets b JOIN chain ON b.id = chain.id
             WHERE b.parent IS NOT NULL AND chain.depth < ?2
         )"
    }
}

impl Leaf<'_> {
    fn cte(self) -> &'static str {
        chain_cte(matches!(self, Self::ReservationOf(_)))
    }

    fn bind_value(self) -> String {
        match self {
            Self::Budget(id) => id.as_str().to_owned(),
            Self::ReservationOf(id) => id.to_string(),
        }
    }
}

/// The chain's budgets, leaf first (empty when the leaf does not exist).
pub(crate) async fn chain(conn: &mut SqliteConnection, leaf: Leaf<'_>) -> Result<Vec<Budget>> {
    let sql = format!(
        "{} SELECT {BUDGET_COLUMNS} FROM budgets JOIN chain USING (id) ORDER BY chain.depth",
        leaf.cte()
    );
    sqlx::query(&sql)
        .bind(leaf.bind_value())
        .bind(MAX_DEPTH as i64)
        .fetch_all(conn)
        .await?
        .iter()
        .map(budget)
        .collect()
}

/// What a writing operation asks [`load`] for, besides its chain and its tree's due holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want<'a> {
    /// Where the chain starts.
    pub leaf: Leaf<'a>,
    /// The reservation with this id (reserve's retry, commit, rollback, extend).
    pub reservation: Option<ReservationId>,
    /// The reservation holding this idempotency key (reserve).
    pub key: Option<&'a IdempotencyKey>,
    /// The charge with this key (charge).
    pub charge: Option<&'a IdempotencyKey>,
    /// Holds with `expires_at <= now` are due.
    pub now: Timestamp,
}

/// What [`load`] read.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The chain's budgets (leaf first), then the budgets of the due holds' chains not on it.
    pub budgets: Vec<Budget>,
    /// The tree's held reservations due at `now`, and the one asked for by id or key.
    pub reservations: Vec<Reservation>,
    /// The charge asked for.
    pub charge: Option<Charge>,
}

/// What the writing operations read, in one statement: the chain's budgets (leaf first);
/// every held reservation due at `now` made anywhere in the chain's tree (all budgets sharing
/// its root, one probe of `reservations_held_by_root`) with the budgets of their chains; and,
/// as `want` asks, the reservation with an id or holding a key, and a charge. The batch's
/// [`Unit`](crate::unit::Unit) merges its own writes into the answer.
///
/// One statement is one round trip to sqlx's worker thread; the kinds of row share its
/// columns, each column holding one SQL type in all of them.
pub(crate) async fn load(conn: &mut SqliteConnection, want: Want<'_>) -> Result<Loaded> {
    let rows = sqlx::query(load_sql(&want))
        .bind(want.leaf.bind_value())
        .bind(MAX_DEPTH as i64)
        .bind(want.reservation.map(|id| id.to_string()))
        .bind(want.key.map(IdempotencyKey::as_str))
        .bind(want.now.as_micros())
        .bind(want.charge.map(IdempotencyKey::as_str))
        .fetch_all(conn)
        .await?;
    let mut loaded = Loaded::default();
    for row in &rows {
        match row.try_get::<i64, _>(0)? {
            0 => loaded.budgets.push(budget_at(row, 1, 11)?),
            1 => loaded
                .reservations
                .push(reservation_in(row, LOADED_COLUMNS)?),
            _ => loaded.charge = Some(charge_at(row)?),
        }
    }
    Ok(loaded)
}

/// [`load`]'s statement for `want`: the branches it asks for, nothing more (each shape is
/// built once, and is one entry of sqlx's statement cache).
fn load_sql(want: &Want<'_>) -> &'static str {
    static SHAPES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let shapes = SHAPES.get_or_init(|| {
        (0..16)
            .map(|i| build_load_sql(i & 1 != 0, i & 2 != 0, i & 4 != 0, i & 8 != 0))
            .collect()
    });
    let i = usize::from(matches!(want.leaf, Leaf::ReservationOf(_)))
        | usize::from(want.reservation.is_some()) << 1
        | usize::from(want.key.is_some()) << 2
        | usize::from(want.charge.is_some()) << 3;
    &shapes[i]
}

/// Columns: kind (0 budget, 1 reservation, 2 charge), then
///   budget:      id,  parent,    limit_tokens, used,       reserved,   held,   created_at, NULL,  NULL,            depth, unit, period, window_start, closed, NULL
///   reservation: id,  budget_id, tokens,       created_at, expires_at, actual, settled_at, state, idempotency_key, 0,     NULL, NULL,   NULL,         NULL,   model
///   charge:      key, budget_id, tokens,       at,         NULL,       NULL,   NULL,       NULL,  note,            0,     NULL, NULL,   NULL,         NULL,   NULL
/// Budgets come leaf first (`depth`), those only on due holds' chains after the chain.
fn build_load_sql(of_reservation: bool, by_id: bool, by_key: bool, charge: bool) -> String {
    let mut sql = format!(
        "{}, \
         due AS (SELECT * FROM reservations WHERE state = 'held' AND expires_at <= ?5 \
                 AND root = (SELECT id FROM chain ORDER BY depth DESC LIMIT 1)), \
         above (id) AS (SELECT budget_id FROM due \
                        UNION SELECT b.parent FROM budgets b JOIN above ON b.id = above.id \
                        WHERE b.parent IS NOT NULL) \
         SELECT 0, id, parent, limit_tokens, used, reserved, held, created_at, NULL, NULL, \
                chain.depth, {BUDGET_EXTRA} FROM budgets JOIN chain USING (id) \
         UNION SELECT 0, id, parent, limit_tokens, used, reserved, held, created_at, NULL, NULL, \
                ?2 + 1, {BUDGET_EXTRA} FROM budgets \
                WHERE id IN (SELECT id FROM above EXCEPT SELECT id FROM chain) \
         UNION SELECT {LOADED} FROM due",
        chain_cte(of_reservation)
    );
    if by_id {
        sql.push_str(&format!(
            " UNION SELECT {LOADED} FROM reservations WHERE id = ?3"
        ));
    }
    if by_key {
        sql.push_str(&format!(
            " UNION SELECT {LOADED} FROM reservations WHERE idempotency_key = ?4"
        ));
    }
    if charge {
        sql.push_str(
            " UNION SELECT 2, key, budget_id, tokens, at, NULL, NULL, NULL, NULL, note, 0, \
             NULL, NULL, NULL, NULL, NULL FROM charges WHERE key = ?6",
        );
    }
    sql.push_str(" ORDER BY 1, 11");
    sql
}

/// The reservation rows of [`load`]. `UNION` (not `UNION ALL`): a reservation both due and
/// asked for by id comes once.
const LOADED: &str = "1, id, budget_id, tokens, created_at, expires_at, actual, settled_at, \
                      state, idempotency_key, 0, NULL, NULL, NULL, NULL, model";

/// The charge with `key`.
pub(crate) async fn charge_by_key(
    conn: &mut SqliteConnection,
    key: &IdempotencyKey,
) -> Result<Option<Charge>> {
    sqlx::query(
        "SELECT 2, key, budget_id, tokens, at, NULL, NULL, NULL, NULL, note \
         FROM charges WHERE key = ?1",
    )
    .bind(key.as_str())
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(charge_at)
    .transpose()
}

/// What `status` and `statuses` read, in one statement (one consistent snapshot): every
/// budget, and every held reservation due at `now`.
pub(crate) async fn everything_due(
    conn: &mut SqliteConnection,
    now: Timestamp,
) -> Result<(Vec<Budget>, Vec<Reservation>)> {
    let sql = format!(
        "SELECT 0, id, parent, limit_tokens, used, reserved, held, created_at, NULL, NULL, 0, \
         {BUDGET_EXTRA} FROM budgets \
         UNION ALL SELECT {LOADED} FROM reservations WHERE state = 'held' AND expires_at <= ?1 \
         ORDER BY 1, 2"
    );
    let rows = sqlx::query(&sql)
        .bind(now.as_micros())
        .fetch_all(conn)
        .await?;
    let (mut budgets, mut due) = (Vec::new(), Vec::new());
    for row in &rows {
        if row.try_get::<i64, _>(0)? == 0 {
            budgets.push(budget_at(row, 1, 11)?);
        } else {
            due.push(reservation_in(row, LOADED_COLUMNS)?);
        }
    }
    Ok((budgets, due))
}

/// One budget.
pub(crate) async fn budget_by_id(
    conn: &mut SqliteConnection,
    id: &BudgetId,
) -> Result<Option<Budget>> {
    let sql = format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = ?1");
    sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(budget)
        .transpose()
}

/// Every budget, ordered by id.
pub(crate) async fn all_budgets(conn: &mut SqliteConnection) -> Result<Vec<Budget>> {
    let sql = format!("SELECT {BUDGET_COLUMNS} FROM budgets ORDER BY id");
    sqlx::query(&sql)
        .fetch_all(conn)
        .await?
        .iter()
        .map(budget)
        .collect()
}

/// One reservation.
pub(crate) async fn reservation_by_id(
    conn: &mut SqliteConnection,
    id: ReservationId,
) -> Result<Option<Reservation>> {
    let sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = ?1");
    sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(reservation)
        .transpose()
}

/// Reservations as `query` asks, ordered by id: the subtree by a recursive walk down from
/// the budget, the live state by comparing `expires_at` with `now` for held rows.
pub(crate) async fn reservations(
    conn: &mut SqliteConnection,
    query: &ReservationQuery,
) -> Result<Vec<Reservation>> {
    let columns = RESERVATION_COLUMNS
        .split(", ")
        .map(|c| format!("r.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH RECURSIVE under (id, depth) AS ( \
             SELECT ?1, 0 WHERE ?1 IS NOT NULL \
             UNION ALL SELECT b.id, under.depth + 1 FROM budgets b JOIN under ON b.parent = under.id \
             WHERE under.depth < ?6) \
         SELECT {columns} FROM reservations r \
         WHERE (?1 IS NULL OR r.budget_id IN (SELECT id FROM under)) \
           AND (?2 IS NULL \
                OR (?2 = 'held' AND r.state = 'held' AND r.expires_at > ?3) \
                OR (?2 = 'expired' AND (r.state = 'expired' \
                                        OR (r.state = 'held' AND r.expires_at <= ?3))) \
                OR (?2 NOT IN ('held', 'expired') AND r.state = ?2)) \
           AND (?4 IS NULL OR r.id > ?4) \
         ORDER BY r.id LIMIT ?5"
    );
    let rows = sqlx::query(&sql)
        .bind(query.budget_id.as_ref().map(BudgetId::as_str))
        .bind(query.state.map(ReservationState::as_str))
        .bind(query.now.as_micros())
        .bind(query.after.map(|id| id.to_string()))
        .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .bind(MAX_DEPTH as i64)
        .fetch_all(conn)
        .await?;
    rows.iter().map(reservation).collect()
}

/// Up to `max` held reservations whose expiry is at or before `now`, earliest first.
pub(crate) async fn due(
    conn: &mut SqliteConnection,
    now: Timestamp,
    max: usize,
) -> Result<Vec<Reservation>> {
    let sql = format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations \
         WHERE state = 'held' AND expires_at <= ?1 ORDER BY expires_at, id LIMIT ?2"
    );
    sqlx::query(&sql)
        .bind(now.as_micros())
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await?
        .iter()
        .map(reservation)
        .collect()
}

/// Events in `seq` order, as `query` selects.
pub(crate) async fn events(conn: &mut SqliteConnection, query: &EventQuery) -> Result<Vec<Event>> {
    let Ok(after) = i64::try_from(query.after_seq) else {
        return Ok(Vec::new());
    };
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let rows = match &query.budget_id {
        Some(id) => {
            sqlx::query(
                "SELECT seq, budget_id, at, payload FROM events \
                 WHERE budget_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .bind(id.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
        None => {
            sqlx::query(
                "SELECT seq, budget_id, at, payload FROM events \
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
    };
    rows.iter().map(event).collect()
}

/// The newest events of `query.types`, newest first: one probe of `events_type_seq` per type
/// (each reading at most `limit` rows), merged.
pub(crate) async fn recent_events(
    conn: &mut SqliteConnection,
    query: &RecentQuery,
) -> Result<Vec<Event>> {
    let types: Vec<&String> = {
        let mut t: Vec<&String> = query.types.iter().collect();
        t.sort();
        t.dedup();
        t
    };
    if types.is_empty() || query.limit == 0 {
        return Ok(Vec::new());
    }
    let before = query
        .before
        .map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let probes: Vec<String> = (0..types.len())
        .map(|i| {
            format!(
                "SELECT * FROM (SELECT seq, budget_id, at, payload FROM events \
                 WHERE type = ?{} AND seq < ?1 ORDER BY seq DESC LIMIT ?2)",
                i + 3
            )
        })
        .collect();
    let sql = format!("{} ORDER BY seq DESC LIMIT ?2", probes.join(" UNION ALL "));
    let mut q = sqlx::query(&sql).bind(before).bind(limit);
    for t in types {
        q = q.bind(t.as_str());
    }
    q.fetch_all(conn).await?.iter().map(event).collect()
}

/// What a [`Unit`](crate::unit::Unit) writes, each list in the order it happened.
pub(crate) struct Flush<'a> {
    pub new_budgets: &'a [&'a Budget],
    pub budgets: &'a [&'a Budget],
    /// Each with the root of its budget's tree.
    pub new_reservations: &'a [(&'a Reservation, &'a BudgetId)],
    pub reservations: &'a [&'a Reservation],
    pub charges: &'a [&'a Charge],
    pub events: &'a [NewEvent],
}

/// The most rows one statement of [`flush`] writes. Longer lists are cut into chunks whose
/// sizes are powers of two, so each kind of write has at most seven statement shapes for
/// sqlx's statement cache.
const MAX_ROWS: usize = 64;

/// Writes `flush` in multi-row statements: new budgets (a parent before its child), budget
/// updates, new reservations, reservation updates, charges, then the events in order (each
/// taking the next sequence number).
pub(crate) async fn flush(conn: &mut SqliteConnection, flush: Flush<'_>) -> Result<()> {
    for rows in chunks(flush.new_budgets) {
        let sql = format!(
            "INSERT INTO budgets (id, parent, limit_tokens, used, reserved, held, created_at, \
             unit, period, window_start, closed) VALUES {}",
            placeholders(rows.len(), 11)
        );
        let mut query = sqlx::query(&sql);
        for b in rows {
            query = query
                .bind(b.id.as_str())
                .bind(b.parent.as_ref().map(BudgetId::as_str))
                .bind(amount("limit", b.limit)?)
                .bind(amount("used", b.used)?)
                .bind(amount("reserved", b.reserved)?)
                .bind(amount("held", b.held)?)
                .bind(b.created_at.as_micros())
                .bind(b.unit.as_str())
                .bind(b.period.map(|p| p.to_string()))
                .bind(b.window_start.map(Timestamp::as_micros))
                .bind(b.closed);
        }
        query.execute(&mut *conn).await?;
    }
    for rows in chunks(flush.budgets) {
        let sql = format!(
            "UPDATE budgets SET limit_tokens = u.column2, used = u.column3, \
             reserved = u.column4, held = u.column5, window_start = u.column6, closed = u.column7 \
             FROM (VALUES {}) AS u WHERE budgets.id = u.column1",
            placeholders(rows.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for b in rows {
            query = query
                .bind(b.id.as_str())
                .bind(amount("limit", b.limit)?)
                .bind(amount("used", b.used)?)
                .bind(amount("reserved", b.reserved)?)
                .bind(amount("held", b.held)?)
                .bind(b.window_start.map(Timestamp::as_micros))
                .bind(b.closed);
        }
        query.execute(&mut *conn).await?;
    }
    for rows in chunks(flush.new_reservations) {
        let sql = format!(
            "INSERT INTO reservations (id, budget_id, root, tokens, state, created_at, \
             expires_at, idempotency_key, actual, settled_at, model) VALUES {}",
            placeholders(rows.len(), 11)
        );
        let mut query = sqlx::query(&sql);
        for (r, root) in rows {
            query = query
                .bind(r.id.to_string())
                .bind(r.budget_id.as_str())
                .bind(root.as_str())
                .bind(amount("tokens", r.tokens)?)
                .bind(r.state.as_str())
                .bind(r.created_at.as_micros())
                .bind(r.expires_at.as_micros())
                .bind(r.idempotency_key.as_ref().map(IdempotencyKey::as_str))
                .bind(r.actual.map(|a| amount("actual", a)).transpose()?)
                .bind(r.settled_at.map(Timestamp::as_micros))
                .bind(r.model.as_deref());
        }
        query.execute(&mut *conn).await?;
    }
    for rows in chunks(flush.reservations) {
        let sql = format!(
            "UPDATE reservations SET tokens = u.column2, state = u.column3, \
             expires_at = u.column4, actual = u.column5, settled_at = u.column6 \
             FROM (VALUES {}) AS u WHERE reservations.id = u.column1",
            placeholders(rows.len(), 6)
        );
        let mut query = sqlx::query(&sql);
        for r in rows {
            query = query
                .bind(r.id.to_string())
                .bind(amount("tokens", r.tokens)?)
                .bind(r.state.as_str())
                .bind(r.expires_at.as_micros())
                .bind(r.actual.map(|a| amount("actual", a)).transpose()?)
                .bind(r.settled_at.map(Timestamp::as_micros));
        }
        query.execute(&mut *conn).await?;
    }
    for rows in chunks(flush.charges) {
        let sql = format!(
            "INSERT INTO charges (key, budget_id, tokens, note, at) VALUES {}",
            placeholders(rows.len(), 5)
        );
        let mut query = sqlx::query(&sql);
        for c in rows {
            query = query
                .bind(c.key.as_str())
                .bind(c.budget_id.as_str())
                .bind(amount("charge tokens", c.tokens)?)
                .bind(c.note.as_deref())
                .bind(c.at.as_micros());
        }
        query.execute(&mut *conn).await?;
    }
    for rows in chunks(flush.events) {
        let sql = format!(
            "INSERT INTO events (budget_id, at, type, reservation_id, payload) VALUES {}",
            placeholders(rows.len(), 5)
        );
        let mut query = sqlx::query(&sql);
        for e in rows {
            let payload =
                serde_json::to_string(&e.kind).map_err(|err| SqliteError::corrupt("event", err))?;
            query = query
                .bind(e.budget_id.as_str())
                .bind(e.at.as_micros())
                .bind(e.kind.type_name())
                .bind(e.kind.reservation_id().map(|id| id.to_string()))
                .bind(payload);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `rows` cut into chunks of at most [`MAX_ROWS`], each a power of two long, in order.
fn chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let len = rows.len().min(MAX_ROWS);
        // The largest power of two not above `len`.
        let len = 1 << (usize::BITS - 1 - len.leading_zeros());
        let (chunk, rest) = rows.split_at(len);
        rows = rest;
        Some(chunk)
    })
}

/// `(?, ?, …), (?, ?, …), …`: `rows` tuples of `columns` placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// Every amount is validated to `0..=i64::MAX` by the rules; a larger one here is a bug.
fn amount(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| SqliteError::corrupt(what, format!("{value} exceeds i64")))
}

fn unsigned(what: &'static str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| SqliteError::corrupt(what, format!("negative: {value}")))
}

fn budget_id(what: &'static str, text: String) -> Result<BudgetId> {
    BudgetId::new(text).map_err(|e| SqliteError::corrupt(what, e))
}

fn budget(row: &SqliteRow) -> Result<Budget> {
    budget_at(row, 0, 7)
}

/// A budget whose first seven [`BUDGET_COLUMNS`] start at column `at` and whose last four
/// (unit, period, window start, closed) start at `extra`.
fn budget_at(row: &SqliteRow, at: usize, extra: usize) -> Result<Budget> {
    let unit: String = row.try_get(extra)?;
    Ok(Budget {
        unit: Unit::parse(&unit).ok_or_else(|| SqliteError::corrupt("budget unit", &unit))?,
        period: row
            .try_get::<Option<String>, _>(extra + 1)?
            .map(|p| p.parse::<Period>())
            .transpose()
            .map_err(|e| SqliteError::corrupt("budget period", e))?,
        window_start: row
            .try_get::<Option<i64>, _>(extra + 2)?
            .map(Timestamp::from_micros),
        closed: row.try_get(extra + 3)?,
        id: budget_id("budget id", row.try_get(at)?)?,
        parent: row
            .try_get::<Option<String>, _>(at + 1)?
            .map(|p| budget_id("parent id", p))
            .transpose()?,
        limit: unsigned("limit", row.try_get(at + 2)?)?,
        used: unsigned("used", row.try_get(at + 3)?)?,
        reserved: unsigned("reserved", row.try_get(at + 4)?)?,
        held: unsigned("held", row.try_get(at + 5)?)?,
        created_at: Timestamp::from_micros(row.try_get(at + 6)?),
    })
}

fn idempotency_key(key: Option<String>) -> Result<Option<IdempotencyKey>> {
    key.map(|k| IdempotencyKey::new(k).map_err(|e| SqliteError::corrupt("idempotency key", e)))
        .transpose()
}

fn reservation(row: &SqliteRow) -> Result<Reservation> {
    reservation_in(row, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
}

/// Where [`load`]'s reservation rows hold the columns of [`RESERVATION_COLUMNS`].
const LOADED_COLUMNS: [usize; 10] = [1, 2, 3, 8, 4, 5, 9, 6, 7, 15];

/// A reservation whose [`RESERVATION_COLUMNS`] are the row's columns `at`, in that order.
fn reservation_in(row: &SqliteRow, at: [usize; 10]) -> Result<Reservation> {
    let id: String = row.try_get(at[0])?;
    let state: String = row.try_get(at[3])?;
    Ok(Reservation {
        id: id
            .parse()
            .map_err(|e| SqliteError::corrupt("reservation id", e))?,
        budget_id: budget_id("reservation budget id", row.try_get(at[1])?)?,
        tokens: unsigned("tokens", row.try_get(at[2])?)?,
        state: ReservationState::parse(&state)
            .ok_or_else(|| SqliteError::corrupt("reservation state", &state))?,
        created_at: Timestamp::from_micros(row.try_get(at[4])?),
        expires_at: Timestamp::from_micros(row.try_get(at[5])?),
        idempotency_key: idempotency_key(row.try_get(at[6])?)?,
        actual: row
            .try_get::<Option<i64>, _>(at[7])?
            .map(|a| unsigned("actual", a))
            .transpose()?,
        settled_at: row
            .try_get::<Option<i64>, _>(at[8])?
            .map(Timestamp::from_micros),
        model: row.try_get(at[9])?,
    })
}

/// A charge row of [`load`] or [`charge_by_key`]: key, budget, tokens and time in columns 1
/// to 4, the note in column 9.
fn charge_at(row: &SqliteRow) -> Result<Charge> {
    let key: String = row.try_get(1)?;
    Ok(Charge {
        key: IdempotencyKey::new(key).map_err(|e| SqliteError::corrupt("charge key", e))?,
        budget_id: budget_id("charge budget id", row.try_get(2)?)?,
        tokens: unsigned("charge tokens", row.try_get(3)?)?,
        at: Timestamp::from_micros(row.try_get(4)?),
        note: row.try_get(9)?,
    })
}

fn event(row: &SqliteRow) -> Result<Event> {
    let payload: String = row.try_get(3)?;
    let kind: EventKind =
        serde_json::from_str(&payload).map_err(|e| SqliteError::corrupt("event payload", e))?;
    Ok(Event {
        seq: unsigned("event seq", row.try_get(0)?)?,
        budget_id: budget_id("event budget id", row.try_get(1)?)?,
        at: Timestamp::from_micros(row.try_get(2)?),
        kind,
    })
}
