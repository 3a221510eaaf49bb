//! The blocking wrapper: works from plain threads, refuses inside a runtime.

mod support;

use tokenbudget_counter::{Blocking, Error, Estimator, LocalCounter, TokenCounter};

#[test]
fn outside_a_runtime_it_blocks_and_answers() {
    let blocking = Blocking::new(Estimator::default()).unwrap();
    let text = "plain threads can count too";
    assert_eq!(
        blocking.count(text).unwrap(),
        Estimator::default().count_sync(text)
    );
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let blocking = std::sync::Arc::new(Blocking::new(Estimator::default()).unwrap());
            std::thread::spawn(move || blocking.count("from another thread").unwrap().tokens)
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap() > 0);
    }
}

#[tokio::test]
async fn inside_a_current_thread_runtime_it_returns_the_documented_error() {
    let blocking = Blocking::new(Estimator::default()).unwrap();
    assert!(matches!(blocking.count("x"), Err(Error::InsideRuntime)));
    assert!(matches!(
        blocking.count_messages(&[]),
        Err(Error::InsideRuntime)
    ));
    // The async path still works, and dropping the wrapper here does not panic.
    assert!(blocking.inner().count("x").await.is_ok());
    drop(blocking);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_tasks_and_spawn_blocking_it_returns_the_documented_error() {
    let blocking = std::sync::Arc::new(Blocking::new(Estimator::default()).unwrap());
    let in_task = tokio::spawn({
        let b = blocking.clone();
        async move { b.count("x") }
    });
    assert!(matches!(in_task.await.unwrap(), Err(Error::InsideRuntime)));
    let in_blocking_pool = tokio::task::spawn_blocking({
        let b = blocking.clone();
        move || b.count("x")
    });
    assert!(matches!(
        in_blocking_pool.await.unwrap(),
        Err(Error::InsideRuntime)
    ));
    assert!(Error::InsideRuntime
        .to_string()
        .contains("inside a tokio runtime"));
}

#[cfg(feature = "claude")]
#[test]
fn a_network_counter_works_from_a_plain_thread() {
    use std::time::Duration;
    use support::fake_api::{FakeApi, Reply};
    use tokenbudget_counter::ClaudeConfig;

    // The fake API runs on its own runtime thread; the caller has none.
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let api = FakeApi::start(|_| Reply::tokens(33)).await;
            tx.send(api.base_url()).unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
    });
    let base_url = rx.recv().unwrap();
    let counter = ClaudeConfig::new("claude-sonnet-4-5")
        .with_base_url(base_url)
        .with_api_key("k")
        .build()
        .unwrap();
    let blocking = Blocking::new(counter).unwrap();
    for _ in 0..3 {
        let count = blocking.count("hello").unwrap();
        assert_eq!(count.tokens, 33);
        assert!(count.is_exact());
    }
    drop(blocking);
    server.join().unwrap();
}
