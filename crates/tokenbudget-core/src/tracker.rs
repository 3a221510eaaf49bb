//! The tracker: the API services call. It stamps commands with the injected clock and ids and
//! hands them to its store.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::id::{BudgetId, IdGenerator, IdempotencyKey, ReservationId, UuidV7Ids};
use crate::model::{Budget, NewBudget, Reservation, ReservationState, Status};
use crate::outcome::{
    ChargeOutcome, CommitOutcome, ExtendOutcome, ReserveOutcome, RollbackOutcome,
};
use crate::rules::{
    ChargeCommand, CommitCommand, ExtendCommand, ReserveCommand, RollbackCommand, UpdateCommand,
};
use crate::store::{DynBudgetStore, EventQuery, LogCursor, LogPage, ReservationQuery};
use crate::sweeper::SweeperHandle;
use crate::time::{Clock, SystemClock};

/// The reservation timeout when none is given: 5 minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How many expired reservations one sweep transaction releases.
const SWEEP_BATCH: usize = 256;

/// Options for one reserve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReserveOptions {
    /// How long the hold lasts. Defaults to the tracker's default timeout (5 minutes unless set).
    pub timeout: Option<Duration>,
    /// Makes a retry of this reserve return the first answer.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The reservation's id, chosen by the caller instead of the tracker's id generator, so
    /// that a reserve whose answer never arrived (a cancelled call, a lost connection) can be
    /// retried as the same reservation or rolled back by id. Must be new to the store: a
    /// reserve with an id already used for other parameters is an error.
    pub reservation_id: Option<ReservationId>,
    /// The model the amount was priced for, kept on the reservation (a `usd` budget's commit
    /// prices the actual usage with it).
    pub model: Option<String>,
    /// What the caller first asked to hold, when it lowered the amount to fit (the gateway
    /// clamping `max_tokens`): the grant appends `RESERVE_CLAMPED` with both amounts.
    pub asked: Option<u64>,
}

impl ReserveOptions {
    /// No timeout override, no idempotency key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Sets the model kept on the reservation (see [`ReserveOptions::model`]).
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Records the amount first asked for (see [`ReserveOptions::asked`]).
    pub fn with_asked(mut self, asked: u64) -> Self {
        self.asked = Some(asked);
        self
    }

    /// Sets the reservation's id (see [`ReserveOptions::reservation_id`]).
    pub fn with_reservation_id(mut self, id: ReservationId) -> Self {
        self.reservation_id = Some(id);
        self
    }
}

/// Keeps token spending inside budgets: `reserve -> commit | rollback`.
///
/// Cheap to clone; clones share the store, clock and id generator.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use tokenbudget_core::{MemoryStore, ReserveOptions, Tracker};
///
/// let tracker = Tracker::new(MemoryStore::shared());
/// tracker.create_workflow("wf-1", 10_000).await?;
/// tracker.create_phase("wf-1:draft", "wf-1", 4_000).await?;
///
/// let grant = tracker
///     .reserve("wf-1:draft", 1_500, ReserveOptions::new())
///     .await?
///     .into_result()
///     .expect("room on the phase and the workflow");
/// tracker.commit(grant.reservation.id, 1_234).await?;
///
/// let workflow = tracker.status("wf-1").await?;
/// assert_eq!((workflow.used, workflow.reserved), (1_234, 0));
/// # Ok::<(), tokenbudget_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Tracker {
    store: DynBudgetStore,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    default_timeout: Duration,
}

impl Tracker {
    /// A tracker over `store` with the system clock, UUIDv7 ids and a 5-minute default timeout.
    pub fn new(store: DynBudgetStore) -> Self {
        Self::builder(store).build()
    }

    /// A builder to inject the clock, id generator and default timeout.
    pub fn builder(store: DynBudgetStore) -> TrackerBuilder {
        TrackerBuilder {
            store,
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidV7Ids),
            default_timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The store.
    pub fn store(&self) -> &DynBudgetStore {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The timeout used when a reserve gives none.
    pub fn default_timeout(&self) -> Duration {
        self.default_timeout
    }

    /// Creates a budget from a full description.
    pub async fn create_budget(&self, new: NewBudget) -> Result<Budget> {
        self.store.create_budget(new, self.clock.now()).await
    }

    /// Creates a workflow budget (one with no parent).
    pub async fn create_workflow<I>(&self, id: I, limit: u64) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = Error>,
    {
        self.create_budget(NewBudget::workflow(id.try_into()?, limit))
            .await
    }

    /// Creates a phase budget under `parent` (or any budget under any other).
    pub async fn create_phase<I, P>(&self, id: I, parent: P, limit: u64) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = Error>,
        P: TryInto<BudgetId, Error = Error>,
    {
        self.create_budget(NewBudget::child(id.try_into()?, parent.try_into()?, limit))
            .await
    }

    /// Holds `tokens` on `budget` and every ancestor, or refuses naming the budget that lacked
    /// room. See [`rules::reserve`](crate::rules::reserve).
    pub async fn reserve<I>(
        &self,
        budget: I,
        tokens: u64,
        options: ReserveOptions,
    ) -> Result<ReserveOutcome>
    where
        I: TryInto<BudgetId, Error = Error>,
    {
        let cmd = ReserveCommand {
            reservation_id: options
                .reservation_id
                .unwrap_or_else(|| self.ids.reservation_id()),
            budget_id: budget.try_into()?,
            tokens,
            timeout: options.timeout.unwrap_or(self.default_timeout),
            idempotency_key: options.idempotency_key,
            model: options.model,
            asked: options.asked,
        };
        self.store.reserve(cmd, self.clock.now()).await
    }

    /// Records a reservation's actual usage. See [`rules::commit`](crate::rules::commit).
    pub async fn commit(
        &self,
        reservation_id: ReservationId,
        actual: u64,
    ) -> Result<CommitOutcome> {
        let cmd = CommitCommand {
            reservation_id,
            actual,
        };
        self.store.commit(cmd, self.clock.now()).await
    }

    /// Releases a reservation's hold. See [`rules::rollback`](crate::rules::rollback).
    pub async fn rollback(&self, reservation_id: ReservationId) -> Result<RollbackOutcome> {
        let cmd = RollbackCommand { reservation_id };
        self.store.rollback(cmd, self.clock.now()).await
    }

    /// Pushes a held reservation's expiry to `timeout` from now (never earlier than it is).
    /// See [`rules::extend`](crate::rules::extend).
    pub async fn extend(
        &self,
        reservation_id: ReservationId,
        timeout: Duration,
    ) -> Result<ExtendOutcome> {
        let cmd = ExtendCommand {
            reservation_id,
            timeout,
        };
        self.store.extend(cmd, self.clock.now()).await
    }

    /// Records `tokens` used on `budget` and its ancestors with no reservation, once per
    /// `key`. See [`rules::charge`](crate::rules::charge).
    pub async fn charge<I>(
        &self,
        budget: I,
        tokens: u64,
        key: IdempotencyKey,
        note: Option<String>,
    ) -> Result<ChargeOutcome>
    where
        I: TryInto<BudgetId, Error = Error>,
    {
        let cmd = ChargeCommand {
            key,
            budget_id: budget.try_into()?,
            tokens,
            note,
        };
        self.store.charge(cmd, self.clock.now()).await
    }

    /// Applies an update (limit, closed) to a budget. See
    /// [`rules::update_budget`](crate::rules::update_budget).
    pub async fn update_budget(&self, cmd: UpdateCommand) -> Result<Budget> {
        self.store.update_budget(cmd, self.clock.now()).await
    }

    /// Changes a budget's limit (raised or lowered). See
    /// [`rules::update_budget`](crate::rules::update_budget).
    pub async fn update_limit<I>(&self, budget: I, limit: u64) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = Error>,
    {
        let cmd = UpdateCommand::new(budget.try_into()?).limit(limit);
        self.store.update_budget(cmd, self.clock.now()).await
    }

    /// Closes a budget to new reservations (held ones may still commit or roll back).
    pub async fn close<I>(&self, budget: I) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = Error>,
    {
        let cmd = UpdateCommand::new(budget.try_into()?).closed(true);
        self.store.update_budget(cmd, self.clock.now()).await
    }

    /// Reopens a closed budget.
    pub async fn reopen<I>(&self, budget: I) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = Error>,
    {
        let cmd = UpdateCommand::new(budget.try_into()?).closed(false);
        self.store.update_budget(cmd, self.clock.now()).await
    }

    /// Reservations on `budget` and below it (all with `None`), in `state` as seen now (any
    /// with `None`), ordered by id, after `after`, at most `limit`.
    pub async fn reservations(
        &self,
        budget: Option<BudgetId>,
        state: Option<ReservationState>,
        after: Option<ReservationId>,
        limit: usize,
    ) -> Result<Vec<Reservation>> {
        if let Some(id) = &budget {
            if self.store.budget(id).await?.is_none() {
                return Err(Error::BudgetNotFound { id: id.clone() });
            }
        }
        let query = ReservationQuery {
            budget_id: budget,
            state,
            now: self.clock.now(),
            after,
            limit,
        };
        self.store.reservations(query).await
    }

    /// A budget's live status: holds past their expiry are not counted, whether or not a
    /// write has released them yet.
    pub async fn status<I>(&self, budget: I) -> Result<Status>
    where
        I: TryInto<BudgetId, Error = Error>,
    {
        let id = budget.try_into()?;
        match self.store.status(&id, self.clock.now()).await? {
            Some(status) => Ok(status),
            None => Err(Error::BudgetNotFound { id }),
        }
    }

    /// Every budget's live status, ordered by id.
    pub async fn list(&self) -> Result<Vec<Status>> {
        self.store.statuses(self.clock.now()).await
    }

    /// Up to `limit` events of the whole log after `after`; pass the page's `next` to read
    /// on. A reader looping on it sees every event exactly once.
    pub async fn log_after(&self, after: LogCursor, limit: usize) -> Result<LogPage> {
        self.store.log_after(after, limit).await
    }

    /// A budget's events with `seq > after_seq`, in order.
    pub async fn events<I>(&self, budget: I, after_seq: u64) -> Result<Vec<Event>>
    where
        I: TryInto<BudgetId, Error = Error>,
    {
        let id = budget.try_into()?;
        if self.store.budget(&id).await?.is_none() {
            return Err(Error::BudgetNotFound { id });
        }
        self.store.events(EventQuery::budget(id, after_seq)).await
    }

    /// Releases every reservation expired by now; returns how many were released.
    pub async fn sweep_expired(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut total = 0;
        loop {
            let swept = self.store.sweep_expired(now, SWEEP_BATCH).await?;
            total += swept.released.len();
            if swept.released.len() < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    /// Starts a tokio task that sweeps expired reservations every `interval`. The sweeper
    /// stops when the handle is stopped or dropped. Needs a tokio runtime.
    pub fn spawn_sweeper(&self, interval: Duration) -> SweeperHandle {
        SweeperHandle::spawn(self.clone(), interval)
    }
}

/// Builds a [`Tracker`] with an injected clock, id generator and default timeout.
#[derive(Debug)]
#[must_use]
pub struct TrackerBuilder {
    store: DynBudgetStore,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    default_timeout: Duration,
}

impl TrackerBuilder {
    /// Sets the clock. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the reservation id generator. Defaults to [`UuidV7Ids`].
    pub fn ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = ids;
        self
    }

    /// Sets the timeout of reserves that give none. Defaults to 5 minutes.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// The tracker.
    pub fn build(self) -> Tracker {
        Tracker {
            store: self.store,
            clock: self.clock,
            ids: self.ids,
            default_timeout: self.default_timeout,
        }
    }
}
