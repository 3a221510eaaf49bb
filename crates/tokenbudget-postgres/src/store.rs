//! [`PostgresStore`]: the pool, the migrations at open, and the [`BudgetStore`] methods, each
//! an operation of [`ops`](crate::ops) run by [`tx`](crate::tx).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokenbudget_core::rules::{
    ChargeCommand, CommitCommand, ExtendCommand, ReserveCommand, RollbackCommand, UpdateCommand,
};
use tokenbudget_core::{
    Budget, BudgetId, BudgetStore, ChargeOutcome, CommitOutcome, Event, EventQuery, ExtendOutcome,
    IdempotencyKey, LogCursor, LogPage, NewBudget, RecentQuery, Reservation, ReservationId,
    ReservationQuery, ReserveOutcome, Result, RollbackOutcome, Status, SweepOutcome, Timestamp,
};

use crate::batch::{fail_all, Answer, Answers, Batch, Cmd};
use crate::config::{redact, Config};
use crate::error::PgError;
use crate::gate::{Gate, Runner, Target};
use crate::ops::{Create, Read, Sweep, Update};
use crate::pool::{self, PoolStatus};
use crate::schema;
use crate::tx::{self, Op, Retry, Shared};

/// Budgets, reservations and events in PostgreSQL, shared by any number of processes.
///
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
    runner: Arc<dyn Runner>,
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
        let pool = pool::build(&config, pool::Reuse::Released)?;
        let gate = Arc::new(Gate::new(
            config.root_concurrency,
            config.max_batch,
            config.batch_leaders(),
        ));
        let shared = Arc::new(Shared { pool, config, gate });
        let runner: Arc<dyn Runner> = Arc::new(BatchRunner(shared.clone()));
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
        Ok(Self { shared, runner })
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

    /// Runs a write of a budget tree: batched with the others queued on `target`'s tree (see
    /// [`gate`](crate::gate)), each batch one transaction in a task of its own (see
    /// [`tx`](crate::tx) on cancellation).
    async fn submit(&self, target: Target<'_>, cmd: Cmd, now: Timestamp) -> Result<Answer> {
        self.shared.gate.run(&self.runner, target, cmd, now).await
    }

    /// Runs a commit, rollback or extend of reservation `id` on the reservation's tree. After a
    /// commit or rollback the gate forgets the reservation, unless the operation failed in a
    /// way a retry may fix.
    async fn settle(&self, id: ReservationId, cmd: Cmd, now: Timestamp) -> Result<Answer> {
        let forget = matches!(cmd, Cmd::Commit(_) | Cmd::Rollback(_));
        let result = self.submit(Target::Reservation(id), cmd, now).await;
        if forget && result.as_ref().map_or_else(|e| !e.is_retryable(), |_| true) {
            self.shared.gate.settled(id);
        }
        result
    }

    /// Runs a write that is not batched (create, sweep) in its own task.
    async fn write_alone<O: Op>(&self, op: O) -> Result<O::Output> {
        let safe = op.safe_to_repeat();
        tx::spawn(self.shared.clone(), op)
            .await
            .map_err(|e| e.into_core(safe))
    }

    /// Runs a read: no transaction, so it may run in the caller's task.
    async fn read<O: Op>(&self, op: O) -> Result<O::Output> {
        tx::run(self.shared.clone(), op)
            .await
            .map_err(|e| e.into_core(true))
    }
}

/// Runs the gate's batches: one [`Batch`] transaction each, in a task of its own.
struct BatchRunner(Arc<Shared>);

#[async_trait]
impl Runner for BatchRunner {
    async fn run(&self, cmds: Vec<(Cmd, Timestamp)>) -> Answers {
        let list: Vec<Cmd> = cmds.iter().map(|(cmd, _)| cmd.clone()).collect();
        match tx::spawn(self.0.clone(), Batch { cmds }).await {
            Ok(answers) => answers,
            Err(e) => fail_all(e, &list),
        }
    }
}

/// The answer of the kind asked for (a batch answers each command with its own kind).
fn expect<T>(answer: Answer, pick: fn(Answer) -> Option<T>) -> Result<T> {
    pick(answer).ok_or_else(|| {
        tokenbudget_core::Error::storage("postgres", false, "a batch answered with another kind")
    })
}

async fn migrate(shared: &Shared) -> Result<(), PgError> {
    let mut lease = pool::Lease::get(&shared.pool).await?;
    schema::migrate(&mut lease, &shared.config.schema).await?;
    // Only once migrated (its transactions ended); a failure drops the connection.
    lease.release();
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
        self.write_alone(Create::new(new, now)).await
    }

    async fn reserve(&self, cmd: ReserveCommand, now: Timestamp) -> Result<ReserveOutcome> {
        let (id, budget) = (cmd.reservation_id, cmd.budget_id.clone());
        let answer = self
            .submit(Target::Budget(&budget), Cmd::Reserve(cmd), now)
            .await?;
        let outcome = expect(answer, |a| match a {
            Answer::Reserve(outcome) => Some(outcome),
            _ => None,
        })?;
        if let ReserveOutcome::Granted(grant) = &outcome {
            if !grant.replayed {
                self.shared.gate.granted(id, &budget);
            }
        }
        Ok(outcome)
    }

    async fn commit(&self, cmd: CommitCommand, now: Timestamp) -> Result<CommitOutcome> {
        let answer = self
            .settle(cmd.reservation_id, Cmd::Commit(cmd), now)
            .await?;
        expect(answer, |a| match a {
            Answer::Commit(outcome) => Some(outcome),
            _ => None,
        })
    }

    async fn rollback(&self, cmd: RollbackCommand, now: Timestamp) -> Result<RollbackOutcome> {
        let answer = self
            .settle(cmd.reservation_id, Cmd::Rollback(cmd), now)
            .await?;
        expect(answer, |a| match a {
            Answer::Rollback(outcome) => Some(outcome),
            _ => None,
        })
    }

    async fn extend(&self, cmd: ExtendCommand, now: Timestamp) -> Result<ExtendOutcome> {
        let answer = self
            .settle(cmd.reservation_id, Cmd::Extend(cmd), now)
            .await?;
        expect(answer, |a| match a {
            Answer::Extend(outcome) => Some(outcome),
            _ => None,
        })
    }

    async fn charge(&self, cmd: ChargeCommand, now: Timestamp) -> Result<ChargeOutcome> {
        let budget = cmd.budget_id.clone();
        let answer = self
            .submit(Target::Budget(&budget), Cmd::Charge(cmd), now)
            .await?;
        expect(answer, |a| match a {
            Answer::Charge(outcome) => Some(outcome),
            _ => None,
        })
    }

    async fn update_budget(&self, cmd: UpdateCommand, now: Timestamp) -> Result<Budget> {
        self.write_alone(Update { cmd, now }).await
    }

    async fn reservations(&self, query: ReservationQuery) -> Result<Vec<Reservation>> {
        self.read(Read::Reservations(query))
            .await
            .map(|r| r.reservations)
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
        self.write_alone(Sweep { now, max }).await
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

    async fn recent_events(&self, query: RecentQuery) -> Result<Vec<Event>> {
        self.read(Read::Recent(query)).await.map(|r| r.events)
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<Event>> {
        self.read(Read::Events(query)).await.map(|r| r.events)
    }
}
