//! The raw SQLite baseline: the SQLite store's reserve and commit transactions through bare
//! sqlx on the same tables, with the budget arithmetic inline and no tokenbudget code on the
//! measured path (no tracker, no rules, no snapshot, no task per operation, no writer queue).
//!
//! Like the store, it has one writer connection that tasks queue for (a `tokio::sync::Mutex`)
//! and opens every transaction with `BEGIN IMMEDIATE`. Two shapes:
//!
//! - [`RawShape::Store`]: the statements the store runs for one operation, copied (its one
//!   read of the chain, the due holds and the reservation by id or key; then the writes, one
//!   row each), so the difference to the store is tokenbudget's own cost. The store's group
//!   commit is not copied: each operation here has its own transaction;
//! - [`RawShape::Minimal`]: the least a correct reserve needs — read the budget, check, update
//!   it, insert the reservation and the event; then the commit transaction.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};
use tokio::sync::Mutex;

use crate::load::{budget_name, BoxError, PairDriver, BENCH_LIMIT};

/// The store's schema (every migration), applied as is.
const SCHEMA_SQL: [&str; 2] = [
    include_str!("../../crates/tokenbudget-sqlite/migrations/0001_init.sql"),
    include_str!("../../crates/tokenbudget-sqlite/migrations/0002_tree_holds_and_charges.sql"),
];

const BUDGET_COLUMNS: &str = "id, parent, limit_tokens, used, reserved, held, created_at";

/// The store's one read of reserve (`sql::load`), from a budget (`?1`): the chain's budgets
/// (kind 0), the budgets of the due holds' chains off it, then the held reservations due at
/// `?5` anywhere in the chain's tree (found by root) and the reservation with id `?3` or key
/// `?4` (kind 1).
const LOAD: &str = "WITH RECURSIVE chain (id, depth) AS (
             SELECT ?1, 0
             UNION ALL
             SELECT b.parent, chain.depth + 1 FROM budgets b JOIN chain ON b.id = chain.id
             WHERE b.parent IS NOT NULL AND chain.depth < ?2
         ), \
         due AS (SELECT * FROM reservations WHERE state = 'held' AND expires_at <= ?5 \
                 AND root = (SELECT id FROM chain ORDER BY depth DESC LIMIT 1)), \
         above (id) AS (SELECT budget_id FROM due \
                        UNION SELECT b.parent FROM budgets b JOIN above ON b.id = above.id \
                        WHERE b.parent IS NOT NULL) \
         SELECT 0, id, parent, limit_tokens, used, reserved, held, created_at, NULL, NULL, \
                chain.depth FROM budgets JOIN chain USING (id) \
         UNION SELECT 0, id, parent, limit_tokens, used, reserved, held, created_at, NULL, NULL, \
                ?2 + 1 FROM budgets \
                WHERE id IN (SELECT id FROM above EXCEPT SELECT id FROM chain) \
         UNION SELECT 1, id, budget_id, tokens, created_at, expires_at, actual, settled_at, \
                      state, idempotency_key, 0 FROM due \
         UNION SELECT 1, id, budget_id, tokens, created_at, expires_at, actual, settled_at, \
                      state, idempotency_key, 0 FROM reservations WHERE id = ?3 \
         UNION SELECT 1, id, budget_id, tokens, created_at, expires_at, actual, settled_at, \
                      state, idempotency_key, 0 FROM reservations WHERE idempotency_key = ?4 \
         ORDER BY 1, 11";

/// How long the baseline's holds last (never reached in a benchmark).
pub const RAW_TIMEOUT: Duration = Duration::from_secs(60);

/// Which statements a transaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawShape {
    /// The store's statements.
    Store,
    /// The fewest statements a correct reserve and commit need.
    Minimal,
}

/// The raw baseline; see the module docs.
pub struct RawSqlite {
    writer: Mutex<SqliteConnection>,
    shape: RawShape,
}

/// What a reserve hands to its commit.
pub struct RawHandle {
    id: String,
    budget: String,
    tokens: i64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A fresh UUID-shaped id (time-ordered like the store's UUIDv7 ids, for the same index
/// locality).
fn new_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let t = now_micros() as u64;
    format!(
        "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
        t >> 32,
        (t >> 16) & 0xffff,
        t & 0xfff,
        std::process::id() & 0xfff,
        n
    )
}

impl RawSqlite {
    /// Creates the database file `path` with the store's tables: WAL, foreign keys on, the
    /// given `synchronous` (`NORMAL`, `FULL`, `EXTRA`).
    pub async fn create(path: &Path, synchronous: &str, shape: RawShape) -> Result<Self, BoxError> {
        let synchronous: SqliteSynchronous = synchronous.parse()?;
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        for sql in SCHEMA_SQL {
            sqlx::query(sql)
                .persistent(false)
                .execute(&mut conn)
                .await?;
        }
        Ok(Self {
            writer: Mutex::new(conn),
            shape,
        })
    }
}

fn event(
    budget: &str,
    at: i64,
    id: &str,
    kind: serde_json::Value,
) -> (String, i64, String, String, String) {
    let kind_type = kind["type"].as_str().unwrap_or_default().to_owned();
    (
        budget.to_owned(),
        at,
        kind_type,
        id.to_owned(),
        kind.to_string(),
    )
}

async fn insert_event(
    conn: &mut SqliteConnection,
    (budget, at, kind_type, id, payload): (String, i64, String, String, String),
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO events (budget_id, at, type, reservation_id, payload) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(budget)
    .bind(at)
    .bind(kind_type)
    .bind(id)
    .bind(payload)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The budget row's (limit, used, reserved, held), by the shape's queries; for the store's
/// shape also checks that no hold expired and that `target` is the reservation expected
/// (`None`: a new id must be free).
async fn load_budget(
    conn: &mut SqliteConnection,
    shape: RawShape,
    budget: &str,
    target: (&str, Option<&str>),
    now: i64,
) -> Result<(i64, i64, i64, i64), BoxError> {
    let row: SqliteRow = match shape {
        RawShape::Store => {
            let rows = sqlx::query(LOAD)
                .bind(budget)
                .bind(16_i64)
                .bind(target.0)
                .bind(None::<String>)
                .bind(now)
                .fetch_all(&mut *conn)
                .await?;
            let mut budget_row = None;
            let mut found = None;
            for r in rows {
                if r.try_get::<i64, _>(0)? == 0 {
                    budget_row.get_or_insert(r);
                } else if r.try_get::<String, _>(1)? == target.0 {
                    found = Some(r.try_get::<String, _>(8)?);
                } else {
                    return Err("the baseline does not expire holds".into());
                }
            }
            if found.as_deref() != target.1 {
                return Err(format!("reservation {} is {found:?}", target.0).into());
            }
            let row = budget_row.ok_or("no such budget")?;
            return Ok((
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
                row.try_get(6)?,
            ));
        }
        RawShape::Minimal => {
            sqlx::query(&format!(
                "SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = ?1"
            ))
            .bind(budget)
            .fetch_one(&mut *conn)
            .await?
        }
    };
    Ok((
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
    ))
}

#[async_trait]
impl PairDriver for RawSqlite {
    type Handle = RawHandle;

    async fn attach(&self, _budgets: usize) -> Result<(), BoxError> {
        Err("the raw SQLite baseline runs in one process".into())
    }

    async fn setup(&self, budgets: usize) -> Result<(), BoxError> {
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_micros();
        for i in 0..budgets {
            let name = budget_name(i);
            sqlx::query(
                "INSERT INTO budgets (id, parent, limit_tokens, used, reserved, held, created_at) \
                 VALUES (?1, NULL, ?2, 0, 0, 0, ?3)",
            )
            .bind(&name)
            .bind(BENCH_LIMIT as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_event(
                &mut tx,
                event(
                    &name,
                    now,
                    "",
                    json!({"type": "BUDGET_CREATED", "parent": null, "limit": BENCH_LIMIT}),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn reserve(&self, budget: usize, tokens: u64) -> Result<RawHandle, BoxError> {
        let budget = budget_name(budget);
        let tokens = tokens as i64;
        let id = new_id();
        let now = now_micros();
        let expires = now + RAW_TIMEOUT.as_micros() as i64;
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let (limit, used, reserved, held) =
            load_budget(&mut tx, self.shape, &budget, (&id, None), now).await?;
        if used + reserved + tokens > limit {
            return Err("refused: the benchmark budget is full".into());
        }
        sqlx::query(
            "UPDATE budgets SET limit_tokens = ?2, used = ?3, reserved = ?4, held = ?5 \
             WHERE id = ?1",
        )
        .bind(&budget)
        .bind(limit)
        .bind(used)
        .bind(reserved + tokens)
        .bind(held + 1)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO reservations (id, budget_id, root, tokens, state, created_at, \
             expires_at, idempotency_key, actual, settled_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(&id)
        .bind(&budget)
        // Every benchmark budget is a workflow: its own root.
        .bind(&budget)
        .bind(tokens)
        .bind("held")
        .bind(now)
        .bind(expires)
        .bind(None::<String>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .execute(&mut *tx)
        .await?;
        insert_event(
            &mut tx,
            event(
                &budget,
                now,
                &id,
                json!({"type": "TOKENS_RESERVED", "reservation_id": id, "origin": budget,
                       "tokens": tokens, "expires_at": expires}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(RawHandle { id, budget, tokens })
    }

    async fn commit(&self, handle: RawHandle, actual: u64) -> Result<(), BoxError> {
        let actual = actual as i64;
        let now = now_micros();
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        // (The store seeds its chain from the reservation's budget; the handle knows it.)
        let (limit, used, reserved, held) = load_budget(
            &mut tx,
            self.shape,
            &handle.budget,
            (&handle.id, Some("held")),
            now,
        )
        .await?;
        sqlx::query(
            "UPDATE budgets SET limit_tokens = ?2, used = ?3, reserved = ?4, held = ?5 \
             WHERE id = ?1",
        )
        .bind(&handle.budget)
        .bind(limit)
        .bind(used + actual)
        .bind(reserved - handle.tokens)
        .bind(held - 1)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE reservations SET tokens = ?2, state = ?3, expires_at = ?4, actual = ?5, \
             settled_at = ?6 WHERE id = ?1",
        )
        .bind(&handle.id)
        .bind(handle.tokens)
        .bind("committed")
        .bind(now + RAW_TIMEOUT.as_micros() as i64)
        .bind(actual)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_event(
            &mut tx,
            event(
                &handle.budget,
                now,
                &handle.id,
                json!({"type": "TOKENS_COMMITTED", "reservation_id": handle.id,
                       "origin": handle.budget, "tokens": actual, "released": handle.tokens,
                       "overrun": 0, "late": false}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
