//! [`TokenBudgetBuilder`]: a store or URL, the clock, ids, default timeout and counter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokenbudget_core::{Clock, DynBudgetStore, IdGenerator, Tracker, DEFAULT_TIMEOUT};
use tokenbudget_counter::TokenCounter;

use crate::client::TokenBudget;
use crate::error::{Error, Result};
use crate::registry::StoreRegistry;

/// Where the builder gets its store.
enum Source {
    Store(DynBudgetStore),
    Url(String),
}

/// Builds a [`TokenBudget`]: the store (an instance or a URL), the clock, the id generator,
/// the default reservation timeout, the counter and the background sweeper.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tokenbudget::{Estimator, ManualClock, MemoryStore, Timestamp, TokenBudget};
///
/// let clock = Arc::new(ManualClock::new(Timestamp::EPOCH));
/// let budgets = TokenBudget::builder()
///     .store(MemoryStore::shared())
///     .clock(clock.clone())
///     .default_timeout(Duration::from_secs(30))
///     .counter(Estimator::default())
///     .build()
///     .await?;
/// assert_eq!(budgets.default_timeout(), Duration::from_secs(30));
/// # Ok::<(), tokenbudget::Error>(())
/// # }).unwrap();
/// ```
#[must_use]
pub struct TokenBudgetBuilder {
    source: Option<Source>,
    registry: Option<StoreRegistry>,
    clock: Option<Arc<dyn Clock>>,
    ids: Option<Arc<dyn IdGenerator>>,
    default_timeout: Duration,
    counter: Option<Arc<dyn TokenCounter>>,
    sweep_every: Option<Duration>,
    prices: Option<Arc<tokenbudget_prices::PriceTable>>,
}

/// How often the background sweeper runs when the builder is not told otherwise: 30 seconds.
///
/// Expired holds never cause a refusal (every write releases its tree's first), so the
/// sweeper only tidies: it releases holds of crashed callers in trees nobody writes to.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

impl fmt::Debug for TokenBudgetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Some(Source::Store(store)) => format!("store({})", store.backend()),
            Some(Source::Url(url)) => format!("url({})", crate::parse::redact(url)),
            None => "none".to_owned(),
        };
        f.debug_struct("TokenBudgetBuilder")
            .field("source", &source)
            .field("registry", &self.registry)
            .field("clock", &self.clock)
            .field("ids", &self.ids)
            .field("default_timeout", &self.default_timeout)
            .field("counter", &self.counter.as_ref().map(|_| "custom"))
            .field("sweep_every", &self.sweep_every)
            .finish()
    }
}

impl Default for TokenBudgetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenBudgetBuilder {
    /// No store yet; every other setting at its default.
    pub fn new() -> Self {
        Self {
            source: None,
            registry: None,
            clock: None,
            ids: None,
            default_timeout: DEFAULT_TIMEOUT,
            counter: None,
            sweep_every: Some(DEFAULT_SWEEP_INTERVAL),
            prices: None,
        }
    }

    /// Runs the background sweeper every `interval`, or not at all with `None` (a short-lived
    /// process, or one that runs its own). Defaults to [`DEFAULT_SWEEP_INTERVAL`].
    pub fn sweep_every(mut self, interval: Option<Duration>) -> Self {
        self.sweep_every = interval;
        self
    }

    /// Prices usage on `usd` budgets with `prices` (for example the embedded snapshot with a
    /// `--prices FILE` override). Defaults to [`PriceTable::embedded`](tokenbudget_prices::PriceTable::embedded).
    pub fn prices(mut self, prices: tokenbudget_prices::PriceTable) -> Self {
        self.prices = Some(Arc::new(prices));
        self
    }

    /// Uses `store`. Replaces a URL given before.
    pub fn store(mut self, store: DynBudgetStore) -> Self {
        self.source = Some(Source::Store(store));
        self
    }

    /// Opens the store at `url` when built (`memory://`, `sqlite://path.db`,
    /// `sqlite:///abs/path.db`, `sqlite::memory:`, `postgres://…`, or a registered scheme).
    /// Replaces a store given before.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Some(Source::Url(url.into()));
        self
    }

    /// Opens URLs with `registry`. Defaults to [`StoreRegistry::with_defaults`].
    pub fn registry(mut self, registry: StoreRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Sets the clock. Defaults to [`SystemClock`](crate::SystemClock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the reservation id generator. Defaults to [`UuidV7Ids`](crate::UuidV7Ids).
    pub fn ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = Some(ids);
        self
    }

    /// Sets the timeout of reserves that give none. Defaults to 5 minutes.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Sets the counter that sizes requests.
    ///
    /// Defaults to the exact OpenAI counter for `o200k_base` (gpt-4o and later) with feature
    /// `tiktoken`, and to the [`Estimator`](crate::Estimator) without it.
    pub fn counter(self, counter: impl TokenCounter + 'static) -> Self {
        self.shared_counter(Arc::new(counter))
    }

    /// Sets a shared counter.
    pub fn shared_counter(mut self, counter: Arc<dyn TokenCounter>) -> Self {
        self.counter = Some(counter);
        self
    }

    /// Opens the store if a URL was given, and builds.
    ///
    /// # Errors
    /// [`Error::NoStore`] when neither a store nor a URL was given; otherwise those of
    /// [`StoreRegistry::open`].
    pub async fn build(self) -> Result<TokenBudget> {
        let store = match self.source {
            Some(Source::Store(store)) => store,
            Some(Source::Url(url)) => {
                let registry = self.registry.unwrap_or_else(StoreRegistry::with_defaults);
                registry.open(&url).await?
            }
            None => return Err(Error::NoStore),
        };
        let mut tracker = Tracker::builder(store).default_timeout(self.default_timeout);
        if let Some(clock) = self.clock {
            tracker = tracker.clock(clock);
        }
        if let Some(ids) = self.ids {
            tracker = tracker.ids(ids);
        }
        let tracker = tracker.build();
        let sweeper = self
            .sweep_every
            .filter(|interval| !interval.is_zero())
            .map(|interval| Arc::new(tracker.spawn_sweeper(interval)));
        Ok(TokenBudget {
            tracker,
            counter: self.counter.unwrap_or_else(default_counter),
            sweeper,
            prices: self
                .prices
                .unwrap_or_else(|| Arc::new(tokenbudget_prices::PriceTable::embedded())),
        })
    }
}

#[cfg(feature = "tiktoken")]
fn default_counter() -> Arc<dyn TokenCounter> {
    Arc::new(tokenbudget_counter::OpenAiCounter::new(
        tokenbudget_counter::Encoding::DEFAULT,
    ))
}

#[cfg(not(feature = "tiktoken"))]
fn default_counter() -> Arc<dyn TokenCounter> {
    Arc::new(tokenbudget_counter::Estimator::new(
        tokenbudget_counter::Encoding::DEFAULT,
    ))
}
