//! The gateway's JSON logs, captured at `trace` for every crate (hyper, reqwest and
//! tower-http included) while requests pass: every line is a JSON object with the expected
//! fields, and neither the client's key nor an upstream credential appears anywhere.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{request, start, UPSTREAM_KEY};
use tokenbudget_gateway::logging::{self, LogFormat, Redactor};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

// A current-thread runtime: the server's, the fake's and the client's tasks all run on this
// thread, inside the scoped subscriber.
#[tokio::test]
async fn json_logs_parse_and_never_carry_a_key_or_a_credential() {
    let capture = Capture::default();
    let h = start(1_000_000, |_| {}).await;
    let secrets = h.gateway.settings().credentials();
    assert!(secrets.iter().any(|s| s == UPSTREAM_KEY));
    let subscriber = logging::subscriber(
        LogFormat::Json,
        EnvFilter::new("trace"),
        Redactor::new(secrets.clone()),
        capture.clone(),
    );
    let guard = tracing::subscriber::set_default(subscriber);

    for stream in [false, true] {
        let r = h
            .messages(&request("log me", 100, stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    let bearer = h
        .client
        .post(format!("{}/v1/chat/completions", h.url))
        .bearer_auth(&h.key)
        .json(&serde_json::json!({"model": "gpt-4o", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let _ = bearer.bytes().await.unwrap();
    // A key the store does not know is refused; it is not logged either.
    let unknown = format!("tbk_{}", "ab".repeat(32));
    let r = h
        .client
        .post(format!("{}/v1/messages", h.url))
        .header("x-api-key", &unknown)
        .json(&request("x", 10, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    h.settled().await;
    drop(guard);

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 10, "trace logs were captured: {text}");
    for secret in secrets.iter().chain([&h.key, &unknown]) {
        assert!(!text.contains(secret.as_str()), "a secret was logged");
    }
    // The key's secret part alone never shows either.
    assert!(!text.contains(&h.key[4..]));
    let mut targets = std::collections::BTreeSet::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "target", "fields"] {
            assert!(v.get(field).is_some(), "no {field}: {line}");
        }
        assert!(v["fields"].is_object(), "{line}");
        targets.insert(v["target"].as_str().unwrap().to_owned());
    }
    assert!(
        targets.iter().any(|t| t.starts_with("tower_http")),
        "request spans are logged: {targets:?}"
    );
    h.shutdown().await;
}
