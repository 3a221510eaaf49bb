//! Running an operation: one transaction per attempt on a pooled connection, retried as a
//! whole on transient failures, and driven to its end in its own task.
//!
//! # Round trips
//!
//! A write attempt costs two round trips after the pool's check: `BEGIN`, the lock and the
//! reads are pipelined (Postgres starts the read statement, and takes its snapshot, only once
//! the lock is granted, so it sees everything the previous lock holder committed); then the
//! decision's writes, as one statement, are pipelined with `COMMIT`. The row locks are held
//! for the reads, the rule, the write and the commit.
//!
//! # Cancellation
//!
//! A caller's future may be dropped at any await. Write operations run in a spawned task
//! ([`spawn`]), so a dropped caller never interrupts a transaction: it runs to COMMIT or
//! ROLLBACK and the connection goes back to the pool outside any transaction. Behind that, a
//! connection goes back only when its attempt ended outside any transaction
//! ([`Lease::release`]); after a panic, a failed ROLLBACK or a COMMIT whose answer was an
//! error, its [`Lease`] is dropped and the connection closed, so the pool never checks a
//! connection with a round trip of its own before reuse ([`Reuse::Released`](crate::pool::Reuse)).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use tokenbudget_core::rules::Decision;
use tokenbudget_core::Timestamp;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use tracing::Instrument;

use crate::config::{ClockSource, Config};
use crate::error::{is_connection_failure, PgError};
use crate::gate::Gate;
use crate::pool::Lease;
use crate::rows::{BatchChanges, WriteParams};
use crate::sql;

/// Statement parameters.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// What the store shares with its running operations.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) config: Config,
    pub(crate) gate: Arc<Gate>,
}

/// Which attempt this is, and what earlier ones left behind.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Retry {
    /// 0 for the first attempt.
    pub(crate) attempt: u32,
    /// An earlier attempt lost its connection after sending COMMIT: it may have committed, so
    /// this attempt must recognise its own earlier write instead of repeating it.
    pub(crate) after_unknown_outcome: bool,
}

/// One operation of the store, run by [`run`] once per attempt.
#[async_trait]
pub(crate) trait Op: Send + Sync + 'static {
    /// What the operation returns.
    type Output: Send + 'static;

    /// The operation's name, for traces.
    fn name(&self) -> &'static str;

    /// Whether the caller may run it again when its outcome is unknown (the error's
    /// `retryable` flag in that case).
    fn safe_to_repeat(&self) -> bool;

    /// One attempt. A writing operation begins, locks, decides and ends with
    /// [`Tx::apply`] or [`Tx::finish`]; on `Err` the runner rolls back.
    async fn attempt(&self, tx: &mut Tx<'_>, retry: Retry) -> Result<Self::Output, PgError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No transaction: reads, or before `begin`.
    Idle,
    /// BEGIN sent.
    Open,
    /// COMMIT sent: the transaction ends whatever happens next.
    CommitSent,
}

/// One attempt's connection and transaction state.
pub(crate) struct Tx<'c> {
    /// The pooled connection; its `prepare_cached` keeps prepared statements per connection.
    object: &'c Object,
    state: State,
    gate: &'c Gate,
    clock: ClockSource,
}

impl<'c> Tx<'c> {
    fn new(object: &'c Object, gate: &'c Gate, clock: ClockSource) -> Self {
        Self {
            object,
            state: State::Idle,
            gate,
            clock,
        }
    }

    /// The time to pass to the statements that read the decision's clock: the caller's `now`
    /// with [`ClockSource::Caller`], NULL (the database's clock) with
    /// [`ClockSource::Database`].
    pub(crate) fn caller_now(&self, now: Timestamp) -> Option<i64> {
        match self.clock {
            ClockSource::Caller => Some(now.as_micros()),
            ClockSource::Database => None,
        }
    }

    /// The store's admission to budget trees, to learn trees from the rows locked.
    pub(crate) fn gate(&self) -> &'c Gate {
        self.gate
    }

    fn client(&self) -> &'c Client {
        self.object
    }

    async fn prepare(&self, query: &str) -> Result<Statement, PgError> {
        Ok(self.object.prepare_cached(query).await?)
    }

    /// Begins a transaction, runs the lock statement and then, if given, the read statement,
    /// all pipelined in one round trip.
    pub(crate) async fn begin(
        &mut self,
        lock: (&str, Params<'_>),
        read: Option<(&str, Params<'_>)>,
    ) -> Result<(Vec<Row>, Vec<Row>), PgError> {
        let lock_stmt = self.prepare(lock.0).await?;
        let read_stmt = match read {
            Some((query, params)) => Some((self.prepare(query).await?, params)),
            None => None,
        };
        let client = self.client();
        self.state = State::Open;
        // `biased` polls in order, and each future sends its request on its first poll (every
        // statement is already prepared), so the server receives BEGIN, lock, read in order.
        let (_, locked, read) = tokio::try_join!(
            biased;
            client.batch_execute("BEGIN"),
            client.query(&lock_stmt, lock.1),
            async {
                match &read_stmt {
                    Some((stmt, params)) => client.query(stmt, params).await,
                    None => Ok(Vec::new()),
                }
            },
        )?;
        Ok((locked, read))
    }

    /// A statement inside the transaction (or, for reads, outside any).
    pub(crate) async fn query(
        &mut self,
        query: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, PgError> {
        let stmt = self.prepare(query).await?;
        Ok(self.client().query(&stmt, params).await?)
    }

    /// Writes the rule's decision and commits, or, when the rule refused the command, leaves
    /// the transaction for the runner to roll back.
    pub(crate) async fn apply<T>(
        &mut self,
        decision: tokenbudget_core::Result<Decision<T>>,
    ) -> Result<T, PgError> {
        let decision = decision?;
        self.commit(&decision.changes.into()).await?;
        Ok(decision.outcome)
    }

    /// Commits a transaction that wrote nothing.
    pub(crate) async fn finish(&mut self) -> Result<(), PgError> {
        self.commit(&BatchChanges::default()).await
    }

    /// Writes `changes` in one statement pipelined with `COMMIT`.
    pub(crate) async fn commit(&mut self, changes: &BatchChanges) -> Result<(), PgError> {
        let client = self.client();
        let result = if changes.is_empty() {
            self.state = State::CommitSent;
            client.batch_execute("COMMIT").await
        } else {
            let params = WriteParams::new(changes)?;
            let params = params.as_params();
            let write = self.prepare(sql::WRITE_CHANGES).await?;
            self.state = State::CommitSent;
            // A failed write aborts the transaction and the pipelined COMMIT then rolls it back;
            // `try_join` reports the write's error.
            tokio::try_join!(
                biased;
                client.execute(&write, &params),
                client.batch_execute("COMMIT"),
            )
            .map(|_| ())
        };
        result.map_err(|source| PgError::Postgres {
            source,
            while_committing: true,
        })
    }
}

/// Runs `op` in its own task, so that dropping the returned future never interrupts a
/// transaction (see the module docs).
pub(crate) async fn spawn<O: Op>(shared: Arc<Shared>, op: O) -> Result<O::Output, PgError> {
    let task = tokio::spawn(run(shared, op).in_current_span());
    match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(PgError::Panicked(panic_message(e.into_panic()))),
        Err(e) => Err(PgError::Panicked(e.to_string())),
    }
}

/// Runs `op`, retrying the whole attempt on transient failures with exponential backoff.
pub(crate) async fn run<O: Op>(shared: Arc<Shared>, op: O) -> Result<O::Output, PgError> {
    let config = &shared.config;
    let mut retry = Retry::default();
    loop {
        let result = match Lease::get(&shared.pool).await {
            Ok(lease) => {
                let (result, clean) = attempt(&lease, &shared, &op, retry).await;
                if clean {
                    lease.release();
                }
                result
            }
            Err(e) => Err(PgError::Pool(e)),
        };
        let err = match result {
            Ok(output) => return Ok(output),
            Err(err) => err,
        };
        retry.after_unknown_outcome |= err.outcome_unknown();
        if !err.is_transient() || retry.attempt + 1 >= config.max_attempts {
            if retry.attempt == 0 || matches!(err, PgError::Rejected(_)) {
                return Err(err);
            }
            tracing::warn!(op = op.name(), attempts = retry.attempt + 1, error = %err, "giving up");
            // The error must say the outcome is unknown even when the last attempt failed in
            // another way: the first may have committed.
            return Err(PgError::GaveUp {
                attempts: retry.attempt + 1,
                outcome_unknown: retry.after_unknown_outcome,
                last: Box::new(err),
            });
        }
        let delay = backoff(config, retry.attempt);
        tracing::debug!(op = op.name(), attempt = retry.attempt, ?delay, error = %err, "retrying");
        tokio::time::sleep(delay).await;
        retry.attempt += 1;
    }
}

/// One attempt, and whether its connection ended outside any transaction (and may go back to
/// the pool).
async fn attempt<O: Op>(
    object: &Object,
    shared: &Shared,
    op: &O,
    retry: Retry,
) -> (Result<O::Output, PgError>, bool) {
    let mut tx = Tx::new(object, &shared.gate, shared.config.clock);
    let result = op.attempt(&mut tx, retry).await;
    let clean = match (tx.state, result.is_ok()) {
        // A read, or a COMMIT that answered: no transaction is left.
        (State::Idle, _) | (State::CommitSent, true) => true,
        // Whether the failure was the write's (the pipelined COMMIT then rolled back) or the
        // COMMIT's own is not told apart: the connection goes, which is rare and only costs a
        // new connection.
        (State::CommitSent, false) => false,
        (State::Open, false) => rollback(object).await,
        (State::Open, true) => false,
    };
    (result, clean && !object.is_closed())
}

/// Ends an open transaction after a failed attempt; whether it did. A connection that cannot
/// even do that is closed with its lease.
async fn rollback(object: &Object) -> bool {
    if object.is_closed() {
        return false;
    }
    match object.batch_execute("ROLLBACK").await {
        Ok(()) => true,
        Err(e) => {
            if !is_connection_failure(&e) {
                tracing::warn!(error = %e, "ROLLBACK failed; the connection is closed");
            }
            false
        }
    }
}

/// `base * 2^attempt`, capped, with the upper half jittered so that competing instances
/// spread out.
pub(crate) fn backoff(config: &Config, attempt: u32) -> Duration {
    let exp = config
        .retry_base_delay
        .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .min(config.retry_max_delay);
    let jitter = (uuid::Uuid::new_v4().as_u128() % 1_000) as u32;
    exp / 2 + exp / 2 * jitter / 1_000
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let config = Config::default()
            .with_retry_delays(Duration::from_millis(10), Duration::from_millis(100));
        for attempt in 0..40 {
            let full = (Duration::from_millis(10) * 2u32.saturating_pow(attempt.min(20)))
                .min(Duration::from_millis(100));
            let delay = backoff(&config, attempt);
            assert!(
                delay >= full / 2 && delay <= full,
                "attempt {attempt}: {delay:?}"
            );
        }
    }
}
