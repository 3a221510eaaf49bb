//! [`PostgresStore`]: the pool, the migrations at open, and the [`BudgetStore`] methods, each
//! an operation of [`ops`](crate::ops) run by [`tx`](crate::tx).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokenbudget_core::rules::{
    ChargeCommand, CommitCommand, ExtendCommand, ReserveCommand, RollbackCommand,
};
use tokenbudget_core::{
    Budget, BudgetId, BudgetStore, ChargeOutcome, CommitOutcome, Event, EventQuery, ExtendOutcome,
    IdempotencyKey, LogCursor, LogPage, NewBudget, Reservation, ReservationId, ReserveOutcome,
    Result, RollbackOutcome, Status, SweepOutcome, Timestamp,
};

use crate::config::{redact, Config};
use crate::error::PgError;
use crate::gate::{Gate, Target};
use crate::ops::{Charge, Commit, Create, Extend, Read, Reserve, Rollback, Sweep};
use crate::pool::{self, PoolStatus};
use crate::schema;
use crate::tx::{self, Op, Retry, Shared};

/// Budgets, reservations and events in PostgreSQL, shared by any number of processes.
///
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
}

impl PostgresStore {
    /// Opens the store: builds the pool, then creates the schema and applies missing
    /// migrations under an advisory lock (so instances starting together do not race).
    ///
    /// Errors: [`Error::Config`](tokenbudget_core::Error::Config) for an invalid configuration; a
    /// retryable [`Error::Storage`](tokenbudget_core::Error::Storage) when the database cannot be
    /// reached.
    pub async fn open_with(config: Config) -> Result<Self> {
        // Re-applying the URL moves a `schema=` parameter of a deserialized URL into `schema`.
        let url = config.url.clone();
        let config = config.with_url(url);
        config.validate()?;
        let pool = pool::build(&config)?;
        let gate = Arc::new(Gate::new(config.root_concurrency));
        let shared = Arc::new(Shared { pool, config, gate });
        let mut retry = Retry::default();
        loop {
            match migrate(&shared).await {
                Ok(()) => break,
                Err(e) if e.is_transient() && retry.attempt + 1 < shared.config.max_attempts => {
                    tracing::debug!(error = %e, "opening the store: retrying");
                    tokio::time::sleep(tx::backoff(&shared.config, retry.attempt)).await;
                    retry.attempt += 1;
                }
                Err(e) => return Err(e.into_core(true)),
            }
        }
        Ok(Self { shared })
    }

    /// Opens the store at `url` with the defaults (see [`Config::new`]).
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(Config::new(url)?).await
    }

    /// Opens the store at `TOKENBUDGET_DATABASE_URL` (see [`Config::from_env`]).
    pub async fn from_env() -> Result<Self> {
        Self::open_with(Config::from_env()?).await
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The pool's occupancy now.
    pub fn pool_status(&self) -> PoolStatus {
        self.shared.pool.status().into()
    }

    /// Closes the pool: idle connections are closed now, the others when their operation
    /// ends; later operations fail.
    pub fn close(&self) {
        self.shared.pool.close();
    }

    /// Runs a writing operation in its own task (see [`tx`](crate::tx) on cancellation), after
    /// waiting for its turn on `target`'s budget tree (see [`gate`](crate::gate)).
    async fn write<O: Op>(&self, target: Option<Target<'_>>, op: O) -> Result<O::Output> {
        let safe = op.safe_to_repeat();
        let pass = match target {
            Some(target) => {
                let wait = self.shared.config.wait_timeout;
                self.shared
                    .gate
                    .enter(target, wait)
                    .await
                    .map_err(|()| PgError::Busy(wait).into_core(safe))?
            }
            None => None,
        };
        tx::spawn(self.shared.clone(), op, pass)
            .await
            .map_err(|e| e.into_core(safe))
    }

    /// Runs a commit or rollback of reservation `id` in its turn on the reservation's tree. The
    /// gate then forgets the reservation, unless the operation failed in a way a retry may fix.
    async fn settle<O: Op>(&self, id: ReservationId, op: O) -> Result<O::Output> {
        let result = self.write(Some(Target::Reservation(id)), op).await;
        if result.as_ref().map_or_else(|e| !e.is_retryable(), |_| true) {
            self.shared.gate.settled(id);
        }
        result
    }

    /// Runs a read: no transaction, so it may run in the caller's task.
    async fn read<O: Op>(&self, op: O) -> Result<O::Output> {
        tx::run(self.shared.clone(), op)
            .await
            .map_err(|e| e.into_core(true))
    }
}

async fn migrate(shared: &Shared) -> Result<(), PgError> {
    let mut object = shared.pool.get().await?;
    schema::migrate(&mut object, &shared.config.schema).await?;
    Ok(())
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &redact(&self.shared.config.url))
            .field("schema", &self.shared.config.schema)
            .field("pool", &self.pool_status())
            .finish()
    }
}

#[async_trait]
impl BudgetStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn create_budget(&self, new: NewBudget, now: Timestamp) -> Result<Budget> {
        self.write(None, Create::new(new, now)).await
    }

    async fn reserve(&self, cmd: ReserveCommand, now: Timestamp) -> Result<ReserveOutcome> {
        let (id, budget) = (cmd.reservation_id, cmd.budget_id.clone());
        let outcome = self
            .write(Some(Target::Budget(&budget)), Reserve { cmd, now })
            .await?;
        if let ReserveOutcome::Granted(grant) = &outcome {
            if !grant.replayed {
                self.shared.gate.granted(id, &budget);
            }
        }
        Ok(outcome)
    }

    async fn commit(&self, cmd: CommitCommand, now: Timestamp) -> Result<CommitOutcome> {
        self.settle(cmd.reservation_id, Commit { cmd, now }).await
    }

    async fn rollback(&self, cmd: RollbackCommand, now: Timestamp) -> Result<RollbackOutcome> {
        self.settle(cmd.reservation_id, Rollback { cmd, now }).await
    }

    async fn extend(&self, cmd: ExtendCommand, now: Timestamp) -> Result<ExtendOutcome> {
        let id = cmd.reservation_id;
        self.write(Some(Target::Reservation(id)), Extend { cmd, now })
            .await
    }

    async fn charge(&self, cmd: ChargeCommand, now: Timestamp) -> Result<ChargeOutcome> {
        let budget = cmd.budget_id.clone();
        self.write(Some(Target::Budget(&budget)), Charge { cmd, now })
            .await
    }

    async fn charge_by_key(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<tokenbudget_core::Charge>> {
        self.read(Read::Charge(key.clone())).await.map(|r| r.charge)
    }

    async fn status(&self, id: &BudgetId, now: Timestamp) -> Result<Option<Status>> {
        self.read(Read::Status(id.clone(), now))
            .await
            .map(|r| r.statuses.into_iter().next())
    }

    async fn statuses(&self, now: Timestamp) -> Result<Vec<Status>> {
        self.read(Read::Statuses(now)).await.map(|r| r.statuses)
    }

    /// In (transaction id, seq) order, and only below the oldest transaction still running
    /// on the server (see the crate docs): `commit` is the writing transaction's id.
    async fn log_after(&self, after: LogCursor, limit: usize) -> Result<LogPage> {
        let after = (after.commit, after.seq);
        let read = self.read(Read::Log { after, limit }).await?;
        let (commit, seq) = read.next;
        Ok(LogPage {
            events: read.events,
            next: LogCursor { commit, seq },
        })
    }

    async fn sweep_expired(&self, now: Timestamp, max: usize) -> Result<SweepOutcome> {
        if max == 0 {
            return Ok(SweepOutcome::default());
        }
        self.write(None, Sweep { now, max }).await
    }

    async fn budget(&self, id: &BudgetId) -> Result<Option<Budget>> {
        self.read(Read::Budget(id.clone()))
            .await
            .map(|r| r.budgets.into_iter().next())
    }

    async fn list_budgets(&self) -> Result<Vec<Budget>> {
        self.read(Read::Budgets).await.map(|r| r.budgets)
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>> {
        self.read(Read::Reservation(id))
            .await
            .map(|r| r.reservation)
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<Event>> {
        self.read(Read::Events(query)).await.map(|r| r.events)
    }
}
