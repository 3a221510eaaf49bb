//! The budget store goes away: a real PostgreSQL behind a TCP proxy that the test cuts (every
//! open connection dropped, new ones refused) and restores. `closed` answers 503 and
//! forwards nothing; `open` forwards within its allowance, journals each settlement
//! (fsynced), and replays the journal into the store exactly once when it is back, at start
//! too. Under `CI=true` an unreachable database fails the test.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{eventually, journal_text, request, start_with, start_with_sink, Harness};
use serde_json::Value;
use tokenbudget::TokenBudget;
use tokenbudget_gateway::fake::{Fake, Mode};
use tokenbudget_gateway::{KeyRecord, KeyStore, MemoryKeyStore, OnStoreError, Settings};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn database_url() -> Option<String> {
    let url =
        std::env::var("TOKENBUDGET_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let config = tokio_postgres::Config::from_str(&url).unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let reachable = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => {
            std::net::TcpStream::connect((host.as_str(), port)).is_ok()
        }
        _ => true,
    };
    if reachable {
        return Some(url);
    }
    let message = format!("PostgreSQL is unreachable at {url}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("\n!!!! SKIPPED: {message}\n");
    None
}

/// A TCP proxy to Postgres whose link can be cut and restored.
struct Proxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    cut: Arc<std::sync::Mutex<CancellationToken>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (d, c) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let token = c.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        Proxy { addr, down, cut }
    }

    /// Drops every open connection and refuses new ones.
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// The Postgres URL through `proxy`, in `schema`.
fn through(url: &str, proxy: &Proxy, schema: &str) -> String {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or(user);
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    format!(
        "postgres://{user}{password}@{}/{db}?schema={schema}",
        proxy.addr
    )
}

fn upstream(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host.as_str(), port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

/// Keys that fail with the store (the key store lives in the same database).
#[derive(Debug, Default)]
struct Keys {
    memory: Arc<MemoryKeyStore>,
    down: AtomicBool,
}

impl Keys {
    fn check(&self) -> tokenbudget_gateway::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(tokenbudget_gateway::Error::Store(
                "key store unreachable".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl KeyStore for Keys {
    async fn insert(&self, record: &KeyRecord) -> tokenbudget_gateway::Result<()> {
        self.check()?;
        self.memory.insert(record).await
    }
    async fn by_hash(&self, hash: &str) -> tokenbudget_gateway::Result<Option<KeyRecord>> {
        self.check()?;
        self.memory.by_hash(hash).await
    }
    async fn list(&self) -> tokenbudget_gateway::Result<Vec<KeyRecord>> {
        self.check()?;
        self.memory.list().await
    }
    async fn revoke(&self, id: &str, at: DateTime<Utc>) -> tokenbudget_gateway::Result<bool> {
        self.check()?;
        self.memory.revoke(id, at).await
    }
    async fn ping(&self) -> tokenbudget_gateway::Result<()> {
        self.check()
    }
}

struct World {
    url: String,
    schema: String,
    proxy: Proxy,
    keys: Arc<Keys>,
    fake: Arc<Fake>,
}

impl World {
    async fn new(url: String) -> World {
        let schema = format!(
            "tb_gw_open_{}_{:04x}",
            std::process::id(),
            uuid::Uuid::new_v4().as_u128() as u16
        );
        let proxy = Proxy::start(upstream(&url)).await;
        World {
            url,
            schema,
            proxy,
            keys: Arc::new(Keys::default()),
            fake: Arc::new(Fake::default()),
        }
    }

    async fn budgets(&self) -> TokenBudget {
        TokenBudget::builder()
            .url(through(&self.url, &self.proxy, &self.schema))
            .build()
            .await
            .unwrap()
    }

    async fn gateway(&self, budgets: TokenBudget, tweak: impl FnOnce(&mut Settings)) -> Harness {
        start_with(
            budgets,
            self.keys.clone(),
            self.keys.memory.clone(),
            self.fake.clone(),
            |s| {
                s.timeouts.store = Duration::from_secs(2);
                s.journal_retry = Duration::from_millis(100);
                tweak(s);
            },
        )
        .await
    }

    fn down(&self) {
        self.proxy.cut();
        self.keys.down.store(true, Ordering::SeqCst);
    }

    fn up(&self) {
        self.proxy.restore();
        self.keys.down.store(false, Ordering::SeqCst);
    }

    async fn drop_schema(&self) {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await
            .unwrap();
    }
}

async fn send(h: &Harness, body: &Value) -> (u16, Value) {
    let r = h.messages(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_answers_503_and_forwards_nothing_while_the_store_is_down() {
    let Some(url) = database_url() else { return };
    let w = World::new(url).await;
    let budgets = w.budgets().await;
    budgets.create_workflow("team", 100_000).await.unwrap();
    // A reserve given up on (timed out) may still land once the link is back: its hold
    // expires instead of being settled, so keep that short here.
    let h = w
        .gateway(budgets, |s| s.reservation_timeout = Duration::from_secs(2))
        .await;
    assert_eq!(send(&h, &request("up", 100, false)).await.0, 200);
    let forwarded = h.fake.received().len();

    // Only the budget store: the key is known, the reservation cannot be made.
    w.proxy.cut();
    let (status, body) = send(&h, &request("down", 100, false)).await;
    assert_eq!(status, 503);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    let chat = h
        .client
        .post(format!("{}/v1/chat/completions", h.url))
        .bearer_auth(&h.key)
        .json(&serde_json::json!({"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 503);
    assert!(chat.json::<Value>().await.unwrap()["error"]["message"].is_string());
    assert_eq!(h.fake.received().len(), forwarded, "nothing forwarded");

    w.proxy.restore();
    eventually("the store answers again", async || {
        send(&h, &request("back", 100, false)).await.0 == 200
    })
    .await;
    h.settled().await;
    eventually("no hold is left", async || h.status("team").await.held == 0).await;
    assert_eq!(h.status("team").await.used % 30, 0);
    h.shutdown().await;
    w.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_forwards_journals_and_replays_exactly_once_when_the_store_is_back_and_at_start() {
    let Some(url) = database_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("gw.journal");
    let w = World::new(url).await;
    let budgets = w.budgets().await;
    budgets.create_workflow("team", 1_000_000).await.unwrap();
    let open = |s: &mut Settings| {
        s.on_store_error = OnStoreError::Open;
        s.journal = Some(journal.clone());
        s.open_limit = 20_000;
    };
    let h = w.gateway(budgets.clone(), open).await;
    // Authorized once while the store answers: the caller is known when it does not.
    assert_eq!(send(&h, &request("warm", 100, false)).await.0, 200);
    h.settled().await;

    // A stream admitted while the store answers, whose commit finds it gone.
    h.fake.set_mode(Mode::Hang);
    let mut hanging = h
        .messages(&request("hang", 1_000, true))
        .send()
        .await
        .unwrap();
    assert!(!hanging.chunk().await.unwrap().unwrap().is_empty());
    h.fake.set_mode(Mode::Text);
    w.down();
    drop(hanging);

    // Forwarded without the store, within the allowance.
    for stream in [false, true, false] {
        let (status, _) = send(&h, &request("while down", 1_000, stream)).await;
        assert_eq!(status, 200);
    }
    // Past the allowance (20 000 tokens): refused like `closed`, nothing forwarded.
    let forwarded = h.fake.received().len();
    let (status, body) = send(&h, &request("too big", 30_000, false)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("capped at 20000"));
    // An unknown key is not let through on the allowance.
    let unknown = h
        .client
        .post(format!("{}/v1/messages", h.url))
        .header("x-api-key", format!("tbk_{}", "0f".repeat(32)))
        .json(&request("x", 10, false))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 503);
    assert_eq!(h.fake.received().len(), forwarded);
    h.settled().await;
    // The hung stream's commit and three charges, on disk before they counted.
    assert_eq!(h.gateway.journal_depth(), 4);
    // The replayer may have moved the file aside (`gw.journal.<n>.pending`) meanwhile.
    let lines = journal_text(dir.path());
    assert_eq!(lines.lines().count(), 4);
    assert!(lines
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));

    // Stopped while the store is still down: the journal stays for the next start.
    let gateway = h.gateway.clone();
    h.shutdown().await;
    assert_eq!(gateway.journal_depth(), 4);

    // The store is back; a new gateway replays the journal at start.
    let left = tokenbudget_gateway::journal::Journal::open(&journal).unwrap();
    // The hung stream's commit: its reported input and the output estimated from what was
    // relayed before the client went.
    let hung: u64 = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["op"] == "commit")
        .map(|e| e["amount"].as_u64().unwrap())
        .sum();
    assert!(hung >= 26, "25 input and some output: {hung}");
    assert_eq!(
        (left.depth(), left.tokens()),
        (4, 3 * 30 + hung),
        "counted from the files"
    );
    drop(left);
    w.up();
    let h = w.gateway(w.budgets().await, open).await;
    eventually("the journal is replayed at start", async || {
        h.gateway.journal_depth() == 0
    })
    .await;
    // warm 30 + three forwarded 3 × 30 + the hung stream's commit.
    let s = h.status("team").await;
    assert_eq!((s.used, s.held), (30 + 3 * 30 + hung, 0));
    // Exactly once: another replay, and the same entries replayed again, add nothing.
    assert_eq!(h.gateway.replay_journal().await.unwrap(), 0);
    std::fs::write(&journal, &lines).unwrap();
    let again = tokenbudget_gateway::journal::Journal::open(&journal).unwrap();
    let again = Arc::new(again);
    assert_eq!(
        again
            .replay(
                h.gateway.budgets(),
                &tokenbudget_gateway::NoLedger,
                Duration::from_secs(5)
            )
            .await
            .unwrap(),
        4
    );
    assert_eq!(h.status("team").await.used, 30 + 3 * 30 + hung);
    let charges = h.charges("team").await;
    assert_eq!(charges, 3);
    assert_eq!(
        journal_text(dir.path()),
        "",
        "every journal file is gone or empty"
    );
    h.shutdown().await;
    w.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_replays_while_running_once_the_store_is_back() {
    let Some(url) = database_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let w = World::new(url).await;
    let budgets = w.budgets().await;
    budgets.create_workflow("team", 1_000_000).await.unwrap();
    let journal = dir.path().join("gw.journal");
    let h = w
        .gateway(budgets, |s| {
            s.on_store_error = OnStoreError::Open;
            s.journal = Some(journal.clone());
        })
        .await;
    assert_eq!(send(&h, &request("warm", 100, false)).await.0, 200);
    h.settled().await;
    w.down();
    for n in 0..5 {
        let (status, _) = send(&h, &request(&format!("down {n}"), 500, n % 2 == 0)).await;
        assert_eq!(status, 200);
    }
    h.settled().await;
    assert_eq!(h.gateway.journal_depth(), 5);
    w.up();
    eventually("the running gateway replays the journal", async || {
        h.gateway.journal_depth() == 0
    })
    .await;
    let s = h.status("team").await;
    assert_eq!((s.used, s.held), (6 * 30, 0));
    // Served again from the store: no journal growth.
    assert_eq!(send(&h, &request("after", 100, false)).await.0, 200);
    h.settled().await;
    assert_eq!(h.gateway.journal_depth(), 0);
    assert_eq!(h.status("team").await.used, 7 * 30);
    h.shutdown().await;
    w.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_rows_the_ledger_did_not_take_are_journaled_and_written_once_when_it_is_back() {
    let Some(url) = database_url() else { return };
    let w = World::new(url).await;
    // The budgets stay up (memory); the ledger's database is the one behind the proxy.
    let usage: tokenbudget_ledger::DynUsageStore = Arc::new(
        tokenbudget_postgres::PostgresUsageStore::open(&through(&w.url, &w.proxy, &w.schema))
            .await
            .unwrap(),
    );
    let budgets = common::team(100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("gw.journal");
    let sink = Arc::new(tokenbudget_gateway::UsageLedger::new(usage.clone()));
    let h = start_with_sink(
        budgets,
        w.keys.clone(),
        w.keys.memory.clone(),
        w.fake.clone(),
        |s| {
            s.timeouts.store = Duration::from_secs(2);
            s.journal_retry = Duration::from_millis(100);
            s.journal = Some(journal.clone());
        },
        Some(sink),
    )
    .await;
    assert_eq!(send(&h, &request("up", 100, false)).await.0, 200);
    h.settled().await;
    let rows = async || {
        usage
            .records(&tokenbudget_ledger::RecordQuery::default())
            .await
            .unwrap()
    };
    assert_eq!(rows().await.len(), 1);

    w.proxy.cut();
    for (i, stream) in [false, true, false].into_iter().enumerate() {
        // Distinct requests: the fake answers the same request with the same message id.
        let text = format!("ledger down {i}");
        assert_eq!(send(&h, &request(&text, 100, stream)).await.0, 200);
    }
    h.settled().await;
    // Each response's row is kept, fsynced, not lost; the budget was settled as usual.
    assert_eq!(h.gateway.journal_depth(), 3);
    let lines = journal_text(dir.path());
    assert_eq!(lines.matches(r#""op":"ledger""#).count(), 3);
    let used = h.status("team").await.used;
    assert_eq!(used, 4 * 30);

    w.proxy.restore();
    eventually("the journal is replayed into the ledger", async || {
        h.gateway.journal_depth() == 0
    })
    .await;
    let written = rows().await;
    assert_eq!(written.len(), 4, "every response once");
    let total: u64 = written.iter().map(|r| r.usage.input + r.usage.output).sum();
    assert_eq!(total, used, "the ledger equals the budget");
    // Replaying the same lines again adds nothing.
    let again = dir.path().join("again.journal");
    std::fs::write(&again, &lines).unwrap();
    let again = Arc::new(tokenbudget_gateway::journal::Journal::open(&again).unwrap());
    let sink = tokenbudget_gateway::UsageLedger::new(usage.clone());
    let replayed = again
        .replay(h.gateway.budgets(), &sink, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(replayed, 3);
    let after = rows().await;
    assert_eq!(after.len(), 4);
    assert_eq!(
        after
            .iter()
            .map(|r| r.usage.input + r.usage.output)
            .sum::<u64>(),
        used
    );
    h.shutdown().await;
    w.drop_schema().await;
}
