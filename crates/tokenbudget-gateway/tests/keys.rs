//! The `KeyStore` behaviour on every backend: memory, SQLite, PostgreSQL (a schema per run,
//! dropped afterwards; under `CI=true` an unreachable database fails).

use std::sync::Arc;

use tokenbudget_gateway::keys::{self, DynKeyStore};

async fn suite(store: DynKeyStore) {
    let budget = tokenbudget::BudgetId::new("team").unwrap();
    let (key, record) = keys::generate(budget.clone(), Some("ci".into()), Some(500)).unwrap();
    store.insert(&record).await.unwrap();
    assert!(
        store.insert(&record).await.is_err(),
        "a duplicate hash is refused"
    );
    let found = store.by_hash(&keys::hash(&key)).await.unwrap().unwrap();
    assert_eq!(found.id, record.id);
    assert_eq!(found.budget_id, budget);
    assert_eq!(found.name.as_deref(), Some("ci"));
    assert_eq!(found.session_limit, Some(500));
    assert!(found.revoked_at.is_none());
    assert!(store
        .by_hash(&keys::hash("tbk_other"))
        .await
        .unwrap()
        .is_none());

    let (_, second) = keys::generate(budget, None, None).unwrap();
    store.insert(&second).await.unwrap();
    let ids: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&record.id) && ids.contains(&second.id));

    let at = chrono::Utc::now();
    assert!(store.revoke(&record.id, at).await.unwrap());
    assert!(store
        .revoke(&record.id, at + chrono::Duration::seconds(5))
        .await
        .unwrap());
    let revoked = store.by_hash(&record.hash).await.unwrap().unwrap();
    // The first revocation time stays.
    let kept = revoked.revoked_at.unwrap();
    assert!((kept - at).num_milliseconds().abs() < 1000);
    assert!(!store.revoke("nope", at).await.unwrap());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn memory_key_store() {
    suite(Arc::new(keys::MemoryKeyStore::default())).await;
}

#[tokio::test]
async fn sqlite_key_store_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tb.db").display());
    suite(keys::open(&url).await.unwrap()).await;
    // Reopening migrates nothing and keeps the keys.
    let again = keys::open(&url).await.unwrap();
    assert_eq!(again.list().await.unwrap().len(), 2);
}

#[tokio::test]
async fn postgres_key_store() {
    let base = std::env::var("TOKENBUDGET_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let reachable = std::net::TcpStream::connect("127.0.0.1:5432").is_ok()
        || std::env::var("TOKENBUDGET_TEST_DATABASE_URL").is_ok();
    if !reachable {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PostgreSQL is unreachable at {base}");
        }
        eprintln!("!!!! SKIPPED: PostgreSQL is unreachable at {base}");
        return;
    }
    let schema = format!("gw_keys_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{base}?schema={schema}");
    suite(keys::open(&url).await.unwrap()).await;
    let again = keys::open(&url).await.unwrap();
    assert_eq!(again.list().await.unwrap().len(), 2);
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);

    // The server ends every connection of the store (a restart, a failover): the next
    // lookups simply work, on new connections.
    let name = format!("gwkeys_{}", uuid::Uuid::new_v4().simple());
    let store = keys::open(&format!("{url}&application_name={name}"))
        .await
        .unwrap();
    let (key, record) = keys::generate("team".try_into().unwrap(), None, None).unwrap();
    store.insert(&record).await.unwrap();
    for round in 0..3 {
        let killed: i64 = client
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 2000)) \
                 FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            killed >= 1,
            "round {round}: the store had a connection to end"
        );
        let found = store.by_hash(&keys::hash(&key)).await.unwrap();
        assert_eq!(
            found.map(|r| r.id),
            Some(record.id.clone()),
            "round {round}"
        );
        store.ping().await.unwrap();
    }

    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_postgres_key_store_is_an_error_not_a_hang() {
    // Nothing listens on port 1.
    let opened = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        keys::open("postgres://postgres@127.0.0.1:1/test"),
    )
    .await
    .expect("bounded");
    match opened {
        Err(tokenbudget_gateway::Error::Store(message)) => {
            assert!(message.contains("postgres key store"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_schemes_name_the_setting() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    match rt.block_on(keys::open("redis://x")) {
        Err(tokenbudget_gateway::Error::Config { setting, .. }) => assert_eq!(setting, "--db"),
        other => panic!("{other:?}"),
    }
}
