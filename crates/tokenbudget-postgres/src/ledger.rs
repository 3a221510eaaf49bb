//! [`PostgresUsageStore`]: the usage ledger in the same Postgres schema as the budgets.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokenbudget_ledger::aggregate::{self, AggregateQuery, AggregateRow};
use tokenbudget_ledger::checkpoint::Checkpoint;
use tokenbudget_ledger::{
    dedup, validate, Error, RecordQuery, Result, Usage, UsageRecord, UsageStore, WriteSummary,
};
use tokio_postgres::Row;

use crate::config::{redact, Config};
use crate::error::PgError;
use crate::{pool, schema, tx};

/// A [`UsageStore`] in PostgreSQL, beside the budgets (tables `usage_records` and
/// `usage_checkpoints` in the store's schema, migrations 3, 5, 6 and 8).
///
/// Each [`UsageStore::write`] is one transaction: first the advisory locks of the batch's
/// key roots (so writers of keys that can shadow each other by rule 6 take turns), then the
/// batch's records (merged by key first, which the merge rule makes equivalent to writing
/// them one by one) in one multi-row upsert in key order, the `shadowed` flags they set, and
/// the checkpoint. Concurrent writers of one key also wait for each other's row lock, and
/// the upsert's condition is evaluated on the newest row, so they converge; a deadlock or
/// serialization failure repeats the whole transaction, which is always safe (merging is
/// idempotent).
#[derive(Clone)]
pub struct PostgresUsageStore {
    pool: Pool,
    config: Config,
}

impl fmt::Debug for PostgresUsageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUsageStore")
            .field("url", &redact(&self.config.url))
            .field("schema", &self.config.schema)
            .finish()
    }
}

fn storage(e: PgError) -> Error {
    let retryable = e.is_transient();
    Error::storage(e, retryable)
}

fn pg(e: tokio_postgres::Error) -> PgError {
    PgError::pg(e)
}

/// Where a candidate (`excluded`) supersedes the stored row: the SQL twin of
/// `tokenbudget_ledger::dedup::rank` (the compared text columns are `COLLATE "C"`).
const SUPERSEDES: &str = "(excluded.output, excluded.input, excluded.cache_write_5m,
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
const LABELS_GROW: &str = r#"excluded.project COLLATE "C" > usage_records.project COLLATE "C"
    OR excluded.session_id COLLATE "C" > usage_records.session_id COLLATE "C""#;

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
            "{c} = CASE WHEN excluded.{c} COLLATE \"C\" > usage_records.{c} COLLATE \"C\" THEN excluded.{c} \
             ELSE usage_records.{c} END"
        ));
    }
    set.push("revision = usage_records.revision + 1".to_owned());
    set.join(",\n")
}

fn upsert_sql() -> String {
    let set = set_list();
    format!(
        "INSERT INTO usage_records (dedup_key, source, machine, session_id, project, model, ts,
            input, output, cache_write_5m, cache_write_1h, cache_read, web_search_requests,
            web_fetch_requests, raw_usage, file, line_offset, estimated, budget)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],
            $12::int8[], $13::int8[], $14::int8[], $15::text[], $16::text[], $17::int8[],
            $18::bool[], $19::text[])
         ON CONFLICT (dedup_key) DO UPDATE SET {set}
         WHERE ({SUPERSEDES}) OR ({BUDGET_GROWS}) OR ({LABELS_GROW})
         RETURNING revision"
    )
}

const CHECKPOINT_SQL: &str = "INSERT INTO usage_checkpoints
        (file, dev, inode, size, mtime_ns, line_offset, head_hash, tail_hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (file) DO UPDATE SET dev = excluded.dev, inode = excluded.inode,
        size = excluded.size, mtime_ns = excluded.mtime_ns,
        line_offset = excluded.line_offset, head_hash = excluded.head_hash,
        tail_hash = excluded.tail_hash
     WHERE NOT (usage_checkpoints.dev = excluded.dev AND usage_checkpoints.inode = excluded.inode
        AND usage_checkpoints.head_hash = excluded.head_hash
        AND usage_checkpoints.line_offset > excluded.line_offset)";

/// Rule 6 when writing, first half: marks the stored records that the written keys shadow
/// (`$1`: [`dedup::shadowed_by`] of every written key).
const MARK_SHADOWED: &str = "UPDATE usage_records SET shadowed = true
     WHERE NOT shadowed AND dedup_key = ANY($1::text[])";

/// Rule 6 when writing, second half: marks the written records (`$1`) that a stored record
/// shadows: a key in `(key + ":", key + ";")`, one range probe of the primary key each.
const MARK_SELF_SHADOWED: &str = "UPDATE usage_records r SET shadowed = true
     WHERE NOT r.shadowed AND r.dedup_key = ANY($1::text[])
       AND EXISTS (SELECT 1 FROM usage_records s
                    WHERE s.dedup_key > r.dedup_key || ':' AND s.dedup_key < r.dedup_key || ';')";

/// [`UsageStore::shadowed`]: of the keys in `$1`, those a stored key shadows.
const SHADOWED_KEYS: &str = r#"SELECT k FROM unnest($1::text[]) AS k
     WHERE EXISTS (SELECT 1 FROM usage_records s
                    WHERE s.dedup_key > (k COLLATE "C") || ':'
                      AND s.dedup_key < (k COLLATE "C") || ';')"#;

/// The advisory locks a write takes first, in ascending order (`$1`: the class, `$2`: the
/// keys, sorted): one per [`lock_key`] of the written keys' roots.
const LOCK_ROOTS: &str = "SELECT pg_advisory_xact_lock($1, k)
     FROM (SELECT k FROM unnest($2::int4[]) AS k ORDER BY k) AS sorted";

/// The first key of the ledger's advisory locks (`'tkbl'`), apart from the migration's.
const LOCK_CLASS: i32 = 0x746b_626c;

/// How many locks a write may take: the roots are hashed into this many, so a batch of
/// thousands of records takes a bounded number of entries in the server's lock table.
const LOCK_SLOTS: u32 = 256;

/// FNV-1a, 32 bits: a hash that is the same in every process and build (two importers must
/// agree on the lock of a root).
fn fnv32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The advisory lock of the writers of `key`'s [root](dedup::root) in `schema`: keys that
/// can shadow each other share a root, so their writers take turns, and the flag is set by
/// whichever commits second. Other schemas lock other keys (up to hash collisions, which
/// only make a writer wait).
fn lock_key(schema: &str, key: &str) -> i32 {
    let slot = fnv32(dedup::root(key).as_bytes()) % LOCK_SLOTS;
    (fnv32(schema.as_bytes()) & !(LOCK_SLOTS - 1) | slot) as i32
}

/// The `SELECT … GROUP BY` of [`UsageStore::aggregate`]: bucket and key expressions are
/// built from the query's shape (integers only, never its text, which is bound as $3…$6);
/// the time range is $1, $2. Keys are `COLLATE "C"` so rows sort bytewise, as Rust does;
/// the prompt is summed as `numeric` (no overflow), and a `SUM` that does not fit an `int8`
/// is Postgres's "bigint out of range" error.
fn aggregate_sql(query: &AggregateQuery) -> String {
    let width = i64::from(query.bucket_seconds) * 1_000_000;
    let bucket = if width > 0 {
        format!("ts - (((ts % {width}) + {width}) % {width})")
    } else {
        "NULL::int8".to_owned()
    };
    let g = query.group;
    let key = |on: bool, column: &str| {
        if on {
            format!("{column} COLLATE \"C\"")
        } else {
            "''::text COLLATE \"C\"".to_owned()
        }
    };
    let tiers = aggregate::tiers_descending(query);
    let tier = if tiers.is_empty() {
        "NULL::int8".to_owned()
    } else {
        let whens: String = tiers
            .iter()
            .map(|t| {
                format!(
                    " WHEN input::numeric + cache_write_5m + cache_write_1h + cache_read > {t} \
                     THEN {t}::int8"
                )
            })
            .collect();
        format!("CASE{whens} ELSE NULL::int8 END")
    };
    format!(
        "SELECT {bucket} AS bucket, {model} AS model, {project} AS project,
            {session} AS session_id, {budget} AS budget, {tier} AS prompt_above,
            SUM(input)::int8 AS input, SUM(output)::int8 AS output,
            SUM(cache_write_5m)::int8 AS cache_write_5m,
            SUM(cache_write_1h)::int8 AS cache_write_1h, SUM(cache_read)::int8 AS cache_read,
            SUM(web_search_requests)::int8 AS web_search_requests,
            SUM(web_fetch_requests)::int8 AS web_fetch_requests,
            COUNT(*) AS responses, MIN(ts) AS first, MAX(ts) AS last
         FROM usage_records r
         WHERE ts >= $1 AND ts < $2
           AND ($3::text IS NULL OR strpos(project, $3) > 0)
           AND ($4::text IS NULL OR strpos(model, $4) > 0)
           AND ($5::text IS NULL OR budget = $5)
           AND ($6::text IS NULL OR session_id = $6)
           AND NOT shadowed
         GROUP BY 1, 2, 3, 4, 5, 6
         ORDER BY 1, 2, 3, 4, 5 NULLS FIRST, 6 NULLS FIRST",
        model = key(g.model, "model"),
        project = key(g.project, "project"),
        session = key(g.session, "session_id"),
        budget = if g.budget {
            "budget"
        } else {
            "NULL::text COLLATE \"C\""
        },
    )
}

/// The usage counts of a row ([`Usage::from_columns`]).
fn usage_row(row: &Row) -> std::result::Result<Usage, tokio_postgres::Error> {
    Usage::from_columns(|c| row.try_get::<_, i64>(c).map(uint))
}

fn aggregate_row(row: &Row) -> std::result::Result<AggregateRow, tokio_postgres::Error> {
    let n = |c: &str| row.try_get::<_, i64>(c).map(uint);
    Ok(AggregateRow {
        bucket: row.try_get("bucket")?,
        model: row.try_get("model")?,
        project: row.try_get("project")?,
        session_id: row.try_get("session_id")?,
        budget: row.try_get("budget")?,
        prompt_above: row.try_get::<_, Option<i64>>("prompt_above")?.map(uint),
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

/// The batch as one array per column.
#[derive(Default)]
struct Columns {
    text: [Vec<String>; 8],
    ints: [Vec<i64>; 9],
    estimated: Vec<bool>,
    budget: Vec<Option<String>>,
    /// The stored keys the batch's keys may shadow ([`dedup::shadowed_by`]).
    bare: Vec<String>,
    /// The advisory locks of the batch's roots, sorted ([`lock_key`]).
    locks: Vec<i32>,
}

impl Columns {
    /// The columns of `records` (one per key, in key order: concurrent batches lock rows in
    /// the same order).
    fn of(records: &[std::borrow::Cow<'_, UsageRecord>], schema: &str) -> Self {
        let mut c = Columns::default();
        let bare: BTreeSet<&str> = records
            .iter()
            .flat_map(|r| dedup::shadowed_by(&r.key))
            .collect();
        c.bare = bare.into_iter().map(str::to_owned).collect();
        let locks: BTreeSet<i32> = records.iter().map(|r| lock_key(schema, &r.key)).collect();
        c.locks = locks.into_iter().collect();
        for r in records {
            let u = &r.usage;
            for (col, v) in c.text.iter_mut().zip([
                &r.key,
                &r.source,
                &r.machine,
                &r.session_id,
                &r.project,
                &r.model,
                &r.raw_usage,
                &r.file,
            ]) {
                col.push(v.clone());
            }
            for (col, v) in c.ints.iter_mut().zip([
                r.timestamp,
                int(u.input),
                int(u.output),
                int(u.cache_write_5m),
                int(u.cache_write_1h),
                int(u.cache_read),
                int(u.web_search_requests),
                int(u.web_fetch_requests),
                int(r.offset),
            ]) {
                col.push(v);
            }
            c.estimated.push(r.estimated);
            c.budget.push(r.budget.clone());
        }
        c
    }
}

impl PostgresUsageStore {
    /// Opens the ledger at `url` (schema from the URL's `schema=` or the default), creating
    /// the schema and applying missing migrations (budgets and ledger alike).
    pub async fn open(url: &str) -> tokenbudget_core::Result<Self> {
        Self::open_with(Config::new(url)?).await
    }

    /// Opens the ledger `config` names and migrates its schema.
    pub async fn open_with(config: Config) -> tokenbudget_core::Result<Self> {
        let url = config.url.clone();
        let config = config.with_url(url);
        config.validate()?;
        let pool = pool::build(&config, pool::Reuse::Checked)?;
        let mut attempt = 0;
        loop {
            let result = async {
                let mut object = pool.get().await?;
                schema::migrate(&mut object, &config.schema).await
            }
            .await;
            match result {
                Ok(_) => break,
                Err(e) if e.is_transient() && attempt + 1 < config.max_attempts => {
                    tokio::time::sleep(tx::backoff(&config, attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into_core(true)),
            }
        }
        Ok(Self { pool, config })
    }

    async fn write_once(
        &self,
        upsert: &str,
        columns: &Columns,
        checkpoint: Option<&Checkpoint>,
    ) -> std::result::Result<(u64, u64), PgError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let (mut inserted, mut replaced) = (0, 0);
        if !columns.text[0].is_empty() {
            // Rule 6 needs the writers of one root in turn: without it, two transactions
            // writing a bare key and its sibling at once would each miss the other's row.
            tx.execute(LOCK_ROOTS, &[&LOCK_CLASS, &columns.locks])
                .await
                .map_err(pg)?;
            let t = &columns.text;
            let i = &columns.ints;
            let rows = tx
                .query(
                    upsert,
                    &[
                        &t[0],
                        &t[1],
                        &t[2],
                        &t[3],
                        &t[4],
                        &t[5],
                        &i[0],
                        &i[1],
                        &i[2],
                        &i[3],
                        &i[4],
                        &i[5],
                        &i[6],
                        &i[7],
                        &t[6],
                        &t[7],
                        &i[8],
                        &columns.estimated,
                        &columns.budget,
                    ],
                )
                .await
                .map_err(pg)?;
            for row in rows {
                let revision: i64 = row.try_get(0).map_err(pg)?;
                if revision == 0 {
                    inserted += 1;
                } else {
                    replaced += 1;
                }
            }
            if !columns.bare.is_empty() {
                tx.execute(MARK_SHADOWED, &[&columns.bare])
                    .await
                    .map_err(pg)?;
            }
            tx.execute(MARK_SELF_SHADOWED, &[&columns.text[0]])
                .await
                .map_err(pg)?;
        }
        if let Some(cp) = checkpoint {
            tx.execute(
                CHECKPOINT_SQL,
                &[
                    &cp.file,
                    &int(cp.dev),
                    &int(cp.inode),
                    &int(cp.size),
                    &cp.mtime_ns,
                    &int(cp.offset),
                    &cp.head_hash,
                    &cp.tail_hash,
                ],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(|source| PgError::Postgres {
            source,
            while_committing: true,
        })?;
        Ok((inserted, replaced))
    }
}

fn checkpoint_row(row: &Row) -> std::result::Result<Checkpoint, tokio_postgres::Error> {
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

fn record_row(
    row: &Row,
    with_raw: bool,
) -> std::result::Result<UsageRecord, tokio_postgres::Error> {
    let n = |c: &str| row.try_get::<_, i64>(c).map(uint);
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
impl UsageStore for PostgresUsageStore {
    async fn write(
        &self,
        records: &[UsageRecord],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<WriteSummary> {
        validate(records)?;
        // One row per key (an upsert may not touch a row twice), in key order (concurrent
        // batches lock rows in the same order).
        let merged = dedup::unique_by_key(records);
        let columns = Columns::of(&merged, &self.config.schema);
        let upsert = upsert_sql();
        let mut attempt = 0;
        loop {
            match self.write_once(&upsert, &columns, checkpoint).await {
                Ok((inserted, replaced)) => {
                    return Ok(WriteSummary {
                        inserted,
                        replaced,
                        unchanged: records.len() as u64 - inserted - replaced,
                    })
                }
                // Repeating is always safe: merging is idempotent, even after an unknown
                // commit outcome.
                Err(e) if e.is_transient() && attempt + 1 < self.config.max_attempts => {
                    tokio::time::sleep(tx::backoff(&self.config, attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(storage(e)),
            }
        }
    }

    async fn shadowed(&self, keys: &[String]) -> Result<BTreeSet<String>> {
        if keys.is_empty() {
            return Ok(BTreeSet::new());
        }
        let client = self.pool.get().await.map_err(|e| storage(e.into()))?;
        let rows = client
            .query(SHADOWED_KEYS, &[&keys])
            .await
            .map_err(|e| storage(pg(e)))?;
        rows.iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(pg(e)))
    }

    async fn checkpoint(&self, file: &str) -> Result<Option<Checkpoint>> {
        let client = self.pool.get().await.map_err(|e| storage(e.into()))?;
        let row = client
            .query_opt("SELECT * FROM usage_checkpoints WHERE file = $1", &[&file])
            .await
            .map_err(|e| storage(pg(e)))?;
        row.as_ref()
            .map(checkpoint_row)
            .transpose()
            .map_err(|e| storage(pg(e)))
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let client = self.pool.get().await.map_err(|e| storage(e.into()))?;
        let rows = client
            .query("SELECT * FROM usage_checkpoints ORDER BY file", &[])
            .await
            .map_err(|e| storage(pg(e)))?;
        rows.iter()
            .map(checkpoint_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(pg(e)))
    }

    async fn records(&self, query: &RecordQuery) -> Result<Vec<UsageRecord>> {
        let raw = if query.without_raw { "" } else { ", raw_usage" };
        let sql = format!(
            "SELECT dedup_key, source, machine, session_id, project, model, ts, input, output,
                cache_write_5m, cache_write_1h, cache_read, web_search_requests,
                web_fetch_requests, file, line_offset, estimated, budget{raw}
             FROM usage_records WHERE ts >= $1 AND ts < $2 AND NOT shadowed
             ORDER BY ts, dedup_key"
        );
        let client = self.pool.get().await.map_err(|e| storage(e.into()))?;
        let rows = client
            .query(
                &sql,
                &[
                    &query.since.unwrap_or(i64::MIN),
                    &query.until.unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(|e| storage(pg(e)))?;
        rows.iter()
            .map(|r| record_row(r, !query.without_raw))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(pg(e)))
    }

    async fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<AggregateRow>> {
        aggregate::validate(query)?;
        let sql = aggregate_sql(query);
        let client = self.pool.get().await.map_err(|e| storage(e.into()))?;
        let rows = client
            .query(
                &sql,
                &[
                    &query.since.unwrap_or(i64::MIN),
                    &query.until.unwrap_or(i64::MAX),
                    &query.project,
                    &query.model,
                    &query.budget,
                    &query.session,
                ],
            )
            .await
            .map_err(|e| storage(pg(e)))?;
        rows.iter()
            .map(aggregate_row)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(pg(e)))
    }
}
