//! Keys on `usd` budgets: admission holds the price of the prompt bound plus `max_tokens`
//! for the requested model, settlement commits the price of the usage, exactly; an unknown
//! model is refused before anything is forwarded; concurrency never overdraws.

mod common;

use common::{request, start, Harness};
use serde_json::Value;
use tokenbudget::prices::{PriceTable, Usage};
use tokenbudget::{NewBudget, Unit};
use tokenbudget_gateway::admit::Ask;
use tokenbudget_gateway::bound::claude_prompt_bound;
use tokenbudget_gateway::meter::Meter;
use tokenbudget_gateway::{keys, KeyStore, Settled};

const MODEL: &str = "claude-sonnet-4-5";

/// A `usd` workflow `dollars` with `limit` micro-dollars, and a key on it.
async fn usd_key(h: &Harness, limit: u64, session_limit: Option<u64>) -> String {
    usd_key_on(h, "dollars", limit, session_limit).await
}

async fn usd_key_on(h: &Harness, id: &str, limit: u64, session_limit: Option<u64>) -> String {
    h.gateway
        .budgets()
        .create_budget(NewBudget::workflow(id.try_into().unwrap(), limit).with_unit(Unit::Usd))
        .await
        .unwrap();
    let (key, record) = keys::generate(id.try_into().unwrap(), None, session_limit).unwrap();
    h.keys.insert(&record).await.unwrap();
    key
}

fn post(h: &Harness, key: &str, body: &Value) -> reqwest::RequestBuilder {
    h.client
        .post(format!("{}/v1/messages", h.url))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

/// What the fake's answer costs: 25 input tokens, one output token per word.
fn answer_cost() -> u64 {
    let words = tokenbudget_gateway::fake::Fake::output_tokens("Hello from the fake upstream.");
    PriceTable::embedded()
        .cost(MODEL, &Usage::new(25, words))
        .unwrap()
        .micros()
}

#[tokio::test]
async fn usd_budgets_commit_the_priced_usage_exactly_streaming_or_not() {
    let h = start(1_000, |_| {}).await;
    let key = usd_key(&h, 5_000_000, None).await;
    for (n, stream) in [false, true, false, true].into_iter().enumerate() {
        let r = post(&h, &key, &request(&format!("price me {n}"), 1_000, stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-tokenbudget-budget"], "dollars");
        let _ = r.bytes().await.unwrap();
    }
    h.settled().await;
    let s = h.status("dollars").await;
    assert_eq!((s.used, s.reserved, s.held), (4 * answer_cost(), 0, 0));
    // $3 / M input, $15 / M output: 25 × 3 + 5 × 15 micro-dollars.
    assert_eq!(answer_cost(), 150);
    let records = h.ledger.records();
    assert_eq!(records.len(), 4);
    assert!(records
        .iter()
        .all(|r| r.cost == answer_cost() && r.settled == Settled::Completed));
    // The tokens budget of the harness' own key is untouched.
    assert_eq!(h.status("team").await.used, 0);
    h.shutdown().await;
}

#[tokio::test]
async fn an_unknown_model_on_a_usd_budget_is_refused_and_nothing_is_forwarded() {
    let h = start(1_000, |_| {}).await;
    let key = usd_key(&h, 5_000_000, None).await;
    let mut body = request("x", 100, true);
    body["model"] = "claude-no-such-model-9".into();
    let r = post(&h, &key, &body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("claude-no-such-model-9") && message.contains("dollars"),
        "{message}"
    );
    // OpenAI clients get the same refusal in OpenAI's shape.
    let r = h
        .client
        .post(format!("{}/v1/chat/completions", h.url))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "gpt-no-such-model", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-no-such-model"));
    assert!(h.fake.received().is_empty(), "nothing forwarded");
    let s = h.status("dollars").await;
    assert_eq!((s.used, s.held), (0, 0));
    h.shutdown().await;
}

#[tokio::test]
async fn a_usd_refusal_names_dollars_and_a_clamp_pays_what_is_left() {
    let h = start(1_000, |s| s.min_output_tokens = 100).await;
    let prices = PriceTable::embedded();
    let meter = Meter::Usd {
        model: MODEL.into(),
    };
    let body = request("hello", 128_000, true);
    let ask = Ask {
        prompt: claude_prompt_bound(&body),
        max_tokens: 128_000,
        min_output: 100,
    };
    // Room for the prompt and 1 234 output tokens, not one more.
    let limit = meter.hold(&prices, ask.prompt, 1_234).unwrap() + 14;
    let key = usd_key(&h, limit, None).await;
    let r = post(&h, &key, &body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tokenbudget-max-tokens"], "1234");
    let _ = r.bytes().await.unwrap();
    let (_, forwarded) = h.fake.received().pop().unwrap();
    assert_eq!(forwarded["max_tokens"], 1_234);
    assert_eq!(meter.clamp(&prices, limit, &ask).unwrap(), Some(1_234));
    h.settled().await;
    let s = h.status("dollars").await;
    assert_eq!((s.used, s.held), (answer_cost(), 0));

    // A budget one micro-dollar short of the prompt and 100 output tokens: refused, in
    // dollars, and nothing forwarded.
    let short = meter.hold(&prices, ask.prompt, 100).unwrap() - 1;
    let pennies = usd_key_on(&h, "pennies", short, None).await;
    let forwarded = h.fake.received().len();
    let r = post(&h, &pennies, &body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let message = r.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let left = Unit::Usd.format(short);
    let need = Unit::Usd.format(short + 1);
    assert!(
        message.contains(&format!("budget pennies has {left} left"))
            && message.contains(&format!("needs at least {need}")),
        "{message}"
    );
    assert_eq!(h.fake.received().len(), forwarded);
    h.shutdown().await;
}

#[tokio::test]
async fn concurrent_streams_on_a_usd_budget_never_overdraw_by_event_replay() {
    let h = start(1_000, |s| s.min_output_tokens = 100).await;
    h.fake.set_chunk(3);
    // About eight holds of 400 output tokens at once.
    let key = usd_key(&h, 50_000, None).await;
    let mut tasks = Vec::new();
    for i in 0..48 {
        let req = post(&h, &key, &request(&format!("concurrent {i}"), 400, true));
        tasks.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            400 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok > 0);
    h.settled().await;
    let events = h.gateway.budgets().events("dollars", 0).await.unwrap();
    for end in 1..=events.len() {
        let state = tokenbudget::replay(&events[..end]).unwrap();
        let b = &state[&"dollars".try_into().unwrap()];
        assert!(
            b.used + b.reserved <= b.limit,
            "overdraft after event {end}: {b:?}"
        );
    }
    let s = h.status("dollars").await;
    assert_eq!(s.held, 0);
    assert_eq!(s.used, ok * answer_cost());
    h.shutdown().await;
}

#[tokio::test]
async fn session_phases_under_a_usd_budget_count_dollars() {
    let h = start(1_000, |_| {}).await;
    let key = usd_key(&h, 5_000_000, Some(1_000_000)).await;
    let r = post(&h, &key, &request("x", 100, false))
        .header("x-claude-code-session-id", "s1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    h.settled().await;
    let phase = h.status("dollars:session:s1").await;
    assert_eq!(
        (phase.unit, phase.limit, phase.used),
        (Unit::Usd, 1_000_000, answer_cost())
    );
    assert_eq!(h.status("dollars").await.used, answer_cost());
    h.shutdown().await;
}
