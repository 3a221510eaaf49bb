//! Group commit: the operations queued for the writer connection run one after another in a
//! single `BEGIN IMMEDIATE` transaction, acknowledged together after its one `COMMIT`.
//!
//! Each operation still loads its own snapshot and calls its own rule, after the writes of
//! the operations before it in the batch (same transaction; their writes wait in the batch's
//! [`Unit`] and are merged into later reads), exactly as if it had its own transaction right
//! after theirs; nothing is acknowledged before the commit. What the batch saves is the
//! commit itself: one fsync (with `synchronous = FULL`) and one turn at the write lock for up
//! to [`MAX_BATCH`] operations, and most statements: an operation on existing rows reads with
//! one, and the batch writes with a few multi-row ones. That is what keeps latency flat when
//! many tasks write at once.
//!
//! If the database is busy, the whole batch is rolled back and run again from the start. If
//! one operation hits a storage error, the batch is rolled back and run again without it, so
//! one failure never half-applies or fails its neighbours. A failure of the batch's one
//! write, which no single operation can be blamed for, runs the batch again writing after
//! each operation, where failures have an owner.

use std::future::Future;
use std::pin::Pin;

use sqlx::sqlite::SqliteTransactionManager;
use sqlx::{Connection, SqliteConnection, TransactionManager};
use tokio::sync::oneshot;

use crate::error::SqliteError;
use crate::ops::Operation;
use crate::retry::Backoff;
use crate::unit::Unit;

/// The most operations one transaction carries.
pub(crate) const MAX_BATCH: usize = 32;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A queued operation, whatever its outcome type.
pub(crate) trait Job: Send {
    /// True when the caller stopped waiting before the operation started: skip it.
    fn is_cancelled(&self) -> bool;
    /// True once the operation has failed for good (it is left out of later attempts).
    fn has_failed(&self) -> bool;
    /// Loads and decides inside the open transaction, and hands the writes to `unit` (which
    /// writes them now when eager). `Err` is a storage error; a rule's rejection is an answer,
    /// kept for the reply.
    fn apply<'a>(
        &'a mut self,
        conn: &'a mut SqliteConnection,
        unit: &'a mut Unit,
    ) -> BoxFuture<'a, Result<(), SqliteError>>;
    /// Forgets the answer of an attempt that was rolled back (a failure stays).
    fn reset(&mut self);
    /// Fails the operation for good.
    fn fail(&mut self, error: tokenbudget_core::Error);
    /// Sends the answer to the caller.
    fn reply(self: Box<Self>);
}

/// An [`Operation`] and where its answer goes.
pub(crate) struct Pending<O: Operation> {
    op: O,
    answer: Option<tokenbudget_core::Result<O::Outcome>>,
    failed: bool,
    reply: oneshot::Sender<tokenbudget_core::Result<O::Outcome>>,
}

impl<O: Operation> Pending<O> {
    pub(crate) fn new(op: O, reply: oneshot::Sender<tokenbudget_core::Result<O::Outcome>>) -> Self {
        Self {
            op,
            answer: None,
            failed: false,
            reply,
        }
    }
}

impl<O: Operation> Job for Pending<O> {
    fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }

    fn has_failed(&self) -> bool {
        self.failed
    }

    fn apply<'a>(
        &'a mut self,
        conn: &'a mut SqliteConnection,
        unit: &'a mut Unit,
    ) -> BoxFuture<'a, Result<(), SqliteError>> {
        Box::pin(async move {
            let decision = match self.op.decide(conn, unit).await {
                Ok(decision) => decision,
                Err(SqliteError::Rejected(e)) => {
                    self.answer = Some(Err(e));
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            unit.record(&decision.changes);
            if unit.is_eager() {
                unit.flush(conn).await?;
            }
            self.answer = Some(Ok(decision.outcome));
            Ok(())
        })
    }

    fn reset(&mut self) {
        if !self.failed {
            self.answer = None;
        }
    }

    fn fail(&mut self, error: tokenbudget_core::Error) {
        self.failed = true;
        self.answer = Some(Err(error));
    }

    fn reply(self: Box<Self>) {
        let answer = self.answer.unwrap_or_else(|| {
            Err(tokenbudget_core::Error::storage(
                "sqlite",
                false,
                "the operation was not run (internal error)",
            ))
        });
        // The caller may have stopped waiting; the operation stands all the same.
        let _ = self.reply.send(answer);
    }
}

/// Runs `jobs` in one transaction, retrying while busy until the backoff's deadline. Every
/// job ends with an answer: its outcome, its rejection, or a storage error.
pub(crate) async fn run(
    conn: &mut SqliteConnection,
    jobs: &mut [Box<dyn Job>],
    mut backoff: Backoff,
) {
    // Writes wait in the unit until the end, unless an earlier attempt's write failed.
    let mut eager = false;
    'attempt: loop {
        for job in jobs.iter_mut() {
            job.reset();
        }
        if conn.is_in_transaction() {
            // Never expected (a batch is never cut midway), but if a stray transaction is
            // open, end it rather than fail every later operation.
            tracing::warn!("tokenbudget-sqlite: rolling back a stray transaction");
            if let Err(e) = <SqliteTransactionManager as TransactionManager>::rollback(conn).await {
                return fail_all(jobs, e.into());
            }
        }
        let mut tx = match conn.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => tx,
            Err(e) => match wait_if_busy(&mut backoff, e.into()).await {
                Ok(()) => continue 'attempt,
                Err(e) => return fail_all(jobs, e),
            },
        };
        let mut unit = Unit::new(eager);
        for job in jobs.iter_mut().filter(|job| !job.has_failed()) {
            if let Err(e) = job.apply(&mut tx, &mut unit).await {
                let _ = tx.rollback().await;
                if e.is_busy() {
                    match backoff.wait(e).await {
                        Ok(()) => continue 'attempt,
                        Err(e) => return fail_all(jobs, e),
                    }
                }
                // This operation fails alone (its own read, or its own write when eager);
                // the others run again without it.
                job.fail(e.into());
                continue 'attempt;
            }
        }
        if let Err(e) = unit.flush(&mut tx).await {
            let _ = tx.rollback().await;
            if e.is_busy() {
                match backoff.wait(e).await {
                    Ok(()) => continue 'attempt,
                    Err(e) => return fail_all(jobs, e),
                }
            }
            tracing::debug!(error = %e, "tokenbudget-sqlite: batch write failed; writing per operation");
            eager = true;
            continue 'attempt;
        }
        match tx.commit().await {
            Ok(()) => return,
            Err(e) => match wait_if_busy(&mut backoff, e.into()).await {
                Ok(()) => continue 'attempt,
                Err(e) => return fail_all(jobs, e),
            },
        }
    }
}

/// `Ok` after a pause when `e` is busy and the deadline allows another attempt; else the
/// error to fail with.
async fn wait_if_busy(backoff: &mut Backoff, e: SqliteError) -> Result<(), SqliteError> {
    if e.is_busy() {
        backoff.wait(e).await
    } else {
        Err(e)
    }
}

/// Fails every job not yet failed with (a description of) `e`.
fn fail_all(jobs: &mut [Box<dyn Job>], e: SqliteError) {
    let shared = tokenbudget_core::Error::from(e);
    let message = shared.to_string();
    let retryable = shared.is_retryable();
    let mut first = Some(shared);
    for job in jobs.iter_mut().filter(|job| !job.has_failed()) {
        let error = first
            .take()
            .unwrap_or_else(|| tokenbudget_core::Error::Storage {
                backend: "sqlite",
                message: message.clone(),
                retryable,
                source: None,
            });
        job.fail(error);
    }
}
