//! `MicroUsd`: display, parsing and serde.

use tokenbudget_prices::{format_picos, Error, MicroUsd, PicoUsd};

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
