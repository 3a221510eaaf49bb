//! `tokenbudget count`: every provider, text and chat messages, file and stdin.

mod support;

use serde_json::json;
use support::Scratch;

#[cfg(any(feature = "tiktoken", feature = "claude"))]
const MESSAGES: &str = r#"[
  {"role": "system", "content": "You are terse."},
  {"role": "user", "name": "ana", "content": "hello world"}
]"#;

#[cfg(feature = "tiktoken")]
#[test]
fn openai_counts_are_exact_for_the_model_encoding() {
    let s = Scratch::new();
    let run = s.run_with_stdin(&["count", "--json"], "hello world");
    assert_eq!(
        run.json(),
        json!({"tokens": 2, "counter": "tiktoken/o200k_base", "exact": true})
    );
    let run = s.run_with_stdin(&["count", "--model", "gpt-4", "--json"], "hello world");
    assert_eq!(run.json()["counter"], "tiktoken/cl100k_base");
    let run = s.run_with_stdin(
        &["count", "--model", "cl100k_base", "--json"],
        "hello world",
    );
    assert_eq!(
        run.json()["counter"],
        "tiktoken/cl100k_base",
        "an encoding name works too"
    );

    // Cookbook: 3 priming + 2 x (3 per message + role + content) + name + 1.
    s.file("chat.json", MESSAGES);
    let run = s.run(&[
        "count",
        "--provider",
        "openai",
        "--messages",
        "chat.json",
        "--json",
    ]);
    let v = run.json();
    assert_eq!(v["exact"], true);
    let system = 3 + 1 + 4; // "system", "You are terse."
    let user = 3 + 1 + 2 + 1 + 1; // "user", "hello world", "ana", +1 per name
    assert_eq!(v["tokens"], 3 + system + user, "{v}");

    let text = s.run_with_stdin(&["count", "-"], "hello world");
    assert_eq!(text.ok().trim(), "2 tokens (exact, tiktoken/o200k_base)");
}

#[test]
fn the_estimator_is_marked_estimated() {
    let s = Scratch::new();
    s.file(
        "prose.txt",
        &"The quick brown fox jumps over the lazy dog. ".repeat(50),
    );
    let v = s
        .run(&["count", "--provider", "estimate", "prose.txt", "--json"])
        .json();
    assert_eq!(
        (&v["counter"], &v["exact"]),
        (&json!("estimator/o200k_base"), &json!(false))
    );
    let tokens = v["tokens"].as_u64().unwrap();
    // 10 tokens per sentence exactly; the estimator is within a few percent on prose.
    assert!((450..=550).contains(&tokens), "{tokens}");
    let empty = s
        .run_with_stdin(&["count", "--provider", "estimate", "--json"], "")
        .json();
    assert_eq!(empty["tokens"], 0);
}

#[cfg(feature = "claude")]
mod claude {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use serde_json::{json, Value};

    use super::support::{self, Scratch};
    use super::MESSAGES;

    #[test]
    fn claude_without_a_key_falls_back_to_the_estimate() {
        let s = Scratch::new();
        s.file("chat.json", MESSAGES);
        let run = s.run(&[
            "count",
            "--provider",
            "claude",
            "--model",
            "claude-sonnet-4-5",
            "--messages",
            "chat.json",
            "--json",
        ]);
        let v = run.json();
        assert_eq!(v["exact"], false, "{v}");
        assert_eq!(v["counter"], "estimator/cl100k_base");
        assert!(v["tokens"].as_u64().unwrap() > 0);
    }

    /// A one-request fake of Anthropic's `count_tokens`: answers `{"input_tokens": 42}` and hands
    /// back what it received.
    fn fake_count_tokens() -> (String, std::thread::JoinHandle<(String, Value)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = r#"{"input_tokens":42}"#;
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
            (head, serde_json::from_slice(&body).unwrap())
        });
        (base, handle)
    }

    #[test]
    fn claude_counts_with_the_api_when_it_answers() {
        let s = Scratch::new();
        s.file("chat.json", MESSAGES);
        let (base, server) = fake_count_tokens();
        let out = s
            .command(&[
                "count",
                "--provider",
                "claude",
                "--model",
                "claude-sonnet-4-5",
                "--messages",
                "chat.json",
                "--json",
            ])
            .env("ANTHROPIC_API_KEY", "test-key")
            .env("ANTHROPIC_BASE_URL", &base)
            .output()
            .unwrap();
        let run = support::Run::from(out);
        assert_eq!(
            run.json(),
            json!({"tokens": 42, "counter": "claude", "exact": true})
        );
        let (head, body) = server.join().unwrap();
        assert!(
            head.starts_with("POST /v1/messages/count_tokens "),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase().contains("x-api-key: test-key"),
            "{head}"
        );
        assert_eq!(body["model"], "claude-sonnet-4-5");
        assert_eq!(body["system"], "You are terse.");
        assert_eq!(body["messages"][0]["content"], "hello world");
    }
}
