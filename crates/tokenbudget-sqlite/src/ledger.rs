//! [`SqliteUsageStore`]: the usage ledger in the same SQLite database as the budgets.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Instant;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteJournalMode, SqliteRow};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};
use tokenbudget_ledger::aggregate::{self, AggregateQuery, AggregateRow};
use tokenbudget_ledger::checkpoint::Checkpoint;
use tokenbudget_ledger::{
    dedup, validate, Error, RecordQuery, Result, Usage, UsageRecord, UsageStore, WriteSummary,
};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::retry::Backoff;
use crate::schema;

/// A [`UsageStore`] in a SQLite database file, beside the budgets (tables `usage_records` and
/// `usage_checkpoints`, schema versions 3, 5, 6 and 8).
///
/// Each [`UsageStore::write`] is one `BEGIN IMMEDIATE` transaction on this store's connection:
/// its records (merged by key first, then upserted 64 rows per statement), the rule-6
/// `shadowed` flags they set, and its checkpoint commit together. Processes sharing the file take turns
/// through SQLite's write lock; a write that finds it busy past the busy timeout retries
/// until [`Config::retry_deadline`].
#[derive(Debug)]
pub struct SqliteUsageStore {
    conn: Mutex<SqliteConnection>,
    config: Config,
}

fn storage(e: sqlx::Error) -> Error {
    let retryable = crate::error::is_busy(&e);
    Error::storage(e, retryable)
}

fn core(e: tokenbudget_core::Error) -> Error {
    let retryable = e.is_retryable();
    Error::storage(e, retryable)
}

fn gave_up(e: crate::error::SqliteError) -> Error {
    core(e.into())
}

/// Where a candidate (`excluded`) supersedes the stored row: the SQL twin of
/// `tokenbudget_ledger::dedup::rank` (TEXT compares bytewise, as Rust strings do).
pub(crate) const SUPERSEDES: &str = "(excluded.output, excluded.input, excluded.cache_write_5m,
      excluded.cache_write_1h, excluded.cache_read, excluded.web_search_requests,
      excluded.web_fetch_requests, excluded.ts)
   > (usage_records.output, usage_records.input, usage_records.cache_write_5m,
      usage_records.cache_write_1h, usage_records.cache_read, usage_records.web_search_requests,
      usage_records.web_fetch_requests, usage_records.ts)
 OR ((excluded.output, excluded.input, excluded.cache_write_5m,
      excluded.cache_write_1h, excluded.cache_read, excluded.web_search_requests,
      excluded.web_fetch_requests, excluded.ts)
   = (usage_records.output, usage_records.input, usage_records.cache_write_5m,
      usage_records.cache_write_1h, usage_records.cache_read, usage_records.web_search_requests,
      usage_records.web_fetch_requests, usage_records.ts)
   AND ((excluded.file, excluded.line_offset) < (usage_records.file, usage_records.line_offset)
     OR ((excluded.file, excluded.line_offset) = (usage_records.file, usage_records.line_offset)
         AND (excluded.raw_usage < usage_records.raw_usage
           OR (excluded.raw_usage = usage_records.raw_usage
               AND excluded.estimated < usage_records.estimated)))))";

/// Where the merged budget (`dedup::merged_budget`: the greater, `NULL` least) differs from
/// the stored one.
const BUDGET_GROWS: &str = "excluded.budget IS NOT NULL
    AND (usage_records.budget IS NULL OR excluded.budget > usage_records.budget)";

/// Where the merged project or session (`dedup::merged_label`: the greater, bytewise, so a
/// known one beats an empty one) differs from the stored one.
const LABELS_GROW: &str = "excluded.project > usage_records.project
    OR excluded.session_id > usage_records.session_id";

/// The columns a superseding record replaces besides the usage counts
/// ([`Usage::COLUMNS`]); the budget, project and session have their own rules.
const REPLACED: [&str; 8] = [
    "source",
    "machine",
    "model",
    "ts",
    "raw_usage",
    "file",
    "line_offset",
    "estimated",
];

/// The upsert's `SET` list: every column from a superseding record, the budget, project and
/// session by their own rules (so a record that does not supersede can still record them).
fn set_list() -> String {
    let mut set: Vec<String> = REPLACED
        .iter()
        .chain(&Usage::COLUMNS)
        .map(|c| {
            format!("{c} = CASE WHEN {SUPERSEDES} THEN excluded.{c} ELSE usage_records.{c} END")
        })
        .collect();
    set.push(format!(
        "budget = CASE WHEN {BUDGET_GROWS} THEN excluded.budget ELSE usage_records.budget END"
    ));
    for c in ["project", "session_id"] {
        set.push(format!(
            "{c} = CASE WHEN excluded.{c} > usage_records.{c} THEN excluded.{c} \
             ELSE usage_records.{c} END"
        ));
    }
    set.push("revision = usage_records.revision + 1".to_owned());
    set.join(",\n")
}

/// Rows per upsert statement: 19 parameters each, well under SQLite's 32,766; large enough
/// that a batch of 2,000 records is 32 statements, small enough that the statement stays
/// cheap to prepare. The rows past the last full statement go one per statement, so only
/// two statements are ever prepared (once per connection: sqlx's statement cache), never
/// one per batch size.
const ROWS_PER_STATEMENT: usize = 64;

/// The upserts of [`ROWS_PER_STATEMENT`] rows and of one row, built once.
static UPSERT_FULL: LazyLock<String> = LazyLock::new(|| upsert_sql(ROWS_PER_STATEMENT));
static UPSERT_ONE: LazyLock<String> = LazyLock::new(|| upsert_sql(1));

/// The multi-row upsert of `rows` records. Each row is merged on its own, as SQLite applies
/// `ON CONFLICT` per row; the batch is de-duplicated first anyway, so counts are per key.
fn upsert_sql(rows: usize) -> String {
    let set = set_list();
    let row = format!("({})", vec!["?"; 19].join(", "));
    let values = vec![row; rows].join(",\n            ");
    format!(
        "INSERT INTO usage_records (dedup_key, source, machine, session_id, project, model, ts,
            input, output, cache_write_5m, cache_write_1h, cache_read, web_search_requests,
            web_fetch_requests, raw_usage, file, line_offset, estimated, budget)
         VALUES {values}
         ON CONFLICT (dedup_key) DO UPDATE SET {set}
         WHERE ({SUPERSEDES}) OR ({BUDGET_GROWS}) OR ({LABELS_GROW})
         RETURNING revision"
    )
}

const CHECKPOINT_SQL: &str = "INSERT INTO usage_checkpoints
        (file, dev, inode, size, mtime_ns, line_offset, head_hash, tail_hash)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT (file) DO UPDATE SET dev = excluded.dev, inode = excluded.inode,
        size = excluded.size, mtime_ns = excluded.mtime_ns,
        line_offset = excluded.line_offset, head_hash = excluded.head_hash,
        tail_hash = excluded.tail_hash
     WHERE NOT (usage_checkpoints.dev = excluded.dev AND usage_checkpoints.inode = excluded.inode
        AND usage_checkpoints.head_hash = excluded.head_hash
        AND usage_checkpoints.line_offset > excluded.line_offset)";

const RECORD_COLUMNS: &str = "dedup_key, source, machine, session_id, project, model, ts, input,
    output, cache_write_5m, cache_write_1h, cache_read, web_search_requests, web_fetch_requests,
    file, line_offset, estimated, budget";

/// Rule 6 when writing, first half: marks the stored records that the written keys shadow
/// (`?1`: a JSON array of [`dedup::shadowed_by`] of every written key).
const MARK_SHADOWED: &str = "UPDATE usage_records SET shadowed = 1
     WHERE shadowed = 0 AND dedup_key IN (SELECT value FROM json_each(?1))";

/// Rule 6 when writing, second half: marks the written records (`?1`, a JSON array of keys)
/// that a stored record shadows: a key in `(key + ":", key + ";")`, one range probe of the
/// primary key each.
const MARK_SELF_SHADOWED: &str = "UPDATE usage_records SET shadowed = 1
     WHERE shadowed = 0 AND dedup_key IN (SELECT value FROM json_each(?1))
       AND EXISTS (SELECT 1 FROM usage_records s
                    WHERE s.dedup_key > usage_records.dedup_key || ':'
                      AND s.dedup_key < usage_records.dedup_key || ';')";

/// [`UsageStore::shadowed`]: of the keys in `?1` (a JSON array), those a stored key shadows.
const SHADOWED_KEYS: &str = "SELECT k.value FROM json_each(?1) k
     WHERE EXISTS (SELECT 1 FROM usage_records s
                    WHERE s.dedup_key > k.value || ':' AND s.dedup_key < k.value || ';')";

fn json_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> String {
    let keys: Vec<&str> = keys.into_iter().collect();
    serde_json::to_string(&keys).expect("a list of strings serializes")
}

/// The `SELECT … GROUP BY` of [`UsageStore::aggregate`]: bucket and key expressions are
/// built from the query's shape (integers only, never its text, which is bound as ?3…?6);
/// the time range is ?1, ?2. A `SUM` past `i64::MAX` is SQLite's "integer overflow" error.
fn aggregate_sql(query: &AggregateQuery) -> String {
    let width = i64::from(query.bucket_seconds) * 1_000_000;
    let bucket = if width > 0 {
        format!("ts - (((ts % {width}) + {width}) % {width})")
    } else {
        "NULL".to_owned()
    };
    let g = query.group;
    let key = |on: bool, column: &str| {
        if on {
            column.to_owned()
        } else {
            "''".to_owned()
        }
    };
    let tiers = aggregate::tiers_descending(query);
    let tier = if tiers.is_empty() {
        "NULL".to_owned()
    } else {
        let whens: String = tiers
            .iter()
            .map(|t| {
                format!(" WHEN input + cache_write_5m + cache_write_1h + cache_read > {t} THEN {t}")
            })
            .collect();
        format!("CASE{whens} ELSE NULL END")
    };
    format!(
        "SELECT {bucket} AS bucket, {model} AS model, {project} AS project,
            {session} AS session_id, {budget} AS budget, {tier} AS prompt_above,
            SUM(input) AS input, SUM(output) AS output, SUM(cache_write_5m) AS cache_write_5m,
            SUM(cache_write_1h) AS cache_write_1h, SUM(cache_read) AS cache_read,
            SUM(web_search_requests) AS web_search_requests,
            SUM(web_fetch_requests) AS web_fetch_requests,
            COUNT(*) AS responses, MIN(ts) AS first, MAX(ts) AS last
         FROM usage_records r
         WHERE ts >= ?1 AND ts < ?2
           AND (?3 IS NULL OR instr(project, ?3) > 0)
           AND (?4 IS NULL OR instr(model, ?4) > 0)
           AND (?5 IS NULL OR budget = ?5)
           AND (?6 IS NULL OR session_id = ?6)
           AND shadowed = 0
         GROUP BY 1, 2, 3, 4, 5, 6
         ORDER BY 1, 2, 3, 4, 5 NULLS FIRST, 6 NULLS FIRST",
        model = key(g.model, "model"),
        project = key(g.project, "project"),
        session = key(g.session, "session_id"),
        budget = if g.budget { "budget" } else { "NULL" },
    )
}

/// The usage counts of a row ([`Usage::from_columns`]).
fn usage_row(row: &SqliteRow) -> std::result::Result<Usage, sqlx::Error> {
    Usage::from_columns(|c| row.try_get::<i64, _>(c).map(uint))
}

fn aggregate_row(row: &SqliteRow) -> std::result::Result<AggregateRow, sqlx::Error> {
    let n = |c: &str| row.try_get::<i64, _>(c).map(uint);
    Ok(AggregateRow {
        bucket: row.try_get("bucket")?,
        model: row.try_get("model")?,
        project: row.try_get("project")?,
        session_id: row.try_get("session_id")?,
        budget: row.try_get("budget")?,
        prompt_above: row.try_get::<Option<i64>, _>("prompt_above")?.map(uint),
        usage: usage_row(row)?,
        responses: n("responses")?,
        first: row.try_get("first")?,
        last: row.try_get("last")?,
    })
}

/// Counts are validated to fit an i64 before any write; identities are stored bit for bit.
fn int(v: u64) -> i64 {
    v as i64
}

fn uint(v: i64) -> u64 {
    v as u64
}

impl SqliteUsageStore {
    /// Opens the database at `url` (as [`crate::SqliteStore::open`] does) and migrates it.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(Config::new(url)).await
    }

    /// Opens the database `config` names and migrates it to this build's schema (budgets and
    /// ledger alike).
    pub async fn open_with(config: Config) -> Result<Self> {
        let options = crate::store::connect_options(&config)
            .map_err(core)?
            .journal_mode(SqliteJournalMode::Wal);
        let deadline = Instant::now() + config.retry_deadline;
        let mut backoff = Backoff::new(deadline);
        let mut conn = loop {
            match options.connect().await {
                Ok(conn) => break conn,
                Err(e) if crate::error::is_busy(&e) => {
                    backoff.wait(e.into()).await.map_err(gave_up)?
                }
                Err(e) => return Err(storage(e)),
            }
        };
        let mut backoff = Backoff::new(deadline);
        loop {
            match schema::migrate(&mut conn, schema::MIGRATIONS).await {
                Ok(_) => break,
                Err(e) if e.is_busy() => backoff.wait(e).await.map_err(gave_up)?,
                Err(e) => return Err(core(e.into())),
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
            config,
        })
    }

    async fn write_once(
        conn: &mut SqliteConnection,
        records: &[&UsageRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> std::result::Result<WriteSummary, sqlx::Error> {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let mut summary = WriteSummary::default();
        let full = records.len() / ROWS_PER_STATEMENT * ROWS_PER_STATEMENT;
        let (head, tail) = records.split_at(full);
        let chunks = head
            .chunks(ROWS_PER_STATEMENT)
            .map(|c| (UPSERT_FULL.as_str(), c))
            .chain(tail.chunks(1).map(|c| (UPSERT_ONE.as_str(), c)));
        for (sql, chunk) in chunks {
            let mut query = sqlx::query_scalar::<_, i64>(sql);
            for r in chunk {
                let u = &r.usage;
                query = query
                    .bind(&r.key)
                    .bind(&r.source)
                    .bind(&r.machine)
                    .bind(&r.session_id)
                    .bind(&r.project)
                    .bind(&r.model)
                    .bind(r.timestamp)
                    .bind(int(u.input))
                    .bind(int(u.output))
                    .bind(int(u.cache_write_5m))
                    .bind(int(u.cache_write_1h))
                    .bind(int(u.cache_read))
                    .bind(int(u.web_search_requests))
                    .bind(int(u.web_fetch_requests))
                    .bind(&r.raw_usage)
                    .bind(&r.file)
                    .bind(int(r.offset))
                    .bind(r.estimated)
                    .bind(&r.budget);
            }
            for revision in query.fetch_all(&mut *tx).await? {
                if revision == 0 {
                    summary.inserted += 1;
                } else {
                    summary.replaced += 1;
                }
            }
        }
        // Rule 6, in this transaction: whichever of a bare record and its sibling arrives
        // second marks the bare one (writers take turns on the database's write lock).
        let bare = json_keys(
            records
                .iter()
                .flat_map(|r| dedup::shadowed_by(&r.key))
                .collect::<BTreeSet<_>>(),
        );
        if bare != "[]" {
            sqlx::query(MARK_SHADOWED)
                .bind(&bare)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(MARK_SELF_SHADOWED)
            .bind(json_keys(records.iter().map(|r| r.key.as_str())))
            .execute(&mut *tx)
            .await?;
        if let Some(cp) = checkpoint {
            sqlx::query(CHECKPOINT_SQL)
                .bind(&cp.file)
                .bind(int(cp.dev))
                .bind(int(cp.inode))
                .bind(int(cp.size))
                .bind(cp.mtime_ns)
                .bind(int(cp.offset))
                .bind(&cp.head_hash)
                .bind(&cp.tail_hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(summary)
    }
}

fn checkpoint_row(row: &SqliteRow) -> std::result::Result<Checkpoint, sqlx::Error> {
    Ok(Checkpoint {
        file: row.try_get("file")?,
        dev: uint(row.try_get("dev")?),
        inode: uint(row.try_get("inode")?),
        size: uint(row.try_get("size")?),
        mtime_ns: row.try_get("mtime_ns")?,
        offset: uint(row.try_get("line_offset")?),
        head_hash: row.try_get("head_hash")?,
        tail_hash: row.try_get("tail_hash")?,
    })
}

fn record_row(row: &SqliteRow, with_raw: bool) -> std::result::Result<UsageRecord, sqlx::Error> {
    let n = |c: &str| row.try_get::<i64, _>(c).map(uint);
    Ok(UsageRecord {
        key: row.try_get("dedup_key")?,
        source: row.try_get("source")?,
        machine: row.try_get("machine")?,
        session_id: row.try_get("session_id")?,
        project: row.try_get("project")?,
        model: row.try_get("model")?,
        timestamp: row.try_get("ts")?,
        usage: usage_row(row)?,
        raw_usage: if with_raw {
            row.try_get("raw_usage")?
        } else {
            String::new()
        },
        file: row.try_get("file")?,
        offset: n("line_offset")?,
        estimated: row.try_get("estimated")?,
        budget: row.try_get("budget")?,
    })
}

#[async_trait]
impl UsageStore for SqliteUsageStore {
    async fn write(
        &self,
        records: &[UsageRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<WriteSummary> {
        validate(records)?;
        // One row per key, as if written one by one (rule 2 is commutative), so one
        // statement never touches a row twice and the counts are per key.
        let merged = dedup::unique_by_key(records);
        let rows: Vec<&UsageRecord> = merged.iter().map(|r| &**r).collect();
        let mut conn = self.conn.lock().await;
        let mut backoff = Backoff::new(Instant::now() + self.config.retry_deadline);
        loop {
            match Self::write_once(&mut conn, &rows, checkpoint).await {
                Ok(mut summary) => {
                    summary.unchanged = records.len() as u64 - summary.inserted - summary.replaced;
                    return Ok(summary);
                }
                Err(e) if crate::error::is_busy(&e) => {
                    backoff.wait(e.into()).await.map_err(gave_up)?;
                }
                Err(e) => return Err(storage(e)),
            }
        }
    }

    async fn shadowed(&self, keys: &[String]) -> Result<BTreeSet<String>> {
        if keys.is_empty() {
            return Ok(BTreeSet::new());
        }
        let mut conn = self.conn.lock().await;
        let found: Vec<String> = sqlx::query_scalar(SHADOWED_KEYS)
            .bind(json_keys(keys.iter().map(String::as_str)))
            .fetch_all(&mut *conn)
            .await
            .map_err(storage)?;
        Ok(found.into_iter().collect())
    }

    async fn checkpoint(&self, file: &str) -> Result<Option<Checkpoint>> {
        let mut conn = self.conn.lock().await;
        let row = sqlx::query("SELECT * FROM usage_checkpoints WHERE file = ?1")
            .bind(file)
            .fetch_optional(&mut *conn)
            .await
            .map_err(storage)?;
        row.as_ref()
            .map(checkpoint_row)
            .transpose()
            .map_err(storage)
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let mut conn = self.conn.lock().await;
        let rows = sqlx::query("SELECT * FROM usage_checkpoints ORDER BY file")
            .fetch_all(&mut *conn)
            .await
            .map_err(storage)?;
        rows.iter()
            .map(checkpoint_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(storage)
    }

    async fn records(&self, query: &RecordQuery) -> Result<Vec<UsageRecord>> {
        let raw = if query.without_raw { "" } else { ", raw_usage" };
        let sql = format!(
            "SELECT {RECORD_COLUMNS}{raw} FROM usage_records r
             WHERE ts >= ?1 AND ts < ?2 AND shadowed = 0 ORDER BY ts, dedup_key"
        );
        let mut conn = self.conn.lock().await;
        let rows = sqlx::query(&sql)
            .bind(query.since.unwrap_or(i64::MIN))
            .bind(query.until.unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await
            .map_err(storage)?;
        rows.iter()
            .map(|r| record_row(r, !query.without_raw))
            .collect::<std::result::Result<_, _>>()
            .map_err(storage)
    }

    async fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<AggregateRow>> {
        aggregate::validate(query)?;
        let sql = aggregate_sql(query);
        let mut conn = self.conn.lock().await;
        let rows = sqlx::query(&sql)
            .bind(query.since.unwrap_or(i64::MIN))
            .bind(query.until.unwrap_or(i64::MAX))
            .bind(&query.project)
            .bind(&query.model)
            .bind(&query.budget)
            .bind(&query.session)
            .fetch_all(&mut *conn)
            .await
            .map_err(storage)?;
        rows.iter()
            .map(aggregate_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::ConnectOptions;

    use super::*;

    /// Migration 8 marks the rows a sibling already shadows in a ledger written before it.
    #[tokio::test]
    async fn migration_8_back_fills_the_shadowed_flag() {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .in_memory(true)
            .connect()
            .await
            .unwrap();
        let before: Vec<_> = schema::MIGRATIONS
            .iter()
            .copied()
            .filter(|m| m.version < 8)
            .collect();
        schema::migrate(&mut conn, &before).await.unwrap();
        for key in [
            "msg_1",
            "msg_1:req_1",
            "msg_10",
            "msg_2",
            "a",
            "a:b",
            "a:b:c",
        ] {
            sqlx::query(
                "INSERT INTO usage_records (dedup_key, source, machine, session_id, project,
                    model, ts, input, output, cache_write_5m, cache_write_1h, cache_read,
                    web_search_requests, web_fetch_requests, raw_usage, file, line_offset)
                 VALUES (?1, 'claude-code', '', 's', 'p', 'm', 1, 1, 1, 0, 0, 0, 0, 0, '{}',
                    'f', 0)",
            )
            .bind(key)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        let applied = schema::migrate(&mut conn, schema::MIGRATIONS)
            .await
            .unwrap();
        assert_eq!(applied, [8]);
        let shadowed: Vec<String> = sqlx::query_scalar(
            "SELECT dedup_key FROM usage_records WHERE shadowed = 1 ORDER BY dedup_key",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(shadowed, ["a", "a:b", "msg_1"]);
    }
}
