//! `MicroUsd`: display, parsing and serde.

use proptest::prelude::*;
use tokenbudget_prices::{format_picos, Error, MicroUsd, PicoUsd, PriceTable, Usage};

#[test]
fn displays_dollars_with_two_to_six_decimals() {
    let cases = [
        (20_000_000, "$20.00"),
        (20_500_000, "$20.50"),
        (1_500_000, "$1.50"),
        (10_500, "$0.0105"),
        (123, "$0.000123"),
        (1, "$0.000001"),
        (0, "$0.00"),
        (u64::MAX, "$18446744073709.551615"),
    ];
    for (micros, text) in cases {
        assert_eq!(MicroUsd::new(micros).to_string(), text);
        assert_eq!(
            text.parse::<MicroUsd>().unwrap(),
            MicroUsd::new(micros),
            "{text}"
        );
    }
    assert_eq!(PicoUsd::new(3_000_000).to_string(), "$0.000003");
    assert_eq!(
        PicoUsd::new(3_000_000).per_million_tokens().to_string(),
        "$3.00"
    );
    assert_eq!(format_picos(2_500_000_000), "$0.0025");
    assert_eq!(format_picos(1), "$0.000000000001");
}

#[test]
fn parses_dollars_up_to_six_decimals() {
    let ok = [
        ("20", 20_000_000),
        ("20.5", 20_500_000),
        ("0.000001", 1),
        ("0", 0),
        ("007.25", 7_250_000),
        ("$3", 3_000_000),
        ("18446744073709.551615", u64::MAX),
    ];
    for (text, micros) in ok {
        assert_eq!(
            text.parse::<MicroUsd>(),
            Ok(MicroUsd::new(micros)),
            "{text}"
        );
    }
    let bad = [
        "0.0000001",
        "",
        "$",
        "-1",
        "+1",
        "1e3",
        ".5",
        "5.",
        " 5",
        "5 ",
        "1,000",
        "abc",
        "18446744073709.551616",
        "99999999999999999999",
    ];
    for text in bad {
        let err = text.parse::<MicroUsd>().unwrap_err();
        assert!(
            matches!(&err, Error::InvalidAmount { text: t, .. } if t == text),
            "{text}: {err:?}"
        );
    }
    let err = "0.0000001".parse::<MicroUsd>().unwrap_err();
    assert!(err.to_string().contains("more than 6 decimals"), "{err}");
}

#[test]
fn serde_uses_integer_micro_dollars() {
    let amount = MicroUsd::new(20_000_000);
    assert_eq!(serde_json::to_string(&amount).unwrap(), "20000000");
    assert_eq!(
        serde_json::from_str::<MicroUsd>("1").unwrap(),
        MicroUsd::new(1)
    );
    assert!(serde_json::from_str::<MicroUsd>("-1").is_err());
    assert!(serde_json::from_str::<MicroUsd>("\"$1\"").is_err());
}

#[test]
fn arithmetic_is_checked() {
    assert_eq!(MicroUsd::from_dollars(20), Some(MicroUsd::new(20_000_000)));
    assert_eq!(MicroUsd::from_dollars(u64::MAX), None);
    assert_eq!(MicroUsd::MAX.checked_add(MicroUsd::new(1)), None);
    assert_eq!(MicroUsd::ZERO.checked_sub(MicroUsd::new(1)), None);
    assert_eq!(
        MicroUsd::new(5).checked_sub(MicroUsd::new(2)),
        Some(MicroUsd::new(3))
    );
}

proptest! {
    /// Every displayed amount parses back to itself, and so does its plain number of dollars
    /// with six decimals.
    #[test]
    fn display_and_parse_round_trip(micros in any::<u64>()) {
        let amount = MicroUsd::new(micros);
        prop_assert_eq!(amount.to_string().parse::<MicroUsd>(), Ok(amount));
        let plain = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
        prop_assert_eq!(plain.parse::<MicroUsd>(), Ok(amount));
    }

    /// A price written as `<m>e-<k>` dollars per token is read exactly, and a cost is the
    /// exact product rounded up: checked against u128 arithmetic done here.
    #[test]
    fn prices_in_exponent_form_cost_the_exact_product_rounded_up(
        mantissa in 1u64..1_000_000,
        exponent in 6u32..=12,
        tokens in 0u64..10_000_000_000,
    ) {
        let text = format!(r#"{{"m": {{"input_cost_per_token": {mantissa}e-{exponent}}}}}"#);
        let table = PriceTable::from_litellm_json(&text).unwrap();
        let picos = u128::from(mantissa) * 10u128.pow(12 - exponent);
        let want = (u128::from(tokens) * picos).div_ceil(1_000_000);
        let got = table.cost("m", &Usage::new(tokens, 0)).unwrap();
        prop_assert_eq!(u128::from(got.micros()), want);
    }
}
