//! Any counter with any fallback.

use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;

use crate::{Error, Exactness, FallbackCause, Message, Result, TokenCount, TokenCounter};

/// Answers with `primary`, or with `fallback` when `primary` is unavailable.
///
/// # Behavior
/// - A primary success is returned as is.
/// - A primary error with a [`fallback_cause`](Error::fallback_cause) (network error, timeout,
///   429, 5xx, 529, 401/403, missing key, malformed response) is answered by the fallback; the
///   result is marked [`Exactness::Estimated`] and names the fallback as its counter.
/// - Any other primary error (an invalid request) is returned unchanged, and the fallback is
///   not asked.
/// - The first fallback for each [`FallbackCause`] logs one `tracing` warning with fields
///   `cause`, `counter` and `error`; later ones for the same cause log at debug level. A
///   primary success re-arms the warnings, so the next outage is reported again.
///
/// The warnings are tracked per `WithFallback` value: share one (in an `Arc`) rather than
/// building one per request.
#[derive(Debug)]
pub struct WithFallback<P, F> {
    primary: P,
    fallback: F,
    warned: AtomicU32,
}

impl<P, F> WithFallback<P, F> {
    /// `primary`, falling back to `fallback`.
    pub fn new(primary: P, fallback: F) -> Self {
        WithFallback {
            primary,
            fallback,
            warned: AtomicU32::new(0),
        }
    }

    /// The primary counter.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The fallback counter.
    pub fn fallback(&self) -> &F {
        &self.fallback
    }

    fn on_success(&self) {
        if self.warned.load(Ordering::Relaxed) != 0 && self.warned.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!("token counter available again; fallback warnings re-armed");
        }
    }

    fn on_unavailable(&self, cause: FallbackCause, error: &Error, counter: &str) {
        let before = self.warned.fetch_or(cause.bit(), Ordering::Relaxed);
        if before & cause.bit() == 0 {
            tracing::warn!(
                cause = cause.as_str(),
                counter,
                error = %error,
                "token counter unavailable; answering with the fallback estimate \
                 (logged once per cause until the counter recovers)"
            );
        } else {
            tracing::debug!(cause = cause.as_str(), counter, error = %error, "token counter fell back");
        }
    }
}

impl<P: TokenCounter, F: TokenCounter> WithFallback<P, F> {
    async fn answer(
        &self,
        primary: Result<TokenCount>,
        fallback: impl std::future::Future<Output = Result<TokenCount>>,
    ) -> Result<TokenCount> {
        match primary {
            Ok(count) => {
                self.on_success();
                Ok(count)
            }
            Err(error) => match error.fallback_cause() {
                Some(cause) => {
                    self.on_unavailable(cause, &error, std::any::type_name::<P>());
                    let mut count = fallback.await?;
                    count.exactness = Exactness::Estimated;
                    Ok(count)
                }
                None => Err(error),
            },
        }
    }
}

#[async_trait]
impl<P: TokenCounter, F: TokenCounter> TokenCounter for WithFallback<P, F> {
    async fn count(&self, text: &str) -> Result<TokenCount> {
        let primary = self.primary.count(text).await;
        self.answer(primary, self.fallback.count(text)).await
    }

    async fn count_messages(&self, messages: &[Message]) -> Result<TokenCount> {
        let primary = self.primary.count_messages(messages).await;
        self.answer(primary, self.fallback.count_messages(messages))
            .await
    }
}
