//! Opening a store from a URL: a registry of factories, one per URL scheme, that users can
//! extend with their own (as sqlx installs drivers).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tokenbudget_core::DynBudgetStore;

use crate::error::{Error, Result};
use crate::parse;

/// Opens a store from a URL of the scheme it is registered for.
///
/// Implement it for a type, or pass an async closure taking the URL as a `String`:
///
/// ```
/// use std::sync::Arc;
/// use tokenbudget::{DynBudgetStore, MemoryStore, StoreRegistry};
///
/// let registry = StoreRegistry::with_defaults().register("scratch", |url: String| async move {
///     // A real factory would read host, path or options from `url`.
///     assert!(url.starts_with("scratch:"));
///     Ok::<DynBudgetStore, tokenbudget::Error>(Arc::new(MemoryStore::new()))
/// });
/// assert!(registry.schemes().any(|s| s == "scratch"));
/// ```
#[async_trait]
pub trait StoreFactory: Send + Sync + 'static {
    /// Opens the store `url` names. `url` is passed whole, scheme included.
    async fn open(&self, url: &str) -> Result<DynBudgetStore>;
}

#[async_trait]
impl<F, Fut> StoreFactory for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<DynBudgetStore>> + Send + 'static,
{
    async fn open(&self, url: &str) -> Result<DynBudgetStore> {
        self(url.to_owned()).await
    }
}

/// URL schemes and the factories that open their stores.
///
/// [`StoreRegistry::with_defaults`] knows `memory:` and the schemes of the backends compiled
/// in (`sqlite:` with feature `sqlite`, `postgres:` and `postgresql:` with feature
/// `postgres`); [`StoreRegistry::register`] adds or replaces a scheme.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use tokenbudget::StoreRegistry;
///
/// let store = StoreRegistry::with_defaults().open("memory://").await?;
/// assert_eq!(store.backend(), "memory");
/// # Ok::<(), tokenbudget::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct StoreRegistry {
    factories: BTreeMap<String, Arc<dyn StoreFactory>>,
}

impl fmt::Debug for StoreRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreRegistry")
            .field("schemes", &self.factories.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StoreRegistry {
    /// A registry with no scheme at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// `memory:` and every backend compiled into this build.
    pub fn with_defaults() -> Self {
        let mut registry = Self::new();
        crate::factories::install_defaults(&mut registry);
        registry
    }

    /// Registers `factory` for `scheme` (case-insensitive, without the `:`), replacing any
    /// factory the scheme had, built-in ones included.
    ///
    /// # Panics
    /// When `scheme` is not a URL scheme (a letter, then letters, digits, `+`, `-`, `.`):
    /// that is a mistake in the calling code, not in its input.
    pub fn register(mut self, scheme: &str, factory: impl StoreFactory) -> Self {
        self.insert(scheme, Arc::new(factory));
        self
    }

    /// Registers a shared `factory` for `scheme`; returns the factory it replaces.
    ///
    /// # Panics
    /// As [`StoreRegistry::register`].
    pub fn insert(
        &mut self,
        scheme: &str,
        factory: Arc<dyn StoreFactory>,
    ) -> Option<Arc<dyn StoreFactory>> {
        assert!(
            parse::is_scheme(scheme),
            "{scheme:?} is not a URL scheme: a letter, then letters, digits, `+`, `-` or `.`"
        );
        self.factories.insert(scheme.to_ascii_lowercase(), factory)
    }

    /// The registered schemes, sorted.
    pub fn schemes(&self) -> impl Iterator<Item = &str> + '_ {
        self.factories.keys().map(String::as_str)
    }

    /// Opens the store `url` names with the factory of its scheme.
    ///
    /// # Errors
    /// - [`Error::InvalidUrl`] when `url` has no scheme.
    /// - [`Error::FeatureNotEnabled`] when the scheme is a built-in backend this build lacks
    ///   and no factory was registered for it.
    /// - [`Error::UnknownScheme`] for any other scheme without a factory.
    /// - Whatever the factory returns (bad URL details, an unreachable database, …).
    pub async fn open(&self, url: &str) -> Result<DynBudgetStore> {
        let scheme = parse::scheme(url)?;
        if let Some(factory) = self.factories.get(&scheme) {
            return factory.open(url).await;
        }
        match parse::builtin_feature(&scheme) {
            Some((feature, false)) => Err(Error::FeatureNotEnabled { scheme, feature }),
            _ => Err(Error::UnknownScheme {
                scheme,
                known: self.factories.keys().cloned().collect(),
            }),
        }
    }
}

/// Opens the store `url` names with [`StoreRegistry::with_defaults`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = tokenbudget::open("memory://").await?;
/// assert_eq!(store.backend(), "memory");
/// # Ok::<(), tokenbudget::Error>(())
/// # }).unwrap();
/// ```
pub async fn open(url: &str) -> Result<DynBudgetStore> {
    StoreRegistry::with_defaults().open(url).await
}
