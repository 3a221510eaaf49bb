//! `tokenbudget cost`: dollars for a usage, the breakdown, `--prices`, and errors.

mod support;

use serde_json::json;
use support::Scratch;

#[test]
fn prints_the_cost_and_a_breakdown_per_kind() {
    let s = Scratch::new();
    let run = s.run(&[
        "cost",
        "--model",
        "claude-sonnet-4-5",
        "--input",
        "1000",
        "--output",
        "500",
        "--cache-read",
        "20000",
        "--cache-write-5m",
        "2000",
        "--cache-write-1h",
        "100",
    ]);
    let text = run.ok();
    let lines: Vec<&str> = text.lines().collect();
    // $3 × 1000 + $15 × 500 + $0.30 × 20 000 + $3.75 × 2000 + $6 × 100 (per MTok)
    // = 3000 + 7500 + 6000 + 7500 + 600 µ$ = $0.0246
    assert_eq!(lines[0], "$0.0246 for claude-sonnet-4-5");
    assert_eq!(
        lines[1],
        "  input                  1000 tokens x $3.00/MTok = $0.003"
    );
    assert_eq!(
        lines[2],
        "  output                  500 tokens x $15.00/MTok = $0.0075"
    );
    assert!(lines[3].starts_with("  cache_write_5m         2000 tokens x $3.75/MTok"));
    assert!(lines[4].starts_with("  cache_write_1h          100 tokens x $6.00/MTok"));
    assert!(lines[5].starts_with("  cache_read            20000 tokens x $0.30/MTok"));
    assert!(lines[6].contains("snapshot of 2026-12-01"), "{text}");
    assert!(
        !s.path().join("tokenbudget.db").exists(),
        "no database is created"
    );

    let help = s.run(&["--help"]);
    assert!(help.ok().contains("cost"), "listed in --help");
    let sub = s.run(&["cost", "--help"]);
    for flag in [
        "--cache-write-5m",
        "--cache-write-1h",
        "--cache-read",
        "--prices",
    ] {
        assert!(sub.ok().contains(flag), "{flag}");
    }
}

#[test]
fn json_gives_micro_dollars_and_the_breakdown() {
    let s = Scratch::new();
    let v = s
        .run(&[
            "cost",
            "--model",
            "anthropic/claude-sonnet-4-5-20250929",
            "--input",
            "1000",
            "--output",
            "500",
            "--json",
        ])
        .json();
    assert_eq!(
        v,
        json!({
            "model": "anthropic/claude-sonnet-4-5-20250929",
            "priced_as": "claude-sonnet-4-5-20250929",
            "micro_usd": 10_500,
            "usd": "$0.0105",
            "long_context_above": null,
            "snapshot_date": "2026-12-01",
            "breakdown": {
                "input": {"tokens": 1000, "pico_usd_per_token": 3_000_000, "pico_usd": 3_000_000_000u64},
                "output": {"tokens": 500, "pico_usd_per_token": 15_000_000, "pico_usd": 7_500_000_000u64},
            }
        })
    );
}

#[test]
fn the_long_context_tier_starts_above_200k_input_tokens() {
    let s = Scratch::new();
    let cost = |input: &str| {
        s.run(&[
            "cost",
            "--model",
            "claude-sonnet-4-20250514",
            "--input",
            input,
            "--output",
            "1000",
            "--json",
        ])
        .json()
    };
    let at = cost("200000");
    assert_eq!(at["long_context_above"], json!(null));
    assert_eq!(at["micro_usd"], 600_000 + 15_000);
    let over = cost("200001");
    assert_eq!(over["long_context_above"], 200_000);
    assert_eq!(over["micro_usd"], 1_200_006 + 22_500);
}

#[test]
fn a_prices_file_overrides_per_model() {
    let s = Scratch::new();
    s.file(
        "prices.json",
        r#"{"gpt-4o": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}"#,
    );
    let args = |model: &'static str| {
        vec![
            "cost", "--model", model, "--input", "1000000", "--output", "1000000", "--json",
        ]
    };
    let mut with_file = args("gpt-4o");
    with_file.extend(["--prices", "prices.json"]);
    assert_eq!(s.run(&with_file).json()["micro_usd"], 3_000_000);
    assert_eq!(s.run(&args("gpt-4o")).json()["micro_usd"], 12_500_000);
    // Other models keep the built-in prices.
    let mut other = args("gpt-4o-mini");
    other.extend(["--prices", "prices.json"]);
    assert_eq!(s.run(&other).json()["micro_usd"], 150_000 + 600_000);
}

#[test]
fn errors_exit_with_one_line() {
    let s = Scratch::new();
    // An unknown model: exit 1, naming it and close names.
    let run = s.run(&["cost", "--model", "claude-sonet-4-5", "--input", "10"]);
    let line = run.fails(1, "unknown model \"claude-sonet-4-5\"");
    assert!(line.contains("did you mean claude-sonnet-4-5"), "{line}");
    // Tokens without a price: exit 1.
    s.run(&["cost", "--model", "gpt-4o", "--cache-write-5m", "10"])
        .fails(1, "no price for cache_write_5m tokens");
    // A missing or broken price file: exit 1, naming it.
    s.run(&["cost", "--model", "gpt-4o", "--prices", "nope.json"])
        .fails(1, "nope.json");
    s.file("bad.json", "[]");
    s.run(&["cost", "--model", "gpt-4o", "--prices", "bad.json"])
        .fails(1, "bad.json");
    // Bad usage: exit 2.
    s.run(&["cost", "--input", "10"]).fails(2, "--model");
    s.run(&["cost", "--model", "gpt-4o", "--input=-5"])
        .fails(2, "invalid value '-5' for '--input <N>'");
    s.run(&["cost", "--model", "gpt-4o", "--output", "lots"])
        .fails(2, "--output");
}
