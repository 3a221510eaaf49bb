//! Backoff between whole-transaction retries while other processes hold the database locked.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use crate::error::SqliteError;

/// The first pause; it doubles per attempt up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Exponential backoff with jitter, bounded by a deadline.
#[derive(Debug)]
pub(crate) struct Backoff {
    started: Instant,
    deadline: Instant,
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(deadline: Instant) -> Self {
        Self {
            started: Instant::now(),
            deadline,
            attempts: 0,
        }
    }

    /// After attempt `n` failed with the busy error `busy`: sleeps before the next attempt, or
    /// returns [`SqliteError::GaveUp`] (retryable) once the deadline has passed.
    pub(crate) async fn wait(&mut self, busy: SqliteError) -> Result<(), SqliteError> {
        self.attempts += 1;
        let now = Instant::now();
        if now >= self.deadline {
            return Err(match busy {
                SqliteError::Sqlx(source) => SqliteError::GaveUp {
                    attempts: self.attempts,
                    elapsed: now - self.started,
                    source,
                },
                other => other,
            });
        }
        let pause = pause(self.attempts).min(self.deadline - now);
        tracing::debug!(
            attempt = self.attempts,
            ?pause,
            "tokenbudget-sqlite: database locked, retrying"
        );
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// The pause after `attempts` failures: a random point in the upper half of the doubling
/// window, so processes retrying together spread out.
fn pause(attempts: u32) -> Duration {
    let window = FIRST_PAUSE
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(MAX_PAUSE);
    let half = window / 2;
    let jitter = RandomState::new().build_hasher().finish() % (half.as_micros() as u64 + 1);
    half + Duration::from_micros(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_then_cap() {
        for attempts in 1..40 {
            let p = pause(attempts);
            assert!(p <= MAX_PAUSE, "{attempts}: {p:?}");
            assert!(p >= FIRST_PAUSE / 2, "{attempts}: {p:?}");
        }
        assert!(pause(20) >= MAX_PAUSE / 2);
    }

    #[tokio::test]
    async fn gives_up_with_a_retryable_error_after_the_deadline() {
        let mut backoff = Backoff::new(Instant::now());
        let busy = SqliteError::Sqlx(sqlx::Error::PoolTimedOut);
        let err = backoff.wait(busy).await.unwrap_err();
        assert!(matches!(err, SqliteError::GaveUp { attempts: 1, .. }));
        let core: tokenbudget_core::Error = err.into();
        assert!(core.is_retryable());
        assert!(matches!(
            core,
            tokenbudget_core::Error::Storage {
                backend: "sqlite",
                ..
            }
        ));
    }
}
