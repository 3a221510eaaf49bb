//! Direct to the fake upstream vs through the gateway: added time to first byte p50/p99 and
//! requests/s at 1/64/512 clients, non-streaming and streaming (closed loop: each client
//! sends its next request when the last one is done, so this is the gateway at saturation);
//! then 64 clients at a steady rate (`TOKENBUDGET_BENCH_RATE`, default 500 requests/s); then
//! RSS with 1,000 open streams. Run by `cargo xtask bench-gateway` (release build). The store is a fresh SQLite
//! file, or the database `TOKENBUDGET_BENCH_DATABASE_URL` names (a Postgres URL gets a
//! schema of its own, dropped by nobody: name a scratch database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenbudget::TokenBudget;
use tokenbudget_gateway::fake::{self, Fake, Mode};
use tokenbudget_gateway::{keys, Gateway, Settings};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// `direct p50/p99 | gateway p50/p99 | added p50/p99` (ms) of two sorted samples.
fn side_by_side(direct: &[Duration], gateway: &[Duration]) -> String {
    let (d50, d99) = (percentile(direct, 0.5), percentile(direct, 0.99));
    let (g50, g99) = (percentile(gateway, 0.5), percentile(gateway, 0.99));
    format!(
        "{d50:.2}/{d99:.2} | {g50:.2}/{g99:.2} | {:.2}/{:.2}",
        g50 - d50,
        g99 - d99
    )
}

/// Sends one request and reads its answer whole; returns the time to its first byte.
async fn one(client: &reqwest::Client, url: &str, key: &str, body: &serde_json::Value) -> Duration {
    let t = Instant::now();
    let mut r = client
        .post(url)
        .header("x-api-key", key)
        .json(body)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
    let _first = r.chunk().await.expect("first chunk");
    let ttfb = t.elapsed();
    while r.chunk().await.expect("chunk").is_some() {}
    ttfb
}

async fn load(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    stream: bool,
    clients: usize,
    total: usize,
) -> (Vec<Duration>, f64) {
    let body = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 200, "stream": stream,
        "messages": [{"role": "user", "content": "benchmark"}]});
    let started = Instant::now();
    let per = total.div_ceil(clients);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, key, body) =
            (client.clone(), url.to_owned(), key.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut ttfb = Vec::with_capacity(per);
            for _ in 0..per {
                ttfb.push(one(&client, &url, &key, &body).await);
            }
            ttfb
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let rps = all.len() as f64 / secs;
    (all, rps)
}

/// `clients` clients sending `total` requests in all at a steady `rate` (requests/s, all
/// clients together), each request on its own schedule whatever the answers do (an open
/// loop: a slow answer does not delay the next request, so queueing shows as latency
/// instead of hiding as fewer requests). Returns the times to the first byte.
async fn load_paced(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    stream: bool,
    clients: usize,
    rate: f64,
    total: usize,
) -> Vec<Duration> {
    let body = serde_json::json!({"model": "claude-sonnet-4-5", "max_tokens": 200, "stream": stream,
        "messages": [{"role": "user", "content": "benchmark"}]});
    let per = total.div_ceil(clients);
    let gap = Duration::from_secs_f64(clients as f64 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, key, body) =
            (client.clone(), url.to_owned(), key.to_owned(), body.clone());
        // Clients spread evenly over one gap.
        let offset = gap.mul_f64(c as f64 / clients as f64);
        tasks.push(tokio::spawn(async move {
            let mut sends = Vec::with_capacity(per);
            for i in 0..per {
                tokio::time::sleep_until(start + offset + gap * i as u32).await;
                let (client, url, key, body) =
                    (client.clone(), url.clone(), key.clone(), body.clone());
                sends.push(tokio::spawn(async move {
                    one(&client, &url, &key, &body).await
                }));
            }
            let mut ttfb = Vec::with_capacity(per);
            for s in sends {
                ttfb.push(s.await.expect("request"));
            }
            ttfb
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    all.sort();
    all
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let fake = Arc::new(Fake::default());
    fake.set_chunk(64);
    let upstream = fake::start(fake.clone()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = match std::env::var("TOKENBUDGET_BENCH_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}schema=tb_bench_{}", std::process::id())
        }
        Ok(url) if !url.is_empty() => url,
        _ => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    println!("store: {}\n", tokenbudget::redact(&db));
    let budgets = TokenBudget::open(&db).await.expect("store");
    budgets
        .create_workflow("bench", 1 << 60)
        .await
        .expect("budget");
    let keys = keys::open(&db).await.expect("keys");
    let (key, record) = keys::generate("bench".try_into().expect("id"), None, None).expect("key");
    keys.insert(&record).await.expect("insert");
    let settings = Settings::default()
        .with_anthropic_url(&upstream)
        .expect("url");
    let gateway = Gateway::new(budgets, keys, settings).expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gw_url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(tokenbudget_gateway::serve(
        gateway.clone(),
        listener,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("client");

    println!("| mode | clients | direct p50/p99 ms | gateway p50/p99 ms | added p50/p99 ms | direct req/s | gateway req/s |");
    println!("|---|---|---|---|---|---|---|");
    for stream in [false, true] {
        for clients in [1usize, 64, 512] {
            let total = (clients * 4).clamp(200, 2048);
            let (d, drps) = load(
                &client,
                &format!("{upstream}/v1/messages"),
                "x",
                stream,
                clients,
                total,
            )
            .await;
            let (g, grps) = load(
                &client,
                &format!("{gw_url}/v1/messages"),
                &key,
                stream,
                clients,
                total,
            )
            .await;
            println!(
                "| {} | {clients} | {} | {drps:.0} | {grps:.0} |",
                if stream { "stream" } else { "non-stream" },
                side_by_side(&d, &g)
            );
        }
    }
    tokio::time::timeout(Duration::from_secs(60), gateway.settled())
        .await
        .expect("settled");

    // The same 64 clients at a steady rate below what the gateway can take: the added
    // time a request sees when the proxy is not the bottleneck.
    let rate: f64 = std::env::var("TOKENBUDGET_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(500.0);
    println!("\n64 clients at a steady {rate:.0} requests/s in all (open loop, 2,000 requests):\n");
    println!("| mode | direct p50/p99 ms | gateway p50/p99 ms | added p50/p99 ms |");
    println!("|---|---|---|---|");
    for stream in [false, true] {
        let d = load_paced(
            &client,
            &format!("{upstream}/v1/messages"),
            "x",
            stream,
            64,
            rate,
            2_000,
        )
        .await;
        let g = load_paced(
            &client,
            &format!("{gw_url}/v1/messages"),
            &key,
            stream,
            64,
            rate,
            2_000,
        )
        .await;
        println!(
            "| {} | {} |",
            if stream { "stream" } else { "non-stream" },
            side_by_side(&d, &g)
        );
    }
    tokio::time::timeout(Duration::from_secs(60), gateway.settled())
        .await
        .expect("settled");

    fake.set_mode(Mode::Hang);
    let before = rss_mb();
    let mut open = Vec::new();
    let body = serde_json::json!({"model": "m", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "hold"}]});
    for _ in 0..1000 {
        let mut r = client
            .post(format!("{gw_url}/v1/messages"))
            .header("x-api-key", &key)
            .json(&body)
            .send()
            .await
            .expect("open");
        let _ = r.chunk().await.expect("first chunk");
        open.push(r);
    }
    let during = rss_mb();
    println!("\nopen streams through the gateway: {}; process RSS {before:.0} MB before, {during:.0} MB with 1,000 open (fake upstream and clients included)", gateway.open_streams());
    drop(open);
    tokio::time::timeout(Duration::from_secs(60), gateway.settled())
        .await
        .expect("settled");
    println!(
        "after the clients left: open streams {}, unsettled {}",
        gateway.open_streams(),
        gateway.unsettled()
    );
}
