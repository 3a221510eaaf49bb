//! Costs computed by hand: every token kind, the long-context boundary, rounding up.

use tokenbudget_prices::{Error, MicroUsd, PriceTable, TokenKind, Usage};

/// Prices chosen so each kind's cost is easy to check by hand (dollars per token).
const TABLE: &str = r#"{
  "sonnet-like": {
    "litellm_provider": "anthropic",
    "mode": "chat",
    "input_cost_per_token": 3e-06,
    "output_cost_per_token": 1.5e-05,
    "cache_creation_input_token_cost": 3.75e-06,
    "cache_creation_input_token_cost_above_1hr": 6e-06,
    "cache_read_input_token_cost": 3e-07,
    "input_cost_per_token_above_200k_tokens": 6e-06,
    "output_cost_per_token_above_200k_tokens": 2.25e-05,
    "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
    "cache_read_input_token_cost_above_200k_tokens": 6e-07
  },
  "cheap": {"input_cost_per_token": 1e-08, "output_cost_per_token": 2.5e-07},
  "no-cache": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}
}"#;

fn table() -> PriceTable {
    PriceTable::from_litellm_json(TABLE).unwrap()
}

fn usage(kind: TokenKind, tokens: u64) -> Usage {
    let mut u = Usage::default();
    match kind {
        TokenKind::Input => u.input = tokens,
        TokenKind::Output => u.output = tokens,
        TokenKind::CacheWrite5m => u.cache_write_5m = tokens,
        TokenKind::CacheWrite1h => u.cache_write_1h = tokens,
        TokenKind::CacheRead => u.cache_read = tokens,
        _ => unreachable!(),
    }
    u
}

#[test]
fn every_token_kind_at_its_own_price() {
    let t = table();
    // 1000 tokens of each kind: $/token × 1000 × 10^6 µ$/$.
    let cases = [
        (TokenKind::Input, 3_000),        // 3e-06 × 1000 = $0.003
        (TokenKind::Output, 15_000),      // 1.5e-05 × 1000 = $0.015
        (TokenKind::CacheWrite5m, 3_750), // 3.75e-06 × 1000 = $0.00375
        (TokenKind::CacheWrite1h, 6_000), // 6e-06 × 1000 = $0.006
        (TokenKind::CacheRead, 300),      // 3e-07 × 1000 = $0.0003
    ];
    for (kind, micros) in cases {
        let cost = t.cost("sonnet-like", &usage(kind, 1000)).unwrap();
        assert_eq!(cost, MicroUsd::new(micros), "{kind}");
    }
    // All together: the sum.
    let all = Usage {
        input: 1000,
        output: 1000,
        cache_write_5m: 1000,
        cache_write_1h: 1000,
        cache_read: 1000,
    };
    let cost = t.price("sonnet-like", &all).unwrap();
    assert_eq!(
        cost.total,
        MicroUsd::new(3_000 + 15_000 + 3_750 + 6_000 + 300)
    );
    assert_eq!(cost.model, "sonnet-like");
    assert_eq!(cost.tier_above_input_tokens, None);
    let kinds: Vec<_> = cost.lines.iter().map(|l| (l.kind, l.picos)).collect();
    assert_eq!(
        kinds,
        [
            (TokenKind::Input, 3_000_000_000),
            (TokenKind::Output, 15_000_000_000),
            (TokenKind::CacheWrite5m, 3_750_000_000),
            (TokenKind::CacheWrite1h, 6_000_000_000),
            (TokenKind::CacheRead, 300_000_000),
        ]
    );
}

#[test]
fn the_total_is_rounded_up_once() {
    let t = table();
    // 1 token at 1e-08 $ = 0.01 µ$: rounds up to 1 µ$, never to zero.
    assert_eq!(
        t.cost("cheap", &Usage::new(1, 0)).unwrap(),
        MicroUsd::new(1)
    );
    // 100 tokens = exactly 1 µ$: no rounding.
    assert_eq!(
        t.cost("cheap", &Usage::new(100, 0)).unwrap(),
        MicroUsd::new(1)
    );
    // 101 tokens = 1.01 µ$ → 2.
    assert_eq!(
        t.cost("cheap", &Usage::new(101, 0)).unwrap(),
        MicroUsd::new(2)
    );
    // Rounded once on the total, not per kind: 50 input (0.5 µ$) + 2 output (0.5 µ$) = 1 µ$
    // (per-kind rounding would give 2).
    assert_eq!(
        t.cost("cheap", &Usage::new(50, 2)).unwrap(),
        MicroUsd::new(1)
    );
    // Nothing used costs nothing.
    assert_eq!(t.cost("cheap", &Usage::default()).unwrap(), MicroUsd::ZERO);
}

#[test]
fn above_200k_input_every_token_is_at_the_long_context_rate() {
    let t = table();
    // Exactly 200 000 input tokens (across kinds) stays at the base rates.
    let at = Usage {
        input: 100_000,
        cache_write_5m: 50_000,
        cache_read: 50_000,
        output: 1_000,
        ..Usage::default()
    };
    let cost = t.price("sonnet-like", &at).unwrap();
    assert_eq!(cost.tier_above_input_tokens, None);
    // 100k × 3 + 50k × 3.75 + 50k × 0.3 + 1k × 15 (µ$ per 1000 tokens × 1000)
    assert_eq!(
        cost.total,
        MicroUsd::new(300_000 + 187_500 + 15_000 + 15_000)
    );

    // One more input token (200 001) prices all of it, output too, at the tier.
    let over = Usage {
        input: 100_001,
        ..at
    };
    let cost = t.price("sonnet-like", &over).unwrap();
    assert_eq!(cost.tier_above_input_tokens, Some(200_000));
    // 100 001 × 6 + 50k × 7.5 + 50k × 0.6 + 1k × 22.5
    assert_eq!(
        cost.total,
        MicroUsd::new(600_006 + 375_000 + 30_000 + 22_500)
    );

    // The threshold counts cache reads: 1 fresh + 200 000 read is over it.
    let cached = Usage {
        input: 1,
        cache_read: 200_000,
        ..Usage::default()
    };
    let cost = t.price("sonnet-like", &cached).unwrap();
    assert_eq!(cost.tier_above_input_tokens, Some(200_000));
    assert_eq!(cost.total, MicroUsd::new(6 + 120_000));

    // Output never counts towards the threshold.
    let output_heavy = Usage {
        input: 1,
        output: 300_000,
        ..Usage::default()
    };
    assert_eq!(
        t.price("sonnet-like", &output_heavy)
            .unwrap()
            .tier_above_input_tokens,
        None
    );

    // A kind the tier does not list keeps its base price: the 1 hour cache write.
    let one_hour = Usage {
        cache_write_1h: 1_000,
        cache_read: 200_000,
        ..Usage::default()
    };
    assert_eq!(
        t.cost("sonnet-like", &one_hour).unwrap(),
        MicroUsd::new(6_000 + 120_000)
    );
}

#[test]
fn the_embedded_sonnet_4_tier_matches_anthropic_published_rates() {
    // claude-sonnet-4-20250514: $3 / $15 per MTok, $6 / $22.50 above 200k input tokens.
    let t = PriceTable::embedded();
    let at = Usage::new(200_000, 10_000);
    assert_eq!(
        t.cost("claude-sonnet-4-20250514", &at).unwrap(),
        MicroUsd::new(600_000 + 150_000)
    );
    let over = Usage::new(200_001, 10_000);
    assert_eq!(
        t.cost("claude-sonnet-4-20250514", &over).unwrap(),
        MicroUsd::new(1_200_006 + 225_000)
    );
}

#[test]
fn tokens_without_a_price_are_an_error_not_free() {
    let t = table();
    let err = t
        .cost("no-cache", &usage(TokenKind::CacheWrite5m, 10))
        .unwrap_err();
    assert_eq!(
        err,
        Error::MissingPrice {
            model: "no-cache".into(),
            kind: TokenKind::CacheWrite5m
        }
    );
    assert_eq!(
        err.to_string(),
        "model \"no-cache\" has no price for cache_write_5m tokens"
    );
    // Zero tokens of an unpriced kind are fine.
    assert_eq!(
        t.cost("no-cache", &Usage::new(1000, 0)).unwrap(),
        MicroUsd::new(2_500)
    );
}

#[test]
fn costs_too_large_for_micro_dollars_are_an_error() {
    let t =
        PriceTable::from_litellm_json(r#"{"dear": {"input_cost_per_token": 10000000}}"#).unwrap();
    // 10^7 $/token × 1.8 × 10^19 tokens does not fit in u64 micro-dollars.
    let err = t.cost("dear", &Usage::new(u64::MAX, 0)).unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
    // The largest representable price times a modest count still works.
    assert_eq!(
        t.cost("dear", &Usage::new(1_000, 0)).unwrap(),
        MicroUsd::new(10_000_000 * 1_000 * 1_000_000)
    );
}

#[test]
fn summed_usage_is_priced_in_the_tier_of_its_requests_not_of_the_sum() {
    let t = table();
    assert_eq!(t.tier_thresholds(), [200_000]);
    // Three requests of 100k input each, summed: 300k, yet each was below the threshold.
    let sum = usage(TokenKind::Input, 300_000);
    let base = t.price_summed("sonnet-like", &sum, 100_000).unwrap();
    assert_eq!(base.tier_above_input_tokens, None);
    assert_eq!(base.total, MicroUsd::new(900_000));
    // Two requests above it, summed: the tier's rates.
    let long = t.price_summed("sonnet-like", &sum, 200_001).unwrap();
    assert_eq!(long.tier_above_input_tokens, Some(200_000));
    assert_eq!(long.total, MicroUsd::new(1_800_000));
    // The exact amounts, before the one rounding up.
    let cheap = t
        .price_summed("cheap", &usage(TokenKind::Input, 3), 0)
        .unwrap();
    assert_eq!(cheap.lines[0].picos, 30_000);
    assert_eq!(cheap.total, MicroUsd::new(1));
    assert!(PriceTable::embedded().tier_thresholds().contains(&200_000));
}
