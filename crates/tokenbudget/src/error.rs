//! The facade's error type: the core's and the counters' errors, plus opening a store by URL.

/// `Result` with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the facade can fail with.
///
/// Budget and storage errors keep the core's type inside [`Error::Core`] (match on it for
/// `BudgetNotFound`, `InvalidAmount`, …), counting errors the counters' inside
/// [`Error::Count`]. The other variants are about choosing a store by URL. Not having enough
/// budget is not an error: it is a [`Refusal`](crate::Refusal) inside the outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A budget, reservation or storage error from the tracker or a store.
    #[error(transparent)]
    Core(#[from] tokenbudget_core::Error),
    /// The configured counter could not count the prompt.
    #[error(transparent)]
    Count(#[from] tokenbudget_counter::Error),
    /// The store URL cannot be parsed. Its password, if any, is hidden.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, password hidden.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL's scheme is a built-in backend that this build was compiled without.
    #[error(
        "store URL scheme `{scheme}:` needs feature `{feature}` of the `tokenbudget` crate, \
         which is not enabled in this build"
    )]
    FeatureNotEnabled {
        /// The scheme, lowercased.
        scheme: String,
        /// The Cargo feature that compiles its store in.
        feature: &'static str,
    },
    /// No factory is registered for the URL's scheme.
    #[error("no store is registered for URL scheme `{scheme}:` (registered: {})", known.join(", "))]
    UnknownScheme {
        /// The scheme, lowercased.
        scheme: String,
        /// The schemes that are registered, sorted.
        known: Vec<String>,
    },
    /// A usage could not be priced for a `usd` budget (an unknown model, a kind of token the
    /// model has no price for).
    #[error(transparent)]
    Price(#[from] tokenbudget_prices::Error),
    /// A `usd` budget was given usage without the model that priced it.
    #[error("a usd budget prices usage by model: name the model (the reservation has none)")]
    ModelRequired,
    /// The tracker builder was given neither a store nor a URL.
    #[error("no store: give the builder a store (`.store(…)`) or a URL (`.url(…)`)")]
    NoStore,
}

impl Error {
    /// True when trying the same operation again may succeed: storage contention, a
    /// transient connection failure, or a counter that timed out or was rate limited.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Core(e) => e.is_retryable(),
            Self::Count(e) => e.is_retryable(),
            Self::InvalidUrl { .. }
            | Self::FeatureNotEnabled { .. }
            | Self::UnknownScheme { .. }
            | Self::Price(_)
            | Self::ModelRequired
            | Self::NoStore => false,
        }
    }

    /// The core error inside, if this is one.
    pub fn as_core(&self) -> Option<&tokenbudget_core::Error> {
        match self {
            Self::Core(e) => Some(e),
            _ => None,
        }
    }
}
