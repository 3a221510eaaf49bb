//! [`TokenBudget`]: the tracker with the counter that sizes requests.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use tokenbudget_core::Error as CoreError;
use tokenbudget_core::{BudgetId, ReserveOptions, Tracker};
use tokenbudget_counter::{Message, TokenCount, TokenCounter};

use crate::builder::TokenBudgetBuilder;
use crate::error::Result;
use crate::request::RequestReservation;

/// A [`Tracker`] and the [`TokenCounter`] that sizes reservations for chat requests.
///
/// Every tracker method (`create_workflow`, `reserve`, `commit`, `status`, …) is available
/// directly through `Deref`; [`TokenBudget::reserve_for_request`] adds counting. Cheap to
/// clone: clones share the store, clock and counter.
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
}

impl fmt::Debug for TokenBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBudget")
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

impl Deref for TokenBudget {
    type Target = Tracker;

    fn deref(&self) -> &Tracker {
        &self.tracker
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

    /// The tracker.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
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
