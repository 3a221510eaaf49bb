//! The raw Postgres baseline: the Postgres store's reserve and commit transactions (the same
//! statements, copied, on the same tables) through bare tokio-postgres, with the budget
//! arithmetic inline and no tokenbudget code on the measured path: no tracker, no rules, no
//! pool checks, no task per operation.
//!
//! Two shapes:
//!
//! - [`Shape::Pipelined`]: the round trips the store makes (`BEGIN` + lock + read pipelined,
//!   then write + `COMMIT` pipelined), so the difference to the store is tokenbudget's own cost;
//! - [`Shape::Sequential`]: one statement per round trip, as pgbench runs a script.
//!
//! Each task gets a connection of its own while it runs an operation (a free list, not a
//! pool: no checks, no timeouts), one connection per task up to [`RAW_MAX_CONNECTIONS`]; past
//! that, tasks wait for a free one, as behind any pool. A transaction that fails with a
//! serialization failure or a deadlock (40001, 40P01) is rolled back and run again, at most
//! [`RAW_ATTEMPTS`] times, as any client of such a schema has to.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::{Mutex, Semaphore};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};
use uuid::Uuid;

use crate::load::{budget_name, BoxError, PairDriver, BENCH_LIMIT};

/// The store's schema, applied as is.
const SCHEMA_SQL: &str =
    include_str!("../../crates/tokenbudget-postgres/migrations/0001_initial.sql");

/// `LOCK_CHAIN` of the store.
const LOCK_CHAIN: &str = "SELECT id, parent, limit_tokens, used, reserved, held, created_at FROM budgets
WHERE id = ANY (ARRAY (SELECT unnest(chain) FROM budgets WHERE id = ANY ($1::text[] || ARRAY (SELECT budget_id FROM reservations WHERE id = $2))))
ORDER BY id
FOR UPDATE";

/// `READ_RESERVATIONS` of the store.
const READ_RESERVATIONS: &str = "SELECT id, budget_id, tokens, state, created_at, expires_at, idempotency_key, actual, settled_at, true AS target, false AS by_key, false AS due
FROM reservations WHERE id = $2
UNION ALL
SELECT id, budget_id, tokens, state, created_at, expires_at, idempotency_key, actual, settled_at, false, true, false
FROM reservations WHERE idempotency_key = $3
UNION ALL
SELECT r.* FROM unnest(ARRAY (SELECT unnest(chain) FROM budgets WHERE id = ANY ($1::text[] || ARRAY (SELECT budget_id FROM reservations WHERE id = $2)))) AS c (id)
CROSS JOIN LATERAL (
    SELECT id, budget_id, tokens, state, created_at, expires_at, idempotency_key, actual, settled_at, false, false, true
    FROM reservations
    WHERE state = 'held' AND budget_id = c.id AND expires_at <= $4
) AS r
ORDER BY expires_at, id";

/// `WRITE_CHANGES` of the store.
const WRITE_CHANGES: &str = "\
WITH new_budget AS (
    INSERT INTO budgets (id, parent, chain, limit_tokens, used, reserved, held, created_at)
    SELECT n.id, n.parent,
           n.id || coalesce((SELECT p.chain FROM budgets AS p WHERE p.id = n.parent), '{}'),
           n.limit_tokens, n.used, n.reserved, n.held, n.created_at
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                $6::bigint[], $7::bigint[])
        AS n (id, parent, limit_tokens, used, reserved, held, created_at)
), budget_updates AS (
    UPDATE budgets AS b
    SET limit_tokens = u.limit_tokens, used = u.used, reserved = u.reserved, held = u.held
    FROM unnest($8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[])
        AS u (id, limit_tokens, used, reserved, held)
    WHERE b.id = u.id
), new_reservation AS (
    INSERT INTO reservations
        (id, budget_id, tokens, state, created_at, expires_at, idempotency_key, actual, settled_at)
    SELECT * FROM unnest($13::uuid[], $14::text[], $15::bigint[], $16::text[], $17::bigint[],
                         $18::bigint[], $19::text[], $20::bigint[], $21::bigint[])
), reservation_updates AS (
    UPDATE reservations AS r
    SET state = u.state, actual = u.actual, settled_at = u.settled_at
    FROM unnest($22::uuid[], $23::text[], $24::bigint[], $25::bigint[])
        AS u (id, state, actual, settled_at)
    WHERE r.id = u.id
)
INSERT INTO events (budget_id, at, type, reservation_id, kind)
SELECT budget_id, at, type, reservation_id, kind
FROM unnest($26::text[], $27::bigint[], $28::text[], $29::uuid[], $30::jsonb[])
    WITH ORDINALITY AS e (budget_id, at, type, reservation_id, kind, ord)
ORDER BY ord";

/// The database the Postgres benchmarks use: `TOKENBUDGET_BENCH_DATABASE_URL`, else
/// `TOKENBUDGET_DATABASE_URL`, else the local `postgres://postgres@127.0.0.1:5432/test`.
pub fn bench_url() -> String {
    std::env::var("TOKENBUDGET_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TOKENBUDGET_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// How the statements are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The store's two round trips per transaction.
    Pipelined,
    /// One round trip per statement.
    Sequential,
}

struct Conn {
    client: Client,
    lock: Statement,
    read: Statement,
    write: Statement,
}

/// The raw baseline; see the module docs.
pub struct RawPostgres {
    conns: Vec<Mutex<Conn>>,
    free: std::sync::Mutex<Vec<usize>>,
    permits: Semaphore,
    shape: Shape,
    timeout_micros: i64,
}

/// What a reserve hands to its commit.
pub struct RawHandle {
    id: Uuid,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The most connections the baseline opens: at 128 tasks, one each would pass the server's
/// default `max_connections` (100) with the other clients of a shared server.
pub const RAW_MAX_CONNECTIONS: usize = 32;

/// How many times one reserve or commit runs its transaction on serialization failures and
/// deadlocks.
pub const RAW_ATTEMPTS: u32 = 10;

/// How long the baseline's holds last (never reached in a benchmark).
pub const RAW_TIMEOUT: Duration = Duration::from_secs(60);

static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

/// A schema name for one benchmark run: `tb_bench_<pid>_<n>`.
pub fn bench_schema() -> String {
    format!(
        "tb_bench_{}_{}",
        std::process::id(),
        NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
    )
}

async fn connect(url: &str, schema: Option<&str>) -> Result<Client, BoxError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if let Some(schema) = schema {
        // The store's session settings that change how these statements run.
        config.options(format!(
            "-c search_path={schema} -c plan_cache_mode=force_generic_plan -c enable_seqscan=off"
        ));
    }
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl RawPostgres {
    /// Creates `schema` with the store's tables and opens `connections` connections to it.
    pub async fn connect(
        url: &str,
        schema: &str,
        connections: usize,
        shape: Shape,
    ) -> Result<Self, BoxError> {
        let admin = connect(url, None).await?;
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\"; \
                 SET search_path TO \"{schema}\"; {SCHEMA_SQL}"
            ))
            .await?;
        Self::open(url, schema, connections, shape).await
    }

    /// Opens `connections` connections (at most [`RAW_MAX_CONNECTIONS`]) to `schema`, created
    /// by [`RawPostgres::connect`] in this process or another.
    pub async fn open(
        url: &str,
        schema: &str,
        connections: usize,
        shape: Shape,
    ) -> Result<Self, BoxError> {
        let connections = connections.clamp(1, RAW_MAX_CONNECTIONS);
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections {
            let client = connect(url, Some(schema)).await?;
            let (lock, read, write) = (
                client.prepare(LOCK_CHAIN).await?,
                client.prepare(READ_RESERVATIONS).await?,
                client.prepare(WRITE_CHANGES).await?,
            );
            conns.push(Mutex::new(Conn {
                client,
                lock,
                read,
                write,
            }));
        }
        Ok(Self {
            free: std::sync::Mutex::new((0..conns.len()).collect()),
            permits: Semaphore::new(conns.len()),
            conns,
            shape,
            timeout_micros: RAW_TIMEOUT.as_micros() as i64,
        })
    }

    /// Drops `schema` and everything in it.
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), BoxError> {
        connect(url, None)
            .await?
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await?;
        Ok(())
    }

    /// Runs `f` on a free connection, again on serialization failures and deadlocks (see the
    /// module docs).
    async fn with_conn<T>(
        &self,
        f: impl for<'c> Fn(&'c Conn) -> BoxFuture<'c, Result<T, BoxError>>,
    ) -> Result<T, BoxError> {
        let _permit = self.permits.acquire().await?;
        let index = self
            .free
            .lock()
            .unwrap()
            .pop()
            .ok_or("no free connection")?;
        let result = {
            let conn = self.conns[index].lock().await;
            let mut attempt = 1;
            loop {
                match f(&conn).await {
                    Err(e) if attempt < RAW_ATTEMPTS && is_retryable(&*e) => {
                        let _ = conn.client.batch_execute("ROLLBACK").await;
                        attempt += 1;
                    }
                    other => break other,
                }
            }
        };
        self.free.lock().unwrap().push(index);
        result
    }
}

/// A serialization failure or a deadlock.
fn is_retryable(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| {
            *code == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                || *code == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
        })
}

/// Sends `BEGIN`, the lock and the read, pipelined or one by one.
async fn begin(
    conn: &Conn,
    shape: Shape,
    lock_params: &[&(dyn ToSql + Sync)],
    read_params: &[&(dyn ToSql + Sync)],
) -> Result<(Vec<Row>, Vec<Row>), tokio_postgres::Error> {
    let c = &conn.client;
    match shape {
        Shape::Pipelined => {
            let (_, locked, read) = tokio::try_join!(
                biased;
                c.batch_execute("BEGIN"),
                c.query(&conn.lock, lock_params),
                c.query(&conn.read, read_params),
            )?;
            Ok((locked, read))
        }
        Shape::Sequential => {
            c.batch_execute("BEGIN").await?;
            let locked = c.query(&conn.lock, lock_params).await?;
            let read = c.query(&conn.read, read_params).await?;
            Ok((locked, read))
        }
    }
}

/// Sends the write and `COMMIT`, pipelined or one by one.
async fn write_and_commit(
    conn: &Conn,
    shape: Shape,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), tokio_postgres::Error> {
    let c = &conn.client;
    match shape {
        Shape::Pipelined => {
            tokio::try_join!(
                biased;
                c.execute(&conn.write, params),
                c.batch_execute("COMMIT"),
            )?;
        }
        Shape::Sequential => {
            c.execute(&conn.write, params).await?;
            c.batch_execute("COMMIT").await?;
        }
    }
    Ok(())
}

/// The write statement's parameters for budget updates, a new or updated reservation, and
/// events; the new-budget part is always empty here.
#[derive(Default)]
struct Write {
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
    e_budget: Vec<String>,
    e_at: Vec<i64>,
    e_type: Vec<&'static str>,
    e_reservation: Vec<Option<Uuid>>,
    e_kind: Vec<serde_json::Value>,
}

impl Write {
    fn budget(&mut self, row: &Row, used: i64, reserved: i64, held: i64) {
        self.b_id.push(row.get(0));
        self.b_limit.push(row.get(2));
        self.b_used.push(used);
        self.b_reserved.push(reserved);
        self.b_held.push(held);
    }

    fn event(&mut self, budget: String, at: i64, id: Uuid, kind: serde_json::Value) {
        self.e_budget.push(budget);
        self.e_at.push(at);
        self.e_type.push(if kind["type"] == "TOKENS_RESERVED" {
            "TOKENS_RESERVED"
        } else {
            "TOKENS_COMMITTED"
        });
        self.e_reservation.push(Some(id));
        self.e_kind.push(kind);
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        const NO_TEXT: &[String] = &[];
        const NO_OPT_TEXT: &[Option<String>] = &[];
        const NO_INT: &[i64] = &[];
        vec![
            &NO_TEXT,
            &NO_OPT_TEXT,
            &NO_INT,
            &NO_INT,
            &NO_INT,
            &NO_INT,
            &NO_INT,
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
        ]
    }
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[async_trait]
impl PairDriver for RawPostgres {
    type Handle = RawHandle;

    async fn attach(&self, _budgets: usize) -> Result<(), BoxError> {
        // The budgets are named, nothing to look up.
        Ok(())
    }

    async fn setup(&self, budgets: usize) -> Result<(), BoxError> {
        let conn = self.conns[0].lock().await;
        let ids: Vec<String> = (0..budgets).map(budget_name).collect();
        conn.client
            .execute(
                "INSERT INTO budgets (id, parent, chain, limit_tokens, used, reserved, held, created_at) \
                 SELECT id, NULL, ARRAY[id], $2, 0, 0, 0, $3 FROM unnest($1::text[]) AS id",
                &[&ids, &(BENCH_LIMIT as i64), &now_micros()],
            )
            .await?;
        Ok(())
    }

    async fn reserve(&self, budget: usize, tokens: u64) -> Result<RawHandle, BoxError> {
        let (shape, timeout) = (self.shape, self.timeout_micros);
        let budget = budget_name(budget);
        self.with_conn(move |conn| {
            let budget = budget.clone();
            Box::pin(async move {
                let id = Uuid::now_v7();
                let now = now_micros();
                let tokens = tokens as i64;
                let seeds = [budget.as_str()];
                let key: Option<&str> = None;
                let (locked, _) = begin(
                    conn,
                    shape,
                    &[&&seeds[..], &id],
                    &[&&seeds[..], &id, &key, &now],
                )
                .await?;
                let mut write = Write::default();
                for row in &locked {
                    let (limit, used, reserved, held): (i64, i64, i64, i64) =
                        (row.get(2), row.get(3), row.get(4), row.get(5));
                    if used + reserved + tokens > limit {
                        conn.client.batch_execute("ROLLBACK").await?;
                        return Err("refused".into());
                    }
                    write.budget(row, used, reserved + tokens, held + 1);
                    write.event(
                        row.get(0),
                        now,
                        id,
                        json!({
                            "type": "TOKENS_RESERVED",
                            "reservation_id": id,
                            "origin": budget,
                            "tokens": tokens,
                            "expires_at": rfc3339(now + timeout),
                        }),
                    );
                }
                write.nr_id.push(id);
                write.nr_budget.push(budget.clone());
                write.nr_tokens.push(tokens);
                write.nr_state.push("held");
                write.nr_created.push(now);
                write.nr_expires.push(now + timeout);
                write.nr_key.push(None);
                write.nr_actual.push(None);
                write.nr_settled.push(None);
                write_and_commit(conn, shape, &write.params()).await?;
                Ok(RawHandle { id })
            })
        })
        .await
    }

    async fn commit(&self, handle: RawHandle, actual: u64) -> Result<(), BoxError> {
        let shape = self.shape;
        let id = handle.id;
        self.with_conn(move |conn| {
            Box::pin(async move {
                let now = now_micros();
                let actual = actual as i64;
                let seeds: [&str; 0] = [];
                let key: Option<&str> = None;
                let (locked, read) = begin(
                    conn,
                    shape,
                    &[&&seeds[..], &id],
                    &[&&seeds[..], &id, &key, &now],
                )
                .await?;
                let target = read
                    .iter()
                    .find(|r| r.get::<_, bool>(9))
                    .ok_or("reservation not found")?;
                let (origin, tokens, state): (String, i64, &str) =
                    (target.get(1), target.get(2), target.get(3));
                if state != "held" {
                    conn.client.batch_execute("ROLLBACK").await?;
                    return Err(format!("reservation is {state}").into());
                }
                let mut write = Write::default();
                for row in &locked {
                    let (used, reserved, held): (i64, i64, i64) =
                        (row.get(3), row.get(4), row.get(5));
                    write.budget(row, used + actual, reserved - tokens, held - 1);
                    write.event(
                        row.get(0),
                        now,
                        id,
                        json!({
                            "type": "TOKENS_COMMITTED",
                            "reservation_id": id,
                            "origin": origin,
                            "tokens": actual,
                            "released": tokens,
                            "overrun": (actual - tokens).max(0),
                            "late": false,
                        }),
                    );
                }
                write.r_id.push(id);
                write.r_state.push("committed");
                write.r_actual.push(Some(actual));
                write.r_settled.push(Some(now));
                write_and_commit(conn, shape, &write.params()).await?;
                Ok(())
            })
        })
        .await
    }
}
