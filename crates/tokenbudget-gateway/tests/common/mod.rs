//! A gateway in front of the fake upstream, on 127.0.0.1, with a memory store.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokenbudget::{MemoryStore, TokenBudget};
use tokenbudget_gateway::fake::{self, Fake};
use tokenbudget_gateway::{keys, Gateway, KeyStore, MemoryKeyStore, MemoryLedger, Settings};

pub const UPSTREAM_KEY: &str = "sk-ant-gateway-own-secret";

pub struct Harness {
    pub fake: Arc<Fake>,
    pub gateway: Gateway,
    pub url: String,
    pub key: String,
    pub keys: Arc<MemoryKeyStore>,
    pub ledger: Arc<MemoryLedger>,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Budgets in memory with one workflow, `team`, of `limit`.
pub async fn team(limit: u64) -> TokenBudget {
    let budgets = TokenBudget::builder()
        .store(MemoryStore::shared())
        .build()
        .await
        .unwrap();
    budgets.create_workflow("team", limit).await.unwrap();
    budgets
}

pub async fn start(limit: u64, tweak: impl FnOnce(&mut Settings)) -> Harness {
    let budgets = team(limit).await;
    let keys = Arc::new(MemoryKeyStore::default());
    start_with(
        budgets,
        keys.clone(),
        keys,
        Arc::new(Fake::default()),
        tweak,
    )
    .await
}

/// A gateway over `budgets` (holding a budget `team`) and `keys`, with a key on `team`
/// inserted through `memory` (the store under `keys`, or `keys` itself), before `fake`.
pub async fn start_with(
    budgets: TokenBudget,
    keys: tokenbudget_gateway::DynKeyStore,
    memory: Arc<MemoryKeyStore>,
    fake: Arc<Fake>,
    tweak: impl FnOnce(&mut Settings),
) -> Harness {
    start_with_sink(budgets, keys, memory, fake, tweak, None).await
}

/// A gateway on a `team` budget of `limit` whose ledger rows go into `usage` (as
/// `tokenbudget gateway` writes them; `Harness::ledger` then stays empty).
pub async fn start_with_usage(limit: u64, usage: tokenbudget_ledger::DynUsageStore) -> Harness {
    let budgets = team(limit).await;
    let keys = Arc::new(MemoryKeyStore::default());
    let sink = Arc::new(tokenbudget_gateway::UsageLedger::new(usage));
    start_with_sink(
        budgets,
        keys.clone(),
        keys,
        Arc::new(Fake::default()),
        |_| {},
        Some(sink),
    )
    .await
}

pub async fn start_with_sink(
    budgets: TokenBudget,
    keys: tokenbudget_gateway::DynKeyStore,
    memory: Arc<MemoryKeyStore>,
    fake: Arc<Fake>,
    tweak: impl FnOnce(&mut Settings),
    sink: Option<Arc<dyn tokenbudget_gateway::LedgerSink>>,
) -> Harness {
    let upstream = fake::start(fake.clone()).await.unwrap();
    let (key, record) =
        keys::generate("team".try_into().unwrap(), Some("test".into()), None).unwrap();
    memory.insert(&record).await.unwrap();
    let mut settings = Settings::default()
        .with_anthropic_url(&upstream)
        .unwrap()
        .with_openai_url(&format!("{upstream}/v1"))
        .unwrap();
    settings.anthropic_api_key = Some(UPSTREAM_KEY.into());
    settings.openai_api_key = Some("sk-openai-gateway-own".into());
    settings.min_output_tokens = 50;
    tweak(&mut settings);
    let ledger = Arc::new(MemoryLedger::default());
    let sink = sink.unwrap_or_else(|| ledger.clone());
    let gateway = Gateway::with_ledger(budgets, keys, settings, sink).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(tokenbudget_gateway::serve(
        gateway.clone(),
        listener,
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(5),
    ));
    Harness {
        fake,
        gateway,
        url,
        key,
        keys: memory,
        ledger,
        client: reqwest::Client::new(),
        stop: Some(tx),
        server: Some(server),
    }
}

impl Harness {
    pub fn messages(&self, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/messages", self.url))
            .header("x-api-key", &self.key)
            .header("anthropic-version", "2023-06-01")
            .json(body)
    }

    pub async fn status(&self, id: &str) -> tokenbudget::Status {
        self.gateway.budgets().status(id).await.unwrap()
    }

    /// Waits for every admitted request to be settled.
    pub async fn settled(&self) {
        tokio::time::timeout(Duration::from_secs(30), self.gateway.settled())
            .await
            .expect("every request settles");
    }

    /// `GET path` (no key: the dashboard's endpoints), as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// How many `TOKENS_CHARGED` events budget `id` has.
    pub async fn charges(&self, id: &str) -> usize {
        self.gateway
            .budgets()
            .events(id, 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| matches!(e.kind, tokenbudget::EventKind::TokensCharged { .. }))
            .count()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

pub fn request(text: &str, max_tokens: u64, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
}

/// The lowered `max_tokens` a response names (`x-tokenbudget-max-tokens`).
pub fn clamped_max_tokens(response: &reqwest::Response) -> u64 {
    response.headers()["x-tokenbudget-max-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits (bounded: 30 s) until `check` holds.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// Every journal file's lines, in the folder.
pub fn journal_text(dir: &std::path::Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("gw.journal")
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}
