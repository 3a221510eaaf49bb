//! `prompt_count = "count_tokens"`: admission holds the upstream's count of the prompt; a
//! count_tokens that hangs or fails falls back to the byte bound (never below it), counted
//! in /metrics.

mod common;

use std::time::Duration;

use common::{request, start, Harness, UPSTREAM_KEY};
use tokenbudget_gateway::bound::claude_prompt_bound;
use tokenbudget_gateway::fake::CountMode;
use tokenbudget_gateway::PromptCount;

/// The `max_tokens` the gateway forwarded after lowering a 128 000 ask to what a budget of
/// `limit` can pay for: `limit` less the prompt part admission used.
async fn clamped_to(h: &Harness, body: &serde_json::Value) -> u64 {
    let r = h.messages(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let clamped = common::clamped_max_tokens(&r);
    let _ = r.bytes().await.unwrap();
    h.settled().await;
    clamped
}

async fn fallbacks(h: &Harness, reason: &str) -> u64 {
    let text = h
        .client
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let wanted =
        format!("tokenbudget_gateway_count_tokens_fallbacks_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn admission_holds_the_upstreams_count() {
    let h = start(5_000, |s| s.prompt_count = PromptCount::CountTokens).await;
    h.fake.set_count_mode(CountMode::Answer(Some(7)));
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 128_000, "stream": true,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello"}],
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
        "metadata": {"user_id": "u"},
    });
    assert!(claude_prompt_bound(&body) > 500, "the bound is loose here");
    // The count and its margin (5 % by default, rounded up: 7 + 1).
    assert_eq!(clamped_to(&h, &body).await, 5_000 - 8);
    // The count went to the upstream with the gateway's credential and the prompt's fields.
    let (headers, counted) = h.fake.counted().pop().unwrap();
    assert_eq!(headers["x-api-key"], UPSTREAM_KEY);
    assert_eq!(counted["messages"], body["messages"]);
    assert_eq!(counted["tools"], body["tools"]);
    assert_eq!(counted["system"], body["system"]);
    assert!(counted.get("max_tokens").is_none() && counted.get("metadata").is_none());
    // Settlement still commits what the response reported (25 + 5), not the count.
    let s = h.status("team").await;
    assert_eq!((s.used, s.held), (30, 0));
    h.shutdown().await;
}

#[tokio::test]
async fn the_margin_on_the_count_is_configurable_and_capped_by_the_bound() {
    let h = start(100_000, |s| {
        s.prompt_count = PromptCount::CountTokens;
        s.count_tokens_margin = 20;
    })
    .await;
    h.fake.set_count_mode(CountMode::Answer(Some(1_000)));
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 128_000, "stream": true,
        "messages": [{"role": "user", "content": "x".repeat(5_000)}],
    });
    let bound = claude_prompt_bound(&body);
    assert!(bound > 1_200, "{bound}");
    assert_eq!(clamped_to(&h, &body).await, 100_000 - 1_200);
    // The first response used 30. A count above the bound: the margin stops at the
    // bound, but the hold is never below the count itself.
    h.fake.set_count_mode(CountMode::Answer(Some(bound + 100)));
    assert_eq!(clamped_to(&h, &body).await, 100_000 - 30 - (bound + 100));
    h.shutdown().await;
    assert!(
        tokenbudget_gateway::Settings::from_toml("count_tokens_margin = 101").is_err(),
        "a percentage over 100 is refused at start"
    );
}

#[tokio::test]
async fn a_hung_count_falls_back_to_the_bound_within_the_timeout() {
    let h = start(5_000, |s| {
        s.prompt_count = PromptCount::CountTokens;
        s.timeouts.count_tokens = Duration::from_millis(200);
    })
    .await;
    h.fake.set_count_mode(CountMode::Hang);
    let body = request("hello", 128_000, true);
    let before = fallbacks(&h, "timeout").await;
    // Bounded: the request must finish long before this (the count's timeout is 200 ms).
    let clamped = tokio::time::timeout(Duration::from_secs(30), clamped_to(&h, &body))
        .await
        .expect("a hung count_tokens does not hang the request");
    assert_eq!(clamped, 5_000 - claude_prompt_bound(&body));
    assert_eq!(fallbacks(&h, "timeout").await, before + 1);
    assert_eq!(h.fake.counted().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_failed_count_falls_back_to_the_bound() {
    let h = start(5_000, |s| s.prompt_count = PromptCount::CountTokens).await;
    h.fake.set_count_mode(CountMode::Fail(529));
    let body = request("hello", 128_000, false);
    let before = fallbacks(&h, "status").await;
    assert_eq!(
        clamped_to(&h, &body).await,
        5_000 - claude_prompt_bound(&body)
    );
    assert_eq!(fallbacks(&h, "status").await, before + 1);
    h.shutdown().await;
}

#[tokio::test]
async fn without_the_setting_no_count_is_asked() {
    let h = start(5_000, |_| {}).await;
    let body = request("hello", 128_000, false);
    assert_eq!(
        clamped_to(&h, &body).await,
        5_000 - claude_prompt_bound(&body)
    );
    assert!(h.fake.counted().is_empty());
    h.shutdown().await;
}
