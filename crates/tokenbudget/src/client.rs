//! [`TokenBudget`]: the tracker with the counter that sizes requests.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokenbudget_core::Error as CoreError;
use tokenbudget_core::{
    Budget, BudgetId, Charge, ChargeOutcome, CommitOutcome, Event, ExtendOutcome, IdempotencyKey,
    LogCursor, LogPage, NewBudget, Reservation, ReservationId, ReserveOptions, ReserveOutcome,
    RollbackOutcome, Status, SweeperHandle, Tracker,
};
use tokenbudget_core::{ReservationState, Unit};
use tokenbudget_counter::{Message, TokenCount, TokenCounter};
use tokenbudget_prices::{PriceTable, Usage};

use crate::builder::TokenBudgetBuilder;
use crate::error::Result;
use crate::request::RequestReservation;

/// Budgets for a service: the tracker's operations with the facade's [`Error`](crate::Error),
/// the [`TokenCounter`] that sizes reservations for chat requests, a guard for one call
/// ([`TokenBudget::spend`], [`TokenBudget::hold`]), and a background sweeper of expired holds
/// that runs by default.
///
/// Cheap to clone: clones share the store, clock, counter and sweeper (which stops when the
/// last clone is dropped).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use tokenbudget::{Message, ReserveOptions, TokenBudget};
///
/// let budgets = TokenBudget::builder().url("memory://").build().await?;
/// budgets.create_workflow("wf", 10_000).await?;
///
/// let messages = [Message::system("Be brief."), Message::user("Summarize the report.")];
/// let reservation = budgets
///     .reserve_for_request("wf", &messages, 500, ReserveOptions::new())
///     .await?;
/// let grant = reservation.granted().expect("room in the budget");
/// assert_eq!(grant.reservation.tokens, reservation.prompt.tokens + 500);
///
/// // After the call, commit what the API reported as used.
/// budgets.commit(grant.reservation.id, 321).await?;
/// assert_eq!(budgets.status("wf").await?.used, 321);
/// # Ok::<(), tokenbudget::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct TokenBudget {
    pub(crate) tracker: Tracker,
    pub(crate) counter: Arc<dyn TokenCounter>,
    pub(crate) sweeper: Option<Arc<SweeperHandle>>,
    pub(crate) prices: Arc<PriceTable>,
}

impl fmt::Debug for TokenBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBudget")
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

impl TokenBudget {
    /// A builder: a store or URL, then optionally the clock, default timeout and counter.
    pub fn builder() -> TokenBudgetBuilder {
        TokenBudgetBuilder::new()
    }

    /// Opens the store at `url` with every other setting at its default.
    pub async fn open(url: &str) -> Result<Self> {
        Self::builder().url(url).build().await
    }

    /// The core tracker underneath, whose methods answer the core's error type.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The store.
    pub fn store(&self) -> &tokenbudget_core::DynBudgetStore {
        self.tracker.store()
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn tokenbudget_core::Clock> {
        self.tracker.clock()
    }

    /// The timeout used when a reserve gives none.
    pub fn default_timeout(&self) -> Duration {
        self.tracker.default_timeout()
    }

    /// True when this handle runs the background sweeper (the builder's default).
    pub fn sweeps_in_background(&self) -> bool {
        self.sweeper.is_some()
    }

    /// Creates a budget from a full description.
    pub async fn create_budget(&self, new: NewBudget) -> Result<Budget> {
        Ok(self.tracker.create_budget(new).await?)
    }

    /// Creates a workflow budget (one with no parent).
    pub async fn create_workflow<I>(&self, id: I, limit: u64) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self.tracker.create_workflow(id, limit).await?)
    }

    /// Creates a phase budget under `parent` (or any budget under any other).
    pub async fn create_phase<I, P>(&self, id: I, parent: P, limit: u64) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = CoreError>,
        P: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self.tracker.create_phase(id, parent, limit).await?)
    }

    /// Holds `tokens` on `budget` and every ancestor, or refuses naming the budget that lacked
    /// room. Prefer [`TokenBudget::spend`] or [`TokenBudget::hold`], which never leave a hold
    /// behind.
    pub async fn reserve<I>(
        &self,
        budget: I,
        tokens: u64,
        options: ReserveOptions,
    ) -> Result<ReserveOutcome>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self.tracker.reserve(budget, tokens, options).await?)
    }

    /// Records a reservation's actual usage; the rest of the hold is released.
    pub async fn commit(&self, reservation: ReservationId, actual: u64) -> Result<CommitOutcome> {
        Ok(self.tracker.commit(reservation, actual).await?)
    }

    /// Releases a reservation's hold.
    pub async fn rollback(&self, reservation: ReservationId) -> Result<RollbackOutcome> {
        Ok(self.tracker.rollback(reservation).await?)
    }

    /// Pushes a held reservation's expiry to `timeout` from now (a long streamed call).
    pub async fn extend(
        &self,
        reservation: ReservationId,
        timeout: Duration,
    ) -> Result<ExtendOutcome> {
        Ok(self.tracker.extend(reservation, timeout).await?)
    }

    /// Records usage that had no reservation, once per `key`, even past the limit.
    pub async fn charge<I>(
        &self,
        budget: I,
        tokens: u64,
        key: IdempotencyKey,
        note: Option<String>,
    ) -> Result<ChargeOutcome>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self.tracker.charge(budget, tokens, key, note).await?)
    }

    /// The price table that prices usage on `usd` budgets.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// What `usage` of `model` costs on `budget`, in its unit ([`amount_for`](crate::amount_for)).
    pub async fn amount_on<I>(&self, budget: I, model: Option<&str>, usage: &Usage) -> Result<u64>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        let unit = self.unit_of(&budget.try_into()?).await?;
        crate::amount_for(unit, &self.prices, model, usage)
    }

    /// Reserves what an estimated `usage` of `model` costs on `budget`, in its unit: its
    /// tokens on a `tokens` budget, its price in micro-dollars on a `usd` budget. The
    /// reservation remembers the model, so [`TokenBudget::commit_usage`] prices the actual
    /// usage the same way.
    pub async fn reserve_usage<I>(
        &self,
        budget: I,
        model: &str,
        estimate: &Usage,
        options: ReserveOptions,
    ) -> Result<ReserveOutcome>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        let budget = budget.try_into()?;
        let amount = self.amount_on(&budget, Some(model), estimate).await?;
        Ok(self
            .tracker
            .reserve(&budget, amount, options.with_model(model))
            .await?)
    }

    /// Commits a reservation's actual `usage`, priced in its budget's unit with the model the
    /// reservation was made for.
    pub async fn commit_usage(
        &self,
        reservation: ReservationId,
        usage: &Usage,
    ) -> Result<CommitOutcome> {
        let held = self
            .reservation(reservation)
            .await?
            .ok_or(CoreError::ReservationNotFound { id: reservation })?;
        let amount = self
            .amount_on(&held.budget_id, held.model.as_deref(), usage)
            .await?;
        Ok(self.tracker.commit(reservation, amount).await?)
    }

    /// Charges `usage` of `model` to `budget` with no reservation, priced in its unit, once
    /// per `key`.
    pub async fn charge_usage<I>(
        &self,
        budget: I,
        model: Option<&str>,
        usage: &Usage,
        key: IdempotencyKey,
        note: Option<String>,
    ) -> Result<ChargeOutcome>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        let budget = budget.try_into()?;
        let amount = self.amount_on(&budget, model, usage).await?;
        Ok(self.tracker.charge(&budget, amount, key, note).await?)
    }

    async fn unit_of(&self, budget: &BudgetId) -> Result<Unit> {
        match self.tracker.store().budget(budget).await? {
            Some(b) => Ok(b.unit),
            None => Err(CoreError::BudgetNotFound { id: budget.clone() }.into()),
        }
    }

    /// Changes a budget's limit, in its unit (raised, or lowered even below what is used:
    /// new reservations are then refused), with a `BUDGET_UPDATED` event.
    pub async fn update_limit<I>(&self, budget: I, limit: u64) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self.tracker.update_limit(budget, limit).await?)
    }

    /// Closes a budget: no new reservations on it or below it; held ones may still commit
    /// or roll back.
    pub async fn close<I>(&self, budget: I) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self.tracker.close(budget).await?)
    }

    /// Reopens a closed budget.
    pub async fn reopen<I>(&self, budget: I) -> Result<Budget>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self.tracker.reopen(budget).await?)
    }

    /// Reservations on `budget` and below it (every one with `None`), in `state` as seen now
    /// (a hold past its expiry is `expired`), ordered by id, after `after`, at most `limit`.
    pub async fn reservations(
        &self,
        budget: Option<BudgetId>,
        state: Option<ReservationState>,
        after: Option<ReservationId>,
        limit: usize,
    ) -> Result<Vec<Reservation>> {
        Ok(self
            .tracker
            .reservations(budget, state, after, limit)
            .await?)
    }

    /// The charge recorded with `key`, if any.
    pub async fn charge_by_key(&self, key: &IdempotencyKey) -> Result<Option<Charge>> {
        Ok(self.tracker.store().charge_by_key(key).await?)
    }

    /// One reservation as stored.
    pub async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>> {
        Ok(self.tracker.store().reservation(id).await?)
    }

    /// A budget's live status (holds past their expiry are not counted).
    pub async fn status<I>(&self, budget: I) -> Result<Status>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self.tracker.status(budget).await?)
    }

    /// Every budget's live status, ordered by id.
    pub async fn list(&self) -> Result<Vec<Status>> {
        Ok(self.tracker.list().await?)
    }

    /// A budget's events with `seq > after_seq`, in order.
    pub async fn events<I>(&self, budget: I, after_seq: u64) -> Result<Vec<Event>>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self.tracker.events(budget, after_seq).await?)
    }

    /// Up to `limit` events of the whole log after `after`; loop on the page's `next` to tail
    /// the log: every event is seen exactly once, however writers interleave.
    pub async fn log_after(&self, after: LogCursor, limit: usize) -> Result<LogPage> {
        Ok(self.tracker.log_after(after, limit).await?)
    }

    /// Releases every reservation expired by now; returns how many were released.
    pub async fn sweep_expired(&self) -> Result<usize> {
        Ok(self.tracker.sweep_expired().await?)
    }

    /// The counter that sizes requests.
    pub fn counter(&self) -> &Arc<dyn TokenCounter> {
        &self.counter
    }

    /// Counts the prompt tokens of a chat request made of `messages`.
    pub async fn count_messages(&self, messages: &[Message]) -> Result<TokenCount> {
        Ok(self.counter.count_messages(messages).await?)
    }

    /// Reserves what a chat request can cost: its prompt, counted with the configured
    /// counter, plus `max_output_tokens`, held in one reserve on `budget` and its ancestors.
    ///
    /// The answer says whether the prompt count was exact or estimated
    /// ([`RequestReservation::is_exact`]); commit the usage the API reports once the call
    /// returns, or roll back if it was never made.
    ///
    /// # Errors
    /// [`Error::Count`] when the counter fails (a Claude counter only does for a request the
    /// API calls invalid: unavailability falls back to the estimator); [`Error::Core`] for an
    /// invalid or unknown budget, a total beyond `i64::MAX`, or a storage failure.
    pub async fn reserve_for_request<I>(
        &self,
        budget: I,
        messages: &[Message],
        max_output_tokens: u64,
        options: ReserveOptions,
    ) -> Result<RequestReservation>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        // Validate the id before paying for a count (a Claude count is a network call).
        let budget = budget.try_into()?;
        let prompt = self.count_messages(messages).await?;
        // A sum beyond u64 is beyond i64::MAX too: the tracker rejects it as InvalidAmount.
        let requested = prompt.tokens.saturating_add(max_output_tokens);
        let outcome = self.tracker.reserve(&budget, requested, options).await?;
        Ok(RequestReservation {
            outcome,
            prompt,
            max_output_tokens,
            requested,
        })
    }
}
