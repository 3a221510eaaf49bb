//! Admission: reserve the prompt plus `max_tokens` before forwarding, lowering `max_tokens`
//! to what the budget can pay for when there is room for the prompt and a minimum output.

use std::time::Duration;

use tokenbudget::{BudgetId, Grant, ReservationId, ReserveOptions, ReserveOutcome, TokenBudget};

use crate::error::{Error, Result};
use crate::meter::Meter;

/// What a request asks to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The prompt's bound (tokens).
    pub prompt: u64,
    /// The request's `max_tokens`.
    pub max_tokens: u64,
    /// The least output worth forwarding for (tokens).
    pub min_output: u64,
}

/// What holds a request's worst-case cost while it runs.
#[derive(Debug, Clone)]
pub enum Hold {
    /// A reservation in the store.
    Reserved(Grant),
    /// The store was unreachable and `on_store_error = "open"`: the gateway's own allowance
    /// holds it, and the settlement is charged (or journaled) under `id`.
    Open {
        /// The request's id: its charge's idempotency key is `gateway-open:<id>`.
        id: tokenbudget::ReservationId,
        /// Weighted tokens held in the allowance.
        tokens: u64,
    },
}

/// A granted admission.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// What holds the request's worst-case cost.
    pub hold: Hold,
    /// The `max_tokens` to forward (the request's, or lowered).
    pub max_tokens: u64,
    /// True when `max_tokens` was lowered.
    pub clamped: bool,
    /// How the request is measured (settlement prices the usage the same way).
    pub meter: Meter,
}

/// How many times admission retries with a lower `max_tokens` when a refusal names a budget
/// with less room (concurrent requests can take room between tries; each try is atomic, so
/// stopping early only refuses, it never overdraws).
const TRIES: usize = 4;

/// Reserves for `ask` on `budget`, measured by `meter` (tokens, or dollars priced by the
/// budgets' price table), lowering `max_tokens` when the chain lacks room for all of it. A
/// refusal is [`Error::Refused`] naming the budget and what it has left.
pub async fn admit(
    budgets: &TokenBudget,
    budget: &BudgetId,
    ask: Ask,
    meter: &Meter,
    timeout: Duration,
) -> Result<Admitted> {
    admit_tracked(budgets, budget, ask, meter, timeout, &InFlight::default()).await
}

/// The reservation id of the reserve in flight, so that a caller who stops waiting for it
/// (a timeout) can roll that reservation back should it land in the store later.
#[derive(Debug, Default)]
pub(crate) struct InFlight(std::sync::Mutex<Option<ReservationId>>);

impl InFlight {
    fn set(&self, id: Option<ReservationId>) {
        match self.0.lock() {
            Ok(mut slot) => *slot = id,
            Err(p) => *p.into_inner() = id,
        }
    }

    /// The reserve whose answer did not arrive, if one was in flight.
    pub(crate) fn take(&self) -> Option<ReservationId> {
        match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(p) => p.into_inner().take(),
        }
    }
}

async fn admit_tracked(
    budgets: &TokenBudget,
    budget: &BudgetId,
    ask: Ask,
    meter: &Meter,
    timeout: Duration,
    in_flight: &InFlight,
) -> Result<Admitted> {
    let prices = budgets.prices();
    let mut max_tokens = ask.max_tokens;
    let mut last = None;
    // What the request asked to hold: a clamped grant records it (`RESERVE_CLAMPED`).
    let asked = meter.hold(prices, ask.prompt, ask.max_tokens)?;
    for _ in 0..TRIES {
        let amount = meter.hold(prices, ask.prompt, max_tokens)?;
        let mut options = ReserveOptions::new().with_timeout(timeout);
        if let Meter::Usd { model } = meter {
            options = options.with_model(model.as_str());
        }
        if amount < asked {
            options = options.with_asked(asked);
        }
        // Each try is a new reservation, with an id chosen here.
        let id = ReservationId::from_uuid(uuid::Uuid::now_v7());
        options = options.with_reservation_id(id);
        in_flight.set(Some(id));
        let outcome = budgets.reserve(budget, amount, options).await;
        // Answered (either way): nothing is left in flight. A storage error leaves it set,
        // since the reserve may still have been written.
        if outcome.is_ok() {
            in_flight.set(None);
        }
        match outcome? {
            ReserveOutcome::Granted(grant) => {
                return Ok(Admitted {
                    hold: Hold::Reserved(grant),
                    max_tokens,
                    clamped: max_tokens < ask.max_tokens,
                    meter: meter.clone(),
                })
            }
            ReserveOutcome::Refused(refusal) => {
                let lower = meter
                    .clamp(prices, refusal.available, &ask)?
                    .filter(|&m| m < max_tokens);
                last = Some(refusal);
                match lower {
                    Some(m) => max_tokens = m,
                    None => break,
                }
            }
        }
    }
    let refusal = last.ok_or_else(|| Error::Internal("admission made no attempt".into()))?;
    Err(Error::Refused {
        budget: refusal.budget_id.to_string(),
        requested: refusal.requested,
        available: refusal.available,
        prompt: meter.hold(prices, ask.prompt, 0)?,
        need: meter.hold(prices, ask.prompt, ask.min_output.min(ask.max_tokens))?,
        min_output: ask.min_output,
        unit: meter.unit(),
    })
}

/// Admits a request of `caller` (priced by `model` on a usd budget) for `route`: measured,
/// reserved within `timeouts.store`, and when the store is unreachable either refused with
/// 503 (`on_store_error = "closed"`) or held in the gateway's open allowance (`"open"`).
pub(crate) async fn admit_request(
    gw: &crate::gateway::Gateway,
    caller: &crate::auth::Caller,
    ask: Ask,
    model: Option<&str>,
    route: &'static str,
) -> Result<Admitted> {
    let settings = &gw.inner.settings;
    let in_flight = InFlight::default();
    let reserve = async {
        let meter = gw.meter(&caller.budget, model).await?;
        admit_tracked(
            &gw.inner.budgets,
            &caller.budget,
            ask,
            &meter,
            settings.reservation_timeout,
            &in_flight,
        )
        .await
    };
    let outcome = tokio::time::timeout(settings.timeouts.store, reserve)
        .await
        .unwrap_or_else(|_| Err(Error::Store("timed out".into())));
    if let (Err(Error::Store(_)), Some(id)) = (&outcome, in_flight.take()) {
        // The reserve's answer never came: it may still land (a locked database that
        // frees up, a reply lost on the way). Its rollback is journaled so that such a
        // hold is released once the store is back instead of waiting out its timeout; a
        // rollback of a reserve that never landed changes nothing.
        forget_reserve(gw, id).await;
    }
    match outcome {
        Err(Error::Refused { .. }) => {
            crate::metrics::refusal(route);
            outcome
        }
        Err(Error::Store(reason))
            if settings.on_store_error == crate::config::OnStoreError::Open =>
        {
            let admitted = admit_open(gw, ask, &reason)?;
            tracing::warn!(budget = %caller.budget, error = %reason, "budget store unreachable: forwarding on the open allowance");
            crate::metrics::forwarded_open(route);
            Ok(admitted)
        }
        other => other,
    }
}

/// Journals the rollback of reservation `id`, whose reserve had no answer.
async fn forget_reserve(gw: &crate::gateway::Gateway, id: ReservationId) {
    let entry = crate::journal::Entry::Rollback { reservation: id };
    match &gw.inner.journal {
        Some(journal) => match journal.append(entry).await {
            Ok(()) => {
                tracing::info!(reservation = %id, "a reserve without an answer: its rollback is journaled")
            }
            Err(e) => {
                tracing::warn!(reservation = %id, error = %e, "a reserve without an answer could not be journaled: should it land, it expires")
            }
        },
        None => {
            tracing::info!(reservation = %id, "a reserve without an answer: should it land, it expires (no journal)")
        }
    }
}

/// Holds `ask`'s weighted tokens in the open allowance: what is out without the store
/// (running open requests and unreplayed journal entries) stays within `open_limit`.
fn admit_open(gw: &crate::gateway::Gateway, ask: Ask, reason: &str) -> Result<Admitted> {
    use std::sync::atomic::Ordering;
    let inner = &gw.inner;
    let weights = inner.settings.weights;
    let meter = Meter::Tokens(weights);
    let tokens = meter.hold(inner.budgets.prices(), ask.prompt, ask.max_tokens)?;
    let journaled = inner.journal.as_ref().map_or(0, |j| j.tokens());
    let limit = inner.settings.open_limit;
    let granted = inner
        .open_held
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
            held.checked_add(tokens)
                .filter(|&total| total.saturating_add(journaled) <= limit)
        });
    if granted.is_err() {
        return Err(Error::Store(format!(
            "{reason}; forwarding without it is capped at {limit} tokens (on_store_error = \"open\"), and that is taken"
        )));
    }
    Ok(Admitted {
        hold: Hold::Open {
            id: tokenbudget::ReservationId::from_uuid(uuid::Uuid::now_v7()),
            tokens,
        },
        max_tokens: ask.max_tokens,
        clamped: false,
        meter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Weights;
    use tokenbudget::prices::PriceTable;

    const W: Weights = Weights {
        input: 1,
        cache_write: 1,
        cache_read: 1,
        output: 1,
    };

    fn ask(prompt: u64, max_tokens: u64, min_output: u64) -> Ask {
        Ask {
            prompt,
            max_tokens,
            min_output,
        }
    }

    #[test]
    fn clamp_cases() {
        let prices = PriceTable::embedded();
        // (available, prompt, max_tokens, min_output) -> max_tokens to forward
        let cases = [
            (10_000, 1_000, 32_000, 1_000, Some(9_000)),
            (10_000, 1_000, 4_000, 1_000, Some(4_000)),
            (1_999, 1_000, 32_000, 1_000, None),
            (2_000, 1_000, 32_000, 1_000, Some(1_000)),
            (999, 1_000, 32_000, 0, None),
            (1_000, 1_000, 32_000, 0, Some(0)),
            // A request asking for less than the minimum needs only what it asks.
            (1_100, 1_000, 100, 1_000, Some(100)),
        ];
        for (available, prompt, max, min, want) in cases {
            assert_eq!(
                Meter::Tokens(W)
                    .clamp(&prices, available, &ask(prompt, max, min))
                    .unwrap(),
                want,
                "{available} {prompt} {max} {min}"
            );
        }
    }
}
