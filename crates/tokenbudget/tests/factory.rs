//! Opening stores by URL: each built-in scheme, a backend compiled out, a custom scheme.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokenbudget::{DynBudgetStore, Error, MemoryStore, StoreRegistry, TokenBudget};
use tokenbudget_core::testkit::{suite, StoreHarness};

/// A harness whose stores come from the registry, so the suite checks what the URL opened.
struct ByUrl(&'static str);

#[async_trait::async_trait]
impl StoreHarness for ByUrl {
    async fn fresh_store(&self) -> DynBudgetStore {
        tokenbudget::open(self.0).await.expect("open by URL")
    }
}

async fn run_some_of_the_suite(h: &ByUrl) {
    suite::create_workflow_and_phase(h).await;
    suite::reserve_holds_on_budget_and_every_ancestor(h).await;
    suite::refusal_names_the_budget_that_lacks_room(h).await;
    suite::commit_releases_the_unused_difference(h).await;
    suite::idempotency_key_replays_the_first_answer(h).await;
}

#[tokio::test]
async fn memory_urls_open_a_new_empty_store_each_time() {
    for url in ["memory://", "memory:", "MEMORY://"] {
        let a = TokenBudget::open(url).await.unwrap();
        assert_eq!(a.store().backend(), "memory", "{url}");
        a.create_workflow("wf", 10).await.unwrap();
        let b = TokenBudget::open(url).await.unwrap();
        assert!(
            b.list().await.unwrap().is_empty(),
            "{url}: stores are not shared"
        );
    }
    run_some_of_the_suite(&ByUrl("memory://")).await;
}

#[tokio::test]
async fn memory_urls_take_no_name_and_hide_passwords_in_errors() {
    let err = tokenbudget::open("memory://team-a").await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidUrl { url, reason } if url == "memory://team-a" && reason.contains("new, empty store")),
        "{err:?}"
    );
    let err = tokenbudget::open("memory://user:hunter2@host")
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("memory://user:***@host"), "{shown}");
}

#[tokio::test]
async fn a_url_without_a_scheme_is_invalid() {
    for url in ["budgets.db", "", "/var/lib/budgets.db", "9p://x"] {
        let err = tokenbudget::open(url).await.unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn unknown_schemes_list_the_registered_ones() {
    let err = tokenbudget::open("redis://localhost").await.unwrap_err();
    let Error::UnknownScheme { scheme, known } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(scheme, "redis");
    assert!(known.iter().any(|s| s == "memory"), "{known:?}");
    assert_eq!(
        known.iter().any(|s| s == "sqlite"),
        cfg!(feature = "sqlite")
    );
    assert_eq!(
        known.iter().any(|s| s == "postgres"),
        cfg!(feature = "postgres")
    );
    assert!(err.to_string().contains("redis:"), "{err}");
}

#[tokio::test]
async fn an_empty_registry_calls_compiled_in_schemes_unknown() {
    // Not "feature not enabled" when the feature is on: nothing is registered, that's all.
    let registry = StoreRegistry::new();
    assert_eq!(registry.schemes().count(), 0);
    for (url, compiled_in) in [
        ("memory://", true),
        ("sqlite::memory:", cfg!(feature = "sqlite")),
        ("postgres://h/db", cfg!(feature = "postgres")),
    ] {
        let err = registry.open(url).await.unwrap_err();
        if compiled_in {
            assert!(
                matches!(&err, Error::UnknownScheme { known, .. } if known.is_empty()),
                "{url}: {err:?}"
            );
        } else {
            assert!(
                matches!(err, Error::FeatureNotEnabled { .. }),
                "{url}: {err:?}"
            );
        }
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use tokenbudget::ReserveOptions;

    #[tokio::test]
    async fn sqlite_memory_opens_a_private_database() {
        let a = TokenBudget::open("sqlite::memory:").await.unwrap();
        assert_eq!(a.store().backend(), "sqlite");
        a.create_workflow("wf", 10).await.unwrap();
        let b = TokenBudget::open("sqlite::memory:").await.unwrap();
        assert!(b.list().await.unwrap().is_empty());
        run_some_of_the_suite(&ByUrl("sqlite::memory:")).await;
    }

    #[tokio::test]
    async fn sqlite_absolute_path_creates_the_file_and_keeps_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budgets.db");
        let url = format!("sqlite://{}", path.display());
        assert!(
            url.starts_with("sqlite:///"),
            "three slashes for an absolute path"
        );
        {
            let budgets = TokenBudget::open(&url).await.unwrap();
            budgets.create_workflow("wf", 1_000).await.unwrap();
            let grant = budgets
                .reserve("wf", 300, ReserveOptions::new())
                .await
                .unwrap()
                .into_result()
                .unwrap();
            budgets.commit(grant.reservation.id, 120).await.unwrap();
        }
        assert!(path.exists(), "created on first use");
        let again = TokenBudget::open(&url).await.unwrap();
        let status = again.status("wf").await.unwrap();
        assert_eq!(
            (status.used, status.reserved, status.available),
            (120, 0, 880)
        );
    }

    #[tokio::test]
    async fn sqlite_scheme_is_case_insensitive_and_bad_paths_are_storage_errors() {
        let store = tokenbudget::open("SQLITE::memory:").await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        let err = tokenbudget::open("sqlite:///no/such/dir/budgets.db")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_core(),
                Some(tokenbudget::CoreError::Storage {
                    backend: "sqlite",
                    ..
                })
            ),
            "{err:?}"
        );
    }
}

#[cfg(not(feature = "sqlite"))]
#[tokio::test]
async fn sqlite_urls_name_the_missing_feature() {
    for url in [
        "sqlite://budgets.db",
        "sqlite:///tmp/b.db",
        "sqlite::memory:",
    ] {
        let err = tokenbudget::open(url).await.unwrap_err();
        assert!(
            matches!(&err, Error::FeatureNotEnabled { scheme, feature: "sqlite" } if scheme == "sqlite"),
            "{url}: {err:?}"
        );
        assert!(err.to_string().contains("feature `sqlite`"), "{err}");
    }
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn postgres_urls_name_the_missing_feature() {
    for (url, scheme) in [
        ("postgres://app:s3cret@127.0.0.1:5432/test", "postgres"),
        ("postgresql://127.0.0.1/test", "postgresql"),
    ] {
        let err = TokenBudget::open(url).await.unwrap_err();
        assert!(
            matches!(&err, Error::FeatureNotEnabled { scheme: s, feature: "postgres" } if s == scheme),
            "{url}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("feature `postgres`"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use tokenbudget::ReserveOptions;

    /// The test database: `TOKENBUDGET_TEST_POSTGRES_URL`, else the local default.
    fn database() -> String {
        std::env::var("TOKENBUDGET_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A schema of this test's own, dropped when the guard is.
    struct Schema(String);

    impl Schema {
        fn new() -> Self {
            Self(format!("tb_facade_{}", uuid::Uuid::new_v4().simple()))
        }

        /// `database` in this schema, under `scheme`.
        fn url(&self, scheme: &str) -> String {
            let database = database();
            let rest = database
                .split_once("://")
                .map_or(database.as_str(), |(_, r)| r);
            format!("{scheme}://{rest}?schema={}", self.0)
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
            let drop = async move {
                let (client, connection) =
                    tokio_postgres::connect(&database(), tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&sql).await
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = std::thread::spawn(move || runtime.unwrap().block_on(drop)).join();
            if !matches!(result, Ok(Ok(()))) {
                eprintln!("could not drop schema {}", self.0);
            }
        }
    }

    /// Opens `url`; `None` when Postgres is unreachable outside CI, a failure under `CI=true`.
    async fn open(url: &str) -> Option<TokenBudget> {
        match TokenBudget::open(url).await {
            Ok(budgets) => Some(budgets),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("Postgres is unreachable under CI=true: {e}")
            }
            Err(e) => {
                eprintln!("skipping: Postgres is unreachable: {e}");
                None
            }
        }
    }

    #[tokio::test]
    async fn postgres_and_postgresql_urls_open_the_postgres_store() {
        for scheme in ["postgres", "postgresql"] {
            let schema = Schema::new();
            let Some(budgets) = open(&schema.url(scheme)).await else {
                return;
            };
            assert_eq!(budgets.store().backend(), "postgres");
            budgets.create_workflow("wf", 100).await.unwrap();
            let outcome = budgets
                .reserve("wf", 60, ReserveOptions::new())
                .await
                .unwrap();
            assert!(outcome.granted().is_some());
            let refused = budgets
                .reserve("wf", 60, ReserveOptions::new())
                .await
                .unwrap();
            assert_eq!(refused.refused().map(|r| r.available), Some(40));
        }
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_a_storage_error() {
        let err = tokenbudget::open("postgres://postgres@127.0.0.1:1/test")
            .await
            .unwrap_err();
        assert!(
            matches!(err.as_core(), Some(tokenbudget::CoreError::Storage { .. })),
            "{err:?}"
        );
    }
}

/// A store that counts the operations it serves, opened by a factory that records its URLs.
#[tokio::test]
async fn a_registered_scheme_opens_a_custom_store() {
    let urls = Arc::new(Mutex::new(Vec::<String>::new()));
    let opened = Arc::new(AtomicUsize::new(0));
    let registry = StoreRegistry::with_defaults().register("MyStore", {
        let urls = urls.clone();
        let opened = opened.clone();
        move |url: String| {
            let urls = urls.clone();
            let opened = opened.clone();
            async move {
                if url.contains("fail") {
                    return Err(Error::InvalidUrl {
                        url,
                        reason: "this store cannot fail on purpose".to_owned(),
                    });
                }
                urls.lock().unwrap().push(url);
                opened.fetch_add(1, Ordering::SeqCst);
                Ok::<DynBudgetStore, Error>(MemoryStore::shared())
            }
        }
    });
    assert!(
        registry.schemes().any(|s| s == "mystore"),
        "stored lowercased"
    );

    let budgets = TokenBudget::builder()
        .registry(registry.clone())
        .url("mystore://cluster-a/tenant?x=1")
        .build()
        .await
        .unwrap();
    budgets.create_workflow("wf", 50).await.unwrap();
    assert_eq!(budgets.status("wf").await.unwrap().limit, 50);
    registry.open("MYSTORE:other").await.unwrap();
    assert_eq!(
        *urls.lock().unwrap(),
        ["mystore://cluster-a/tenant?x=1", "MYSTORE:other"],
        "the factory gets the URL whole"
    );
    assert_eq!(opened.load(Ordering::SeqCst), 2);

    let err = registry.open("mystore://fail").await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidUrl { .. }),
        "the factory's error comes back: {err:?}"
    );
    // The defaults are still there.
    assert_eq!(
        registry.open("memory://").await.unwrap().backend(),
        "memory"
    );
}

/// A factory as a type, replacing a built-in scheme.
#[tokio::test]
async fn a_registered_factory_replaces_a_builtin_scheme() {
    #[derive(Debug)]
    struct Prefilled;

    #[async_trait::async_trait]
    impl tokenbudget::StoreFactory for Prefilled {
        async fn open(&self, _url: &str) -> tokenbudget::Result<DynBudgetStore> {
            let store = MemoryStore::shared();
            let tracker = tokenbudget::Tracker::new(store.clone());
            tracker.create_workflow("seeded", 7).await?;
            Ok(store)
        }
    }

    let mut registry = StoreRegistry::with_defaults();
    let previous = registry.insert("memory", Arc::new(Prefilled));
    assert!(previous.is_some(), "memory was built in");
    let store = registry.open("memory://").await.unwrap();
    let budgets = TokenBudget::builder().store(store).build().await.unwrap();
    assert_eq!(budgets.status("seeded").await.unwrap().limit, 7);
}

#[test]
#[should_panic(expected = "is not a URL scheme")]
fn registering_a_malformed_scheme_panics() {
    let _ = StoreRegistry::new().register("my store", |_url: String| async move {
        Ok::<DynBudgetStore, Error>(MemoryStore::shared())
    });
}
