//! The OpenAI counter against tiktoken-rs (`encode_ordinary().len()`) and bpe-openai on
//! random text: mixed scripts, whitespace runs, digits, contractions in any case, line
//! breaks, emoji, combining marks and case changes (o200k splits on case).
#![cfg(feature = "tiktoken")]

use proptest::prelude::*;
use tokenbudget_counter::{Encoding, OpenAiCounter};

fn tiktoken(encoding: Encoding, text: &str) -> u64 {
    let bpe = match encoding {
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        _ => tiktoken_rs::o200k_base_singleton(),
    };
    bpe.encode_ordinary(text).len() as u64
}

fn bpe_openai(encoding: Encoding, text: &str) -> u64 {
    let tokenizer = match encoding {
        Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        _ => bpe_openai::o200k_base(),
    };
    tokenizer.count(text) as u64
}

/// Pieces of text that exercise every branch of the split patterns.
const FRAGMENTS: &[&str] = &[
    // Contractions in every case, and near misses.
    "'s",
    "'S",
    "'t",
    "'T",
    "'re",
    "'RE",
    "'rE",
    "'ve",
    "'VE",
    "'m",
    "'M",
    "'ll",
    "'LL",
    "'d",
    "'D",
    "'ſ",
    "'x",
    "''",
    "it's",
    "IT'S",
    "don't",
    "We'Re",
    // Case changes.
    "Hello",
    "WORLD",
    "camelCase",
    "HTTPServer",
    "getHTTPResponse",
    "ǅemal",
    "ÉTÉ",
    "über",
    "Straße",
    "naïve",
    "McDonald",
    "iPhone",
    "XMLHttpRequest",
    // Other scripts.
    "Привет",
    "ПРИВЕТ",
    "Ελληνικά",
    "日本語テキスト",
    "中文",
    "한국어",
    "עברית",
    "العربية",
    "हिन्दी",
    "বাংলা",
    "ไทย",
    "ქართული",
    "Հայերեն",
    "தமிழ்",
    // Combining marks, alone and after letters.
    "\u{301}",
    "e\u{301}",
    "E\u{301}",
    "\u{301}\u{301}",
    "a\u{308}\u{323}",
    // Numbers.
    "1",
    "12",
    "123",
    "1234567",
    "3.14",
    "1e9",
    "0x1F",
    "١٢٣",
    "½",
    "Ⅻ",
    "²",
    // Whitespace and line breaks.
    " ",
    "  ",
    "    ",
    "\t",
    "\t\t",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    " \n",
    "\n ",
    "\u{a0}",
    "\u{2028}",
    "\u{85}",
    "\u{3000}",
    "\u{b}",
    "\u{c}",
    // Punctuation, code, symbols, emoji.
    ".",
    ",",
    "!",
    "?",
    "...",
    "/",
    "//",
    "/*",
    "*/",
    "->",
    "==",
    "{",
    "}",
    "();",
    "<|endoftext|>",
    "\"",
    "`",
    "#",
    "@",
    "$",
    "€",
    "😀",
    "👍🏽",
    "👨‍👩‍👧",
    "🇫🇷",
    "\u{200b}",
    "\u{feff}",
    "\u{fffd}",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(FRAGMENTS).prop_map(str::to_owned),
        1 => "[ \t\r\n]{1,8}",
        1 => "[a-zA-Z]{1,12}",
        1 => any::<char>().prop_map(String::from),
    ]
}

fn text(max_fragments: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(fragment(), 0..max_fragments).prop_map(|parts| parts.concat())
}

#[track_caller]
fn assert_counts(text: &str) -> Result<(), TestCaseError> {
    for encoding in Encoding::ALL {
        let ours = OpenAiCounter::new(encoding).count_tokens(text);
        prop_assert_eq!(
            ours,
            tiktoken(encoding, text),
            "{} vs tiktoken-rs on {:?}",
            encoding,
            text
        );
        prop_assert_eq!(
            ours,
            bpe_openai(encoding, text),
            "{} vs bpe-openai on {:?}",
            encoding,
            text
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn short_random_text_counts_like_tiktoken(text in text(40)) {
        assert_counts(&text)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Texts over 4 KB take the per-call memo of multi-token pieces: repeated words hit it,
    /// and many distinct ones collide in it.
    #[test]
    fn long_random_text_counts_like_tiktoken(
        words in proptest::collection::vec(text(6), 1..200),
        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 600..1500),
    ) {
        let text: String = picks.iter().map(|i| i.get(&words).as_str()).collect();
        assert_counts(&text)?;
    }
}

#[test]
fn runs_longer_than_the_merge_limit_count_like_tiktoken() {
    // Long words and runs go to bpe's encoder; a whitespace run reaching the end is a piece.
    for unit in [
        "a",
        "ab",
        "Zz",
        "中",
        "\u{939}\u{93f}",
        "7",
        "!",
        " ",
        "\n",
        " \n",
        "\t ",
    ] {
        for n in [15, 16, 17, 40, 100, 400] {
            let text = unit.repeat(n);
            assert_counts(&text).unwrap();
            assert_counts(&format!("{text}x")).unwrap();
            assert_counts(&format!("x{text}")).unwrap();
        }
    }
}
