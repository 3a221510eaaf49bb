//! Guards for one model call: the usage is committed on success, and the hold is released on
//! error, panic or cancellation, so no path leaves tokens held.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokenbudget_core::Error as CoreError;
use tokenbudget_core::{
    BudgetId, CommitOutcome, Grant, Refusal, Reservation, ReservationId, ReserveOptions,
    RollbackOutcome,
};

use crate::client::TokenBudget;
use crate::error::{Error, Result};

/// What a held reservation still needs when its guard goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Nothing was recorded yet: release the hold.
    Rollback,
    /// A commit of this much was started and its answer not seen: send it again (a repeated
    /// commit is a replay, so it can never count twice, and usage is never rolled back to 0).
    Commit(u64),
    /// Settled; nothing to do.
    Nothing,
}

/// A granted reservation that is never left behind: [`Hold::commit`] records the usage, and
/// dropping the hold without committing (an early return, a `?`, a panic, a cancelled task)
/// rolls it back from a background task.
///
/// # Note
/// The background settlement needs a tokio runtime; dropped outside one, the hold is released
/// by its timeout instead. A commit whose future is dropped before it answers is sent again in
/// the background, never rolled back: a commit repeated with the same amount is a replay.
#[derive(Debug)]
#[must_use = "a hold is rolled back when dropped: commit the call's usage with `commit`"]
pub struct Hold {
    budgets: TokenBudget,
    grant: Grant,
    pending: Pending,
}

impl Hold {
    /// The reservation (its expiry as of the last [`Hold::extend`]).
    pub fn reservation(&self) -> &Reservation {
        &self.grant.reservation
    }

    /// The reservation's id.
    pub fn id(&self) -> ReservationId {
        self.grant.reservation.id
    }

    /// The grant as the reserve answered it.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// Records `actual` tokens as used; the rest of the hold is released.
    pub async fn commit(mut self, actual: u64) -> Result<CommitOutcome> {
        self.pending = Pending::Commit(actual);
        let outcome = self.budgets.commit(self.id(), actual).await;
        self.pending = Pending::Nothing;
        outcome
    }

    /// Releases the hold without recording usage.
    pub async fn rollback(mut self) -> Result<RollbackOutcome> {
        self.pending = Pending::Nothing;
        self.budgets.rollback(self.id()).await
    }

    /// Pushes the expiry to `timeout` from now (a long streamed call).
    pub async fn extend(&mut self, timeout: Duration) -> Result<()> {
        let outcome = self.budgets.extend(self.id(), timeout).await?;
        self.grant.reservation = outcome.reservation;
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let pending = std::mem::replace(&mut self.pending, Pending::Nothing);
        if pending == Pending::Nothing {
            return;
        }
        let (budgets, id) = (self.budgets.clone(), self.id());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(reservation = %id, "hold dropped outside a tokio runtime; its timeout will release it");
            return;
        };
        runtime.spawn(async move {
            let result = match pending {
                Pending::Commit(actual) => budgets.commit(id, actual).await.map(drop),
                _ => budgets.rollback(id).await.map(drop),
            };
            if let Err(err) = result {
                tracing::warn!(reservation = %id, error = %err, "settling a dropped hold failed; its timeout will release it");
            }
        });
    }
}

/// The tokens a call used, read from what its closure returned to [`TokenBudget::spend`]:
/// a bare `u64`, or `(value, tokens)` to hand a value back too.
pub trait Actual {
    /// Tokens used.
    fn actual_tokens(&self) -> u64;
}

impl Actual for u64 {
    fn actual_tokens(&self) -> u64 {
        *self
    }
}

impl<T> Actual for (T, u64) {
    fn actual_tokens(&self) -> u64 {
        self.1
    }
}

/// What [`TokenBudget::spend`] returns when the call succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent<T> {
    /// What the call's closure returned.
    pub value: T,
    /// The commit of its usage.
    pub commit: CommitOutcome,
}

/// Why [`TokenBudget::spend`] did not record a call.
#[derive(Debug, thiserror::Error)]
pub enum SpendError<E> {
    /// Not enough budget: the call was not made.
    #[error("{0}")]
    Refused(Refusal),
    /// Reserving or committing failed.
    #[error(transparent)]
    Budget(Error),
    /// The call failed; its hold was released.
    #[error("the call failed: {0}")]
    Call(E),
}

impl TokenBudget {
    /// Reserves `tokens` and returns a [`Hold`] that commits or rolls back, or the refusal.
    pub async fn hold<I>(
        &self,
        budget: I,
        tokens: u64,
        options: ReserveOptions,
    ) -> Result<std::result::Result<Hold, Refusal>>
    where
        I: TryInto<BudgetId, Error = CoreError>,
    {
        Ok(self
            .reserve(budget, tokens, options)
            .await?
            .into_result()
            .map(|grant| Hold {
                budgets: self.clone(),
                grant,
                pending: Pending::Rollback,
            }))
    }

    /// Runs one call under a reservation of `estimate` tokens: `call` gets the grant and
    /// returns the tokens it used (`Ok(actual)`, or `Ok((value, actual))`), which are
    /// committed; an `Err`, a panic or a cancelled future releases the hold instead.
    ///
    /// Return `Ok` with the usage whenever the model was billed, even for an answer you then
    /// reject: `Err` means nothing was spent.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use tokenbudget::{ReserveOptions, SpendError, TokenBudget};
    ///
    /// let budgets = TokenBudget::open("memory://").await?;
    /// budgets.create_workflow("wf", 10_000).await?;
    ///
    /// let spent = budgets
    ///     .spend("wf", 2_000, ReserveOptions::new(), |grant| async move {
    ///         assert_eq!(grant.reservation.tokens, 2_000);
    ///         // …call the model; say it reported 1,234 tokens…
    ///         Ok::<_, std::io::Error>(("the answer", 1_234))
    ///     })
    ///     .await
    ///     .expect("room in the budget");
    /// assert_eq!(spent.value.0, "the answer");
    /// assert_eq!(budgets.status("wf").await?.used, 1_234);
    ///
    /// // A failed call releases its hold: nothing is used, nothing stays reserved.
    /// let failed = budgets
    ///     .spend("wf", 500, ReserveOptions::new(), |_| async {
    ///         Err::<u64, _>(std::io::Error::other("upstream 500"))
    ///     })
    ///     .await;
    /// assert!(matches!(failed, Err(SpendError::Call(_))));
    /// let status = budgets.status("wf").await?;
    /// assert_eq!((status.used, status.reserved), (1_234, 0));
    /// # Ok::<(), tokenbudget::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn spend<I, F, Fut, T, E>(
        &self,
        budget: I,
        estimate: u64,
        options: ReserveOptions,
        call: F,
    ) -> std::result::Result<Spent<T>, SpendError<E>>
    where
        I: TryInto<BudgetId, Error = CoreError>,
        F: FnOnce(Grant) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        T: Actual,
    {
        let hold = match self.hold(budget, estimate, options).await {
            Ok(Ok(hold)) => hold,
            Ok(Err(refusal)) => return Err(SpendError::Refused(refusal)),
            Err(err) => return Err(SpendError::Budget(err)),
        };
        // `hold` lives across the call: if this future is dropped, so is the hold, which
        // rolls back in the background.
        match AssertUnwindSafe(call(hold.grant().clone()))
            .catch_unwind()
            .await
        {
            Ok(Ok(value)) => {
                let commit = hold
                    .commit(value.actual_tokens())
                    .await
                    .map_err(SpendError::Budget)?;
                Ok(Spent { value, commit })
            }
            Ok(Err(err)) => {
                if let Err(rollback) = hold.rollback().await {
                    tracing::warn!(error = %rollback, "releasing a failed call's hold failed; its timeout will release it");
                }
                Err(SpendError::Call(err))
            }
            Err(panic) => {
                let _ = hold.rollback().await;
                std::panic::resume_unwind(panic)
            }
        }
    }
}
