//! The hand-written split against tiktoken's own regex (run with `fancy-regex`, as tiktoken
//! runs it), piece by piece.

use std::sync::LazyLock;

use proptest::prelude::*;

use super::*;

/// tiktoken's `cl100k_base` pattern (tiktoken-rs 0.12 and Python tiktoken 0.9+).
const CL100K: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

static CLASSES: LazyLock<CharClasses> = LazyLock::new(CharClasses::new);
static REGEX: LazyLock<[fancy_regex::Regex; 2]> = LazyLock::new(|| {
    [
        fancy_regex::Regex::new(CL100K).unwrap(),
        fancy_regex::Regex::new(tiktoken_rs::O200K_BASE_PAT_STR).unwrap(),
    ]
});
const PATTERNS: [Pattern; 2] = [Pattern::Cl100k, Pattern::O200k];

fn regex_pieces(pattern: Pattern, text: &str) -> Vec<&str> {
    let regex = &REGEX[pattern as usize];
    regex
        .find_iter(text)
        .map(|m| m.expect("the regex runs").as_str())
        .collect()
}

#[track_caller]
fn assert_same_pieces(text: &str) {
    for pattern in PATTERNS {
        let ours = Splitter::new(&CLASSES, pattern).pieces(text);
        let theirs = regex_pieces(pattern, text);
        assert_eq!(ours, theirs, "{pattern:?} {text:?}");
    }
}

/// Characters of every class, and the ones the patterns name.
const ALPHABET: &[&str] = &[
    "a", "s", "t", "d", "m", "l", "v", "e", "r", "S", "T", "L", "E", "R", "x", "Q", "'", " ", "\t",
    "\r", "\n", "/", "!", "7", "\u{17f}", "\u{1c5}", "\u{2b0}", "中", "\u{301}", "\u{903}",
    "\u{a0}", "\u{2028}", "\u{85}", "½", "٣", "😀", "\u{200b}", "\u{e000}", "\u{fffd}", "\u{b}",
    "\u{212a}", "é", "É",
];

#[test]
fn every_string_of_up_to_three_characters_splits_like_the_regex() {
    let small: Vec<&str> = ALPHABET.to_vec();
    let mut checked = 0;
    for a in &small {
        assert_same_pieces(a);
        for b in &small {
            assert_same_pieces(&format!("{a}{b}"));
            for c in &small {
                assert_same_pieces(&format!("{a}{b}{c}"));
                checked += 1;
            }
        }
    }
    assert!(checked > 50_000);
}

#[test]
fn hand_picked_cases_split_like_the_regex() {
    for text in [
        "",
        "Hello world, it's John's 'RE'll I'M we'Ve they'D 'ſ 'S",
        "HTTPServer parseJSONResponse getHTTPResponseCode XMLHttpRequest ǅemal",
        "a\n  ",
        "a\n \t",
        "x\n\n   ",
        "}\n    return;\n}\n//comment\n/* c */\r\n\r\n  \r\n",
        "\u{301}'s \u{301}\u{301}'S é\u{301}E\u{301}'ll",
        "ÉCOLE's CAFÉ'S 中文's 日本語テキスト",
        "1234567 ١٢٣٤ ½⅓ Ⅻ 12abc abc12",
        "   \u{a0}\u{a0}x \u{2028}\u{2029} \u{85}y",
        "<|endoftext|> <|fim_prefix|>",
        "\t\t\tif (x) {\n\t\t\t\treturn y;\n\t\t\t}",
        "emoji 😀😀 👨‍👩‍👧 🇫🇷!",
        "trailing spaces   ",
        "\r\r\n\n\r",
        " ",
        "'",
        "' s",
        "''s",
        "a'sS'Ss",
    ] {
        assert_same_pieces(text);
    }
}

#[test]
fn the_corpus_splits_like_the_regex() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files = 0;
    for dir in std::fs::read_dir(&corpus).unwrap().flatten() {
        if !dir.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let text = std::fs::read_to_string(file.path()).unwrap();
            assert_same_pieces(&text);
            files += 1;
        }
    }
    assert!(files >= 70, "{files} files");
}

#[test]
fn case_insensitive_contractions_cover_what_the_regex_folds() {
    // The `regex` crate folds `(?i)s` to [Ssſ]; `contraction` must know every such extra.
    use regex_syntax::hir::{Class as HirClass, HirKind};
    for letter in ["s", "t", "m", "d", "r", "e", "v", "l"] {
        let hir = regex_syntax::Parser::new()
            .parse(&format!("(?i){letter}"))
            .unwrap();
        let HirKind::Class(HirClass::Unicode(class)) = hir.kind() else {
            panic!("{letter}: {hir:?}");
        };
        let folded: Vec<char> = class
            .ranges()
            .iter()
            .flat_map(|r| r.start()..=r.end())
            .collect();
        let mut want = vec![letter.to_ascii_uppercase(), letter.to_owned()];
        if letter == "s" {
            want.push("\u{17f}".to_owned());
        }
        let want: Vec<char> = want.iter().flat_map(|s| s.chars()).collect();
        assert_eq!(folded, want, "(?i){letter}");
    }
}

/// Fragments to build random text from: every class, the contractions, case changes, runs.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(ALPHABET).prop_map(str::to_owned),
        2 => proptest::sample::select(&[
            "'s", "'S", "'re", "'RE", "'Ve", "'ll", "'LL", "'m", "'d", "'D", "'t", "'T", "'x",
            "Hello", "WORLD", "camelCase", "HTTPServer", "ÉTÉ", "über", "Straße", "naïve",
            "Привет", "ПРИВЕТ", "Ελληνικά", "日本語", "한국어", "עברית", "العربية", "हिन्दी", "ไทย",
            "\r\n", "\n\n", "    ", "\t\t", " \n ", "//", "/*", "*/", "==", "->", "{}", "();",
            "123", "4567", "3.14", "1e9", "0x1F", "٣٤٥", "😀", "👍🏽", "🇫🇷", "<|endoftext|>",
        ][..])
        .prop_map(str::to_owned),
        1 => "[ \t\n\r]{1,6}",
        1 => any::<char>().prop_map(String::from),
    ]
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(fragment(), 0..24).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_text_splits_like_the_regex(text in text()) {
        for pattern in PATTERNS {
            let ours = Splitter::new(&CLASSES, pattern).pieces(&text);
            let theirs = regex_pieces(pattern, &text);
            prop_assert_eq!(ours, theirs, "{:?} {:?}", pattern, text);
        }
    }
}

#[test]
fn long_runs_split_in_linear_time_and_like_the_regex_where_it_copes() {
    // The regex's stack grows with a whitespace run; 20,000 characters is well within it.
    for unit in [
        " ", "\n", " \n", "a", "A", "aA", "中", "\u{301}", "7", "!", " !", "'s",
    ] {
        let text = unit.repeat(20_000 / unit.chars().count()) + "x";
        assert_same_pieces(&text);
    }
    // A megabyte of each: only ours (the regex overflows its stack on the spaces).
    for unit in [" ", "\n", "a", "\u{301}", "!", " \t"] {
        let text = unit.repeat(1 << 20) + "a";
        for pattern in PATTERNS {
            let pieces = Splitter::new(&CLASSES, pattern).pieces(&text);
            assert_eq!(pieces.concat(), text);
        }
    }
}
