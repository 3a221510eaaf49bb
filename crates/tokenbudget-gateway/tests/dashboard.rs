//! The gateway's `/dashboard` reads the usage ledger its responses are written into.

mod common;

use std::sync::Arc;

use common::{request, start_with_usage};
use serde_json::Value;

#[tokio::test]
async fn the_gateways_dashboard_shows_the_usage_it_wrote() {
    let ledger = Arc::new(tokenbudget_ledger::MemoryUsageStore::new());
    let h = start_with_usage(100_000, ledger).await;
    let response = h
        .messages(&request("hello", 1_000, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await.unwrap();
    h.settled().await;
    let usage: Value = h.get_json("/api/usage?range=2d").await;
    assert_eq!(usage["total"]["responses"], 1, "{usage}");
    assert_eq!(usage["days"].as_array().map(Vec::len), Some(2));
    assert!(usage["total"]["output"].as_u64().unwrap() > 0, "{usage}");
    let team: Value = h.get_json("/api/usage?range=2d&budget=team").await;
    assert_eq!(team["total"]["responses"], 1, "charged to team: {team}");
    h.shutdown().await;
}
