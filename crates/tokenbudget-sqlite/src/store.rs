//! [`SqliteStore`]: opening, the one writer connection, and the `BudgetStore` methods.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Sqlite, SqliteConnection};
use tokenbudget_core::model::live_statuses;
use tokenbudget_core::rules::{
    ChargeCommand, CommitCommand, ExtendCommand, ReserveCommand, RollbackCommand, UpdateCommand,
};
use tokenbudget_core::{
    Budget, BudgetId, BudgetStore, Charge, ChargeOutcome, CommitOutcome, Error, Event, EventQuery,
    ExtendOutcome, IdempotencyKey, LogCursor, LogPage, NewBudget, RecentQuery, Reservation,
    ReservationId, ReservationQuery, ReserveOutcome, RollbackOutcome, Status, SweepOutcome,
    Timestamp,
};
use tokio::sync::{oneshot, Mutex, MutexGuard};

use crate::batch::{self, Job, Pending, MAX_BATCH};
use crate::config::{Config, Synchronous};
use crate::error::SqliteError;
use crate::ops::{self, Operation};
use crate::queue::WriterQueue;
use crate::retry::Backoff;
use crate::{schema, sql};

/// A [`BudgetStore`] in one SQLite database file (or one in-memory database).
///
/// Every writing operation runs in a `BEGIN IMMEDIATE` transaction on this store's single
/// writer connection, which operations of this process queue for; the operations queued at
/// once share one transaction and one commit (group commit). Reads use a separate pool (WAL
/// readers never wait for the writer). Other processes may open the same file: they take
/// turns through the writer queue ([`Config::writer_queue`]) and SQLite's write lock, and an
/// operation that finds the database locked past the busy timeout retries its whole
/// transaction until [`Config::retry_deadline`].
pub struct SqliteStore {
    writer: Arc<Mutex<SqliteConnection>>,
    /// Operations waiting for the writer connection, oldest first.
    pending: PendingQueue,
    /// `None` for an in-memory database: the writer connection serves reads too, so every
    /// caller sees the one database.
    readers: Option<SqlitePool>,
    /// Turn-taking with other processes; `None` in memory, when disabled or unavailable.
    queue: Option<WriterQueue>,
    config: Config,
    /// Checkpoints the log off the writer's path ([`Config::checkpoint_interval`]); stopped
    /// when the store is dropped.
    _checkpointer: Option<Checkpointer>,
}

/// The writer's own `wal_autocheckpoint` (in pages) when a [`Checkpointer`] runs: reached only
/// if the checkpointer falls behind.
const WRITER_CHECKPOINT_PAGES: &str = "10000";

/// The background task that checkpoints the write-ahead log; aborted on drop.
struct Checkpointer(tokio::task::JoinHandle<()>);

impl Checkpointer {
    /// Every `interval`, a `PASSIVE` checkpoint on a read connection: it copies what it can
    /// without waiting for readers or the writer, who go on meanwhile.
    fn spawn(readers: SqlitePool, interval: std::time::Duration) -> Self {
        Self(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&readers)
                    .await
                {
                    // Busy or failed: the next tick tries again, and the writer's own
                    // checkpoint is the backstop.
                    tracing::debug!(error = %e, "tokenbudget-sqlite: background checkpoint failed");
                }
            }
        }))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("url", &self.config.url)
            .field("synchronous", &self.config.synchronous)
            .field("in_memory", &self.readers.is_none())
            .field("writer_queue", &self.queue.is_some())
            .field("background_checkpoints", &self._checkpointer.is_some())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` with the default [`Config`], and
    /// migrates it to this build's schema.
    ///
    /// `url` is a path, a `sqlite:` URL (`sqlite://budgets.db`, `sqlite:///abs/budgets.db`) or
    /// `sqlite::memory:`.
    pub async fn open(url: &str) -> tokenbudget_core::Result<Self> {
        Self::open_with(Config::new(url)).await
    }

    /// Opens the database `config` names and migrates it to this build's schema.
    ///
    /// Errors: [`Error::Config`] for a URL that is not SQLite's; [`Error::Storage`] when the
    /// file cannot be opened or its schema is newer than this build knows.
    pub async fn open_with(config: Config) -> tokenbudget_core::Result<Self> {
        let options = connect_options(&config)?;
        let deadline = Instant::now() + config.retry_deadline;
        // Switching a new file to WAL takes an exclusive lock that the busy timeout does not
        // wait for, and migrating takes the write lock: several processes opening one new
        // file at once may see BUSY here, so both steps retry like any write.
        let mut writer_options = options.clone().journal_mode(SqliteJournalMode::Wal);
        if !config.checkpoint_interval.is_zero() {
            // The background checkpointer keeps the log short; this is the writer's backstop.
            writer_options = writer_options.pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES);
        }
        let mut backoff = Backoff::new(deadline);
        let mut writer = loop {
            match writer_options.connect().await {
                Ok(conn) => break conn,
                Err(e) if crate::error::is_busy(&e) => backoff.wait(e.into()).await?,
                Err(e) => return Err(SqliteError::from(e).into()),
            }
        };
        let file = database_file(&mut writer).await?;
        let in_memory = file.is_none();
        let queue = match &file {
            Some(file) if config.writer_queue => match WriterQueue::new(file) {
                Ok(queue) => Some(queue),
                Err(e) => {
                    tracing::warn!(error = %e, "tokenbudget-sqlite: no writer queue; relying on SQLite's lock alone");
                    None
                }
            },
            _ => None,
        };
        // A database already at this version needs no write lock: opening it never waits
        // behind other processes' writes.
        if schema::version(&mut writer).await? != schema::SCHEMA_VERSION {
            let turn = match &queue {
                Some(queue) => queue.enter(deadline).await,
                None => None,
            };
            loop {
                match schema::migrate(&mut writer, schema::MIGRATIONS).await {
                    Ok(applied) => {
                        if !applied.is_empty() {
                            tracing::info!(url = %config.url, ?applied, "tokenbudget-sqlite: migrated");
                        }
                        break;
                    }
                    Err(e) if e.is_busy() => backoff.wait(e).await?,
                    Err(e) => return Err(e.into()),
                }
            }
            drop(turn);
        }
        let readers = if in_memory {
            None
        } else {
            let pool = SqlitePoolOptions::new()
                .max_connections(config.read_connections.max(1))
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(SqliteError::from)?;
            Some(pool)
        };
        let checkpointer = match &readers {
            Some(pool) if !config.checkpoint_interval.is_zero() => Some(Checkpointer::spawn(
                pool.clone(),
                config.checkpoint_interval,
            )),
            _ => None,
        };
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            pending: PendingQueue::default(),
            readers,
            queue,
            config,
            _checkpointer: checkpointer,
        })
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The schema version of the database (this build's [`SCHEMA_VERSION`](crate::SCHEMA_VERSION)
    /// once opened).
    pub async fn schema_version(&self) -> tokenbudget_core::Result<i64> {
        let mut conn = self.reader().await?;
        Ok(schema::version(&mut conn).await?)
    }

    /// Runs one writing operation: `BEGIN IMMEDIATE`, load, decide, write, commit, retried
    /// whole while other processes hold the database locked.
    ///
    /// The operation joins the queue for the writer connection. Whoever gets the connection
    /// runs everything queued by then as one transaction ([`batch`]) on a task of its own,
    /// and goes on while more arrives. Waiting in the queue can be cancelled (the operation
    /// then never starts); once its transaction has started it runs to its end even if the
    /// caller stops waiting, so no cancellation point inside sqlx can leave the connection
    /// in a stray transaction.
    async fn write<O: Operation>(&self, op: O) -> tokenbudget_core::Result<O::Outcome> {
        let (reply, answer) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(Box::new(Pending::new(op, reply)));
        // Operations of this process queue here, not in SQLite's sleeping busy handler. A
        // leader already running batches may answer before the connection is free.
        let mut answer = answer;
        let conn = tokio::select! {
            biased;
            result = &mut answer => return answered(result),
            conn = self.writer.clone().lock_owned() => conn,
        };
        if self.has_pending() {
            let (pending, queue) = (self.pending.clone(), self.queue.clone());
            let deadline = self.config.retry_deadline;
            tokio::spawn(async move {
                let mut conn = conn;
                loop {
                    let mut jobs = take_batch(&pending);
                    if jobs.is_empty() {
                        break;
                    }
                    let deadline = Instant::now() + deadline;
                    // Take turns with other processes, one batch per turn.
                    let turn = match &queue {
                        Some(queue) => queue.enter(deadline).await,
                        None => None,
                    };
                    batch::run(&mut conn, &mut jobs, Backoff::new(deadline)).await;
                    drop(turn);
                    for job in jobs {
                        job.reply();
                    }
                }
            });
        }
        // Else an earlier batch took this operation and has answered (or will).
        answered(answer.await)
    }

    fn has_pending(&self) -> bool {
        !self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }

    /// A connection for reading: from the pool, or the shared writer for an in-memory
    /// database.
    async fn reader(&self) -> Result<ReadConnection<'_>, SqliteError> {
        Ok(match &self.readers {
            Some(pool) => ReadConnection::Pooled(pool.acquire().await?),
            None => ReadConnection::Shared(self.writer.lock().await),
        })
    }
}

/// The answer a batch sent, or an error when its task ended without one (it panicked or the
/// runtime shut down).
fn answered<T>(
    answer: Result<tokenbudget_core::Result<T>, oneshot::error::RecvError>,
) -> tokenbudget_core::Result<T> {
    answer.unwrap_or_else(|_| {
        Err(SqliteError::Cancelled("the writer task ended without an answer".to_owned()).into())
    })
}

/// Up to [`MAX_BATCH`] queued operations whose callers still wait.
fn take_batch(pending: &PendingQueue) -> Vec<Box<dyn Job>> {
    let mut pending = pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut jobs = Vec::new();
    while jobs.len() < MAX_BATCH {
        let Some(job) = pending.pop_front() else {
            break;
        };
        if !job.is_cancelled() {
            jobs.push(job);
        }
    }
    jobs
}

type PendingQueue = Arc<std::sync::Mutex<VecDeque<Box<dyn Job>>>>;

enum ReadConnection<'a> {
    Pooled(PoolConnection<Sqlite>),
    Shared(MutexGuard<'a, SqliteConnection>),
}

impl std::ops::Deref for ReadConnection<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        match self {
            Self::Pooled(conn) => conn,
            Self::Shared(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for ReadConnection<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            Self::Pooled(conn) => conn,
            Self::Shared(conn) => conn,
        }
    }
}

/// The connect options for `config`: WAL is set on the writer only (readers find the file
/// already in WAL mode).
pub(crate) fn connect_options(config: &Config) -> tokenbudget_core::Result<SqliteConnectOptions> {
    let url = config.url.trim();
    // The scheme is case-insensitive (RFC 3986): `SQLITE::memory:` is `sqlite::memory:`, not a
    // file of that name.
    let normalized;
    let url = match url.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("sqlite:") => {
            normalized = format!("sqlite:{}", &url[7..]);
            normalized.as_str()
        }
        _ => url,
    };
    let options = if url == ":memory:" {
        SqliteConnectOptions::from_str("sqlite::memory:")
    } else if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url)
    } else if let Some((scheme, _)) = url.split_once("://") {
        return Err(Error::Config {
            message: format!(
                "{scheme}:// is not a SQLite URL: expected a path, sqlite://… or sqlite::memory:"
            ),
        });
    } else if url.is_empty() {
        return Err(Error::Config {
            message: "empty SQLite database path".to_owned(),
        });
    } else {
        Ok(SqliteConnectOptions::new().filename(url))
    };
    let options = options.map_err(|e| Error::Config {
        message: format!("SQLite URL {url:?}: {e}"),
    })?;
    Ok(options
        .create_if_missing(config.create_if_missing)
        .foreign_keys(true)
        .busy_timeout(config.busy_timeout)
        .synchronous(match config.synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Extra => SqliteSynchronous::Extra,
        }))
}

/// The main database's file; `None` in memory (`sqlite::memory:` in any spelling).
async fn database_file(conn: &mut SqliteConnection) -> Result<Option<PathBuf>, SqliteError> {
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(conn)
            .await?;
    Ok((!file.is_empty()).then(|| PathBuf::from(file)))
}

#[async_trait]
impl BudgetStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create_budget(
        &self,
        new: NewBudget,
        now: Timestamp,
    ) -> tokenbudget_core::Result<Budget> {
        self.write(ops::Create { new, now }).await
    }

    async fn reserve(
        &self,
        cmd: ReserveCommand,
        now: Timestamp,
    ) -> tokenbudget_core::Result<ReserveOutcome> {
        self.write(ops::Reserve { cmd, now }).await
    }

    async fn commit(
        &self,
        cmd: CommitCommand,
        now: Timestamp,
    ) -> tokenbudget_core::Result<CommitOutcome> {
        self.write(ops::Commit { cmd, now }).await
    }

    async fn rollback(
        &self,
        cmd: RollbackCommand,
        now: Timestamp,
    ) -> tokenbudget_core::Result<RollbackOutcome> {
        self.write(ops::Rollback { cmd, now }).await
    }

    async fn extend(
        &self,
        cmd: ExtendCommand,
        now: Timestamp,
    ) -> tokenbudget_core::Result<ExtendOutcome> {
        self.write(ops::Extend { cmd, now }).await
    }

    async fn charge(
        &self,
        cmd: ChargeCommand,
        now: Timestamp,
    ) -> tokenbudget_core::Result<ChargeOutcome> {
        self.write(ops::Charge { cmd, now }).await
    }

    async fn update_budget(
        &self,
        cmd: UpdateCommand,
        now: Timestamp,
    ) -> tokenbudget_core::Result<Budget> {
        self.write(ops::Update { cmd, now }).await
    }

    async fn reservations(
        &self,
        query: ReservationQuery,
    ) -> tokenbudget_core::Result<Vec<Reservation>> {
        let mut conn = self.reader().await?;
        Ok(sql::reservations(&mut conn, &query).await?)
    }

    async fn charge_by_key(
        &self,
        key: &IdempotencyKey,
    ) -> tokenbudget_core::Result<Option<Charge>> {
        let mut conn = self.reader().await?;
        Ok(sql::charge_by_key(&mut conn, key).await?)
    }

    /// One statement: the budget's chain and its tree's due holds with their chains, which
    /// holds every due hold made on the budget or under it.
    async fn status(
        &self,
        id: &BudgetId,
        now: Timestamp,
    ) -> tokenbudget_core::Result<Option<Status>> {
        let mut conn = self.reader().await?;
        let want = sql::Want {
            leaf: sql::Leaf::Budget(id),
            reservation: None,
            key: None,
            charge: None,
            now,
        };
        let loaded = sql::load(&mut conn, want).await?;
        drop(conn);
        Ok(live_statuses(loaded.budgets, &loaded.reservations, now)
            .into_iter()
            .find(|s| &s.id == id))
    }

    /// One statement: every budget and every due hold.
    async fn statuses(&self, now: Timestamp) -> tokenbudget_core::Result<Vec<Status>> {
        let mut conn = self.reader().await?;
        let (budgets, due) = sql::everything_due(&mut conn, now).await?;
        drop(conn);
        Ok(live_statuses(budgets, &due, now))
    }

    /// Writes are serialized (one write lock, sequence numbers taken under it, readers see
    /// whole commits), so the log's order is `seq` and `commit` is always 0; a cursor's
    /// `commit` is not looked at.
    async fn log_after(&self, after: LogCursor, limit: usize) -> tokenbudget_core::Result<LogPage> {
        let query = EventQuery {
            budget_id: None,
            after_seq: after.seq,
            limit,
        };
        let mut conn = self.reader().await?;
        let events = sql::events(&mut conn, &query).await?;
        drop(conn);
        let next = events.last().map_or(after, |e| LogCursor {
            commit: 0,
            seq: e.seq,
        });
        Ok(LogPage { events, next })
    }

    async fn sweep_expired(
        &self,
        now: Timestamp,
        max: usize,
    ) -> tokenbudget_core::Result<SweepOutcome> {
        self.write(ops::Sweep { now, max }).await
    }

    async fn budget(&self, id: &BudgetId) -> tokenbudget_core::Result<Option<Budget>> {
        let mut conn = self.reader().await?;
        Ok(sql::budget_by_id(&mut conn, id).await?)
    }

    async fn list_budgets(&self) -> tokenbudget_core::Result<Vec<Budget>> {
        let mut conn = self.reader().await?;
        Ok(sql::all_budgets(&mut conn).await?)
    }

    async fn reservation(
        &self,
        id: ReservationId,
    ) -> tokenbudget_core::Result<Option<Reservation>> {
        let mut conn = self.reader().await?;
        Ok(sql::reservation_by_id(&mut conn, id).await?)
    }

    async fn recent_events(&self, query: RecentQuery) -> tokenbudget_core::Result<Vec<Event>> {
        let mut conn = self.reader().await?;
        Ok(sql::recent_events(&mut conn, &query).await?)
    }

    async fn events(&self, query: EventQuery) -> tokenbudget_core::Result<Vec<Event>> {
        let mut conn = self.reader().await?;
        Ok(sql::events(&mut conn, &query).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_is_a_send_future() {
        // sqlx futures can lose `Send` behind higher-ranked lifetimes; a store opened inside
        // `tokio::spawn` or an `async_trait` method needs it.
        fn send<T: Send>(_: T) {}
        send(SqliteStore::open_with(Config::default()));
    }
}
