//! Calling an async counter from synchronous code.

use tokio::runtime::{Handle, Runtime};

use crate::{Error, Message, Result, TokenCount, TokenCounter};

/// A blocking front for any [`TokenCounter`], with its own single-threaded tokio runtime.
///
/// For the local counters ([`OpenAiCounter`](crate::OpenAiCounter),
/// [`Estimator`](crate::Estimator)) use [`LocalCounter`](crate::LocalCounter) instead: it
/// needs no runtime at all. `Blocking` is for network counters used from plain threads.
///
/// # Behavior
/// - Outside a tokio runtime, `count` and `count_messages` block the calling thread until the
///   inner counter answers.
/// - On a thread that has a tokio runtime (inside `block_on`, a task, or a `spawn_blocking`
///   closure) they return [`Error::InsideRuntime`] at once, without blocking: blocking there
///   could stall or deadlock the caller's runtime. They never panic.
/// - Dropping a `Blocking` is safe anywhere, including inside a runtime.
///
/// ```
/// use tokenbudget_counter::{Blocking, Error, Estimator};
///
/// let counter = Blocking::new(Estimator::default()).unwrap();
/// assert!(counter.count("hello world").is_ok());
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let inside = rt.block_on(async { counter.count("hello world") });
/// assert!(matches!(inside, Err(Error::InsideRuntime)));
/// ```
#[derive(Debug)]
pub struct Blocking<C> {
    inner: C,
    // `Option` so `Drop` can take it and shut it down without blocking.
    runtime: Option<Runtime>,
}

impl<C: TokenCounter> Blocking<C> {
    /// Wraps `inner` and starts the private runtime (no threads are spawned: the runtime runs
    /// on the calling thread during each call).
    pub fn new(inner: C) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Blocking {
            inner,
            runtime: Some(runtime),
        })
    }

    /// The wrapped counter.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Blocks on [`TokenCounter::count`].
    pub fn count(&self, text: &str) -> Result<TokenCount> {
        self.runtime()?.block_on(self.inner.count(text))
    }

    /// Blocks on [`TokenCounter::count_messages`].
    pub fn count_messages(&self, messages: &[Message]) -> Result<TokenCount> {
        self.runtime()?
            .block_on(self.inner.count_messages(messages))
    }

    fn runtime(&self) -> Result<&Runtime> {
        if Handle::try_current().is_ok() {
            return Err(Error::InsideRuntime);
        }
        Ok(self
            .runtime
            .as_ref()
            .expect("the runtime is only taken in Drop"))
    }
}

impl<C> Drop for Blocking<C> {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // A plain drop panics inside an async context; this never blocks.
            runtime.shutdown_background();
        }
    }
}
