//! The one finalizer per request: every path (completed, refused upstream, cut, error event,
//! client gone, timeout, shutdown) reaches [`Finalizer::finish`], and only the first call
//! settles. Dropping an unfinished finalizer (the client went away, the server stopped)
//! settles it as a cut.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokenbudget::{BudgetId, ReservationId};

use crate::admit::{Admitted, Hold};
use crate::journal::Entry;
use crate::meter::Meter;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::gateway::Gateway;
use crate::ledger::{LedgerRecord, Settled};
use crate::reader::UsageReader;

/// How the request ended, as the relaying code saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The response body ended normally.
    Completed,
    /// The upstream never accepted the request (unreachable, or an error status).
    NotAccepted,
    /// Cut mid-response, for this reason.
    Cut(&'static str),
}

/// What the settlement needs besides the usage.
#[derive(Debug)]
pub(crate) struct Pending {
    pub gateway: Gateway,
    /// The reservation (or, for a request forwarded without the store, its own id).
    pub reservation: ReservationId,
    /// What holds the request.
    pub hold: Hold,
    pub meter: Meter,
    pub budget: BudgetId,
    /// Charged as input when the upstream accepted but never reported usage.
    pub prompt_bound: u64,
    pub route: &'static str,
    pub key_id: String,
    pub session: Option<String>,
    pub request_id: Option<String>,
    pub model: Option<String>,
    pub started: Instant,
    /// Stops the reservation's extender when settled.
    _extender: DropGuard,
}

/// Settles its request exactly once.
#[derive(Debug)]
pub(crate) struct Finalizer {
    pending: Option<Pending>,
    /// Usage read so far.
    pub reader: UsageReader,
}

impl Finalizer {
    /// A finalizer for an admitted reservation; starts extending it every half timeout.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gateway: &Gateway,
        admitted: &Admitted,
        budget: BudgetId,
        prompt_bound: u64,
        route: &'static str,
        key_id: String,
        session: Option<String>,
        model: Option<String>,
    ) -> Self {
        gateway.inner.unsettled.fetch_add(1, Ordering::SeqCst);
        let token = CancellationToken::new();
        let reservation = match &admitted.hold {
            Hold::Reserved(grant) => {
                spawn_extender(gateway, grant.reservation.id, token.clone());
                grant.reservation.id
            }
            Hold::Open { id, .. } => *id,
        };
        Self {
            pending: Some(Pending {
                gateway: gateway.clone(),
                reservation,
                hold: admitted.hold.clone(),
                meter: admitted.meter.clone(),
                budget,
                prompt_bound,
                route,
                key_id,
                session,
                request_id: None,
                model,
                started: Instant::now(),
                _extender: token.drop_guard(),
            }),
            reader: UsageReader::default(),
        }
    }

    /// Records the upstream's request id for the ledger.
    pub fn set_request_id(&mut self, id: Option<String>) {
        if let Some(p) = self.pending.as_mut() {
            p.request_id = id;
        }
    }

    /// Settles (the first call only): the settlement runs on the gateway's task tracker so
    /// it completes even when the connection is gone, and shutdown waits for it.
    pub fn finish(&mut self, ending: Ending) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let reader = self.reader.clone();
        let tasks = pending.gateway.inner.tasks.clone();
        tasks.spawn(settle(pending, reader, ending));
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        self.finish(Ending::Cut("client disconnected"));
    }
}

fn spawn_extender(gateway: &Gateway, reservation: ReservationId, stop: CancellationToken) {
    let timeout = gateway.inner.settings.reservation_timeout;
    let every = (timeout / 2).max(Duration::from_millis(100));
    let budgets = gateway.inner.budgets.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = budgets.extend(reservation, timeout).await {
                tracing::warn!(%reservation, error = %e, "could not extend a reservation");
            }
        }
    });
}

/// What to commit, pure: `None` means roll back.
pub(crate) fn decide(
    reader: &UsageReader,
    ending: Ending,
    prompt_bound: u64,
) -> Option<(crate::usage::Usage, bool)> {
    match ending {
        Ending::NotAccepted => None,
        Ending::Completed if reader.complete && reader.error.is_none() => {
            Some((reader.usage, reader.estimated))
        }
        // Ended without its last event, with an error event, cut, abandoned or timed out:
        // the upstream accepted the request, so never zero.
        _ => Some((reader.partial(prompt_bound), true)),
    }
}

/// Writes a settlement the store did not take to the journal (fsynced), or, without one,
/// says loudly that it is lost.
async fn journal(p: &Pending, entry: Entry, error: &crate::Error) {
    match &p.gateway.inner.journal {
        Some(journal) => match journal.append(entry).await {
            Ok(()) => {
                tracing::warn!(reservation = %p.reservation, %error, "the store did not take a settlement: journaled for replay");
            }
            Err(e) => {
                crate::metrics::settlement_lost();
                tracing::error!(reservation = %p.reservation, %error, journal_error = %e, "settlement lost: neither the store nor the journal took it");
            }
        },
        None => {
            crate::metrics::settlement_lost();
            tracing::error!(reservation = %p.reservation, %error, "settlement lost: the store did not take it and no journal is configured");
        }
    }
}

/// A store call within `timeouts.store`, its error as the gateway's.
async fn within<T>(
    p: &Pending,
    call: impl std::future::Future<Output = Result<T, tokenbudget::Error>>,
) -> crate::Result<T> {
    match tokio::time::timeout(p.gateway.inner.settings.timeouts.store, call).await {
        Ok(r) => r.map_err(crate::Error::from),
        Err(_) => Err(crate::Error::Store("timed out".into())),
    }
}

fn is_storage(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Store(_))
}

/// Settles on the store, or on the journal when the store does not take it.
async fn store_settlement(
    p: &Pending,
    usage: &crate::usage::Usage,
    cost: Option<u64>,
    model: Option<String>,
) {
    let inner = &p.gateway.inner;
    let tokens = inner.settings.weights.cost(usage);
    match (&p.hold, cost) {
        (Hold::Reserved(_), None) => {
            if let Err(e) = within(p, inner.budgets.rollback(p.reservation)).await {
                if is_storage(&e) {
                    let entry = Entry::Rollback {
                        reservation: p.reservation,
                    };
                    journal(p, entry, &e).await;
                } else {
                    tracing::error!(reservation = %p.reservation, error = %e, "rollback refused");
                }
            }
        }
        (Hold::Reserved(_), Some(amount)) => {
            if let Err(e) = within(p, inner.budgets.commit(p.reservation, amount)).await {
                if is_storage(&e) {
                    let entry = Entry::Commit {
                        reservation: p.reservation,
                        amount,
                        tokens,
                    };
                    journal(p, entry, &e).await;
                } else {
                    tracing::error!(reservation = %p.reservation, amount, error = %e, "commit refused");
                }
            }
        }
        (Hold::Open { .. }, None) => {}
        (Hold::Open { .. }, Some(_)) => {
            let entry = Entry::Charge {
                key: format!("gateway-open:{}", p.reservation),
                budget: p.budget.clone(),
                model,
                usage: *usage,
                tokens,
            };
            // The store may be back already; else the journal keeps it (same key either way).
            let direct = tokio::time::timeout(
                inner.settings.timeouts.store,
                crate::journal::apply(&inner.budgets, inner.ledger.as_ref(), &entry),
            )
            .await
            .unwrap_or_else(|_| Err(crate::Error::Store("timed out".into())));
            if let Err(e) = direct {
                journal(p, entry, &e).await;
            }
        }
    }
    if let Hold::Open { tokens: held, .. } = p.hold {
        // After the journal took the entry: the allowance never counts less than is out.
        inner.open_held.fetch_sub(held, Ordering::SeqCst);
    }
}

async fn settle(p: Pending, reader: UsageReader, ending: Ending) {
    let inner = &p.gateway.inner;
    let decision = decide(&reader, ending, p.prompt_bound);
    let (usage, cost, estimated, settled) = match decision {
        None => {
            store_settlement(&p, &crate::usage::Usage::default(), None, None).await;
            (
                crate::usage::Usage::default(),
                0,
                false,
                Settled::RolledBack,
            )
        }
        Some((usage, estimated)) => {
            let cost = match p.meter.cost(inner.budgets.prices(), &usage) {
                Ok(cost) => cost,
                Err(e) => {
                    // Never zero once the upstream accepted: the hold is the most it can be.
                    let held = match &p.hold {
                        Hold::Reserved(grant) => grant.reservation.tokens,
                        Hold::Open { tokens, .. } => *tokens,
                    };
                    tracing::error!(reservation = %p.reservation, error = %e, "could not price the usage: committing the hold");
                    held
                }
            };
            let model = reader.model.clone().or(p.model.clone());
            store_settlement(&p, &usage, Some(cost), model).await;
            crate::metrics::tokens(&usage);
            // A complete response whose usage the gateway counted itself (a translated
            // upstream that reports none) is complete, and flagged estimated.
            let whole = ending == Ending::Completed && reader.complete && reader.error.is_none();
            let settled = if estimated && !whole {
                Settled::Partial
            } else {
                Settled::Completed
            };
            (usage, cost, estimated, settled)
        }
    };
    if let Ending::Cut(reason) = ending {
        tracing::info!(reservation = %p.reservation, reason, cost, "settled a cut response");
    }
    crate::metrics::settlement(match settled {
        Settled::Completed => "completed",
        Settled::RolledBack => "rolled_back",
        Settled::Partial => "partial",
    });
    crate::metrics::latency(p.route, p.started.elapsed().as_secs_f64());
    let record = LedgerRecord {
        message_id: reader.message_id.clone(),
        request_id: p.request_id.clone(),
        budget_id: p.budget.clone(),
        reservation_id: p.reservation,
        key_id: p.key_id.clone(),
        session_id: p.session.clone(),
        model: reader.model.clone().or(p.model.clone()),
        usage,
        cost,
        estimated,
        settled,
        at: chrono::Utc::now(),
    };
    let written = tokio::time::timeout(
        inner.settings.timeouts.store,
        inner.ledger.record(record.clone()),
    )
    .await
    .unwrap_or_else(|_| Err(crate::Error::Store("the ledger timed out".into())));
    if let Err(e) = written {
        if is_storage(&e) {
            // Kept like a settlement: journaled, written again when the ledger is back.
            let entry = Entry::Ledger {
                record: Box::new(record),
            };
            journal(&p, entry, &e).await;
        } else {
            tracing::error!(reservation = %p.reservation, error = %e, "ledger write refused");
        }
    }
    inner.unsettled.fetch_sub(1, Ordering::SeqCst);
    inner.settled.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;

    #[test]
    fn every_ending_decides_once_and_never_zero_after_acceptance() {
        let mut done = UsageReader::default();
        done.anthropic_event(
            r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1}}}"#,
        );
        done.anthropic_event(r#"{"type":"message_delta","usage":{"output_tokens":5}}"#);
        done.anthropic_event(r#"{"type":"message_stop"}"#);
        let full = Usage {
            input: 10,
            output: 5,
            ..Usage::default()
        };
        assert_eq!(decide(&done, Ending::Completed, 99), Some((full, false)));
        assert_eq!(decide(&done, Ending::NotAccepted, 99), None);
        assert_eq!(decide(&done, Ending::Cut("x"), 99), Some((full, true)));

        let nothing = UsageReader::default();
        let (usage, estimated) = decide(&nothing, Ending::Completed, 99).unwrap();
        assert!(estimated);
        assert_eq!(usage.input, 99);

        let mut estimated = UsageReader::default();
        let counted = tokenbudget_translate::Usage {
            input_tokens: 40,
            output_tokens: 3,
            cache_read_input_tokens: 0,
            estimated: true,
        };
        estimated.translated(&counted, true);
        let usage = Usage {
            input: 40,
            output: 3,
            ..Usage::default()
        };
        assert_eq!(
            decide(&estimated, Ending::Completed, 99),
            Some((usage, true))
        );
        estimated.translated(&counted, false);
        assert_eq!(
            decide(&estimated, Ending::Completed, 99),
            Some((usage, true))
        );

        let mut errored = done.clone();
        errored.error = Some("overloaded_error".into());
        assert_eq!(decide(&errored, Ending::Completed, 99), Some((full, true)));
    }
}
