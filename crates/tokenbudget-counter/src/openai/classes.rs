//! The character classes of the OpenAI split patterns, one byte per code point.
//!
//! The sets come from `regex-syntax`, the parser of the `regex` crate that tiktoken's
//! patterns are run with (through `fancy-regex`), so `\p{L}`, `\p{N}`, `\s` and the rest mean
//! here exactly what they mean there, down to the Unicode version.

use std::collections::HashMap;

/// What the split patterns can tell apart about one character. The sets are disjoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Class {
    /// None of the others: punctuation, symbols, controls, unassigned code points.
    Other = 0,
    /// `\s` other than `\r` and `\n`.
    Space = 1,
    /// `\r` or `\n`.
    Newline = 2,
    /// `\p{N}`.
    Number = 3,
    /// `\p{Lu}` or `\p{Lt}`: upper and title case letters.
    Upper = 4,
    /// `\p{Ll}`: lower case letters.
    Lower = 5,
    /// `\p{Lm}` or `\p{Lo}`: letters without case (CJK, Arabic, Thai, modifier letters).
    Caseless = 6,
    /// `\p{M}`: combining marks (not letters).
    Mark = 7,
}

impl Class {
    /// `\p{L}`.
    #[inline]
    pub(crate) fn is_letter(self) -> bool {
        matches!(self, Class::Upper | Class::Lower | Class::Caseless)
    }

    /// `\s`.
    #[inline]
    pub(crate) fn is_space(self) -> bool {
        matches!(self, Class::Space | Class::Newline)
    }

    /// `[^\s\p{L}\p{N}]`: the run of the punctuation alternative.
    #[inline]
    pub(crate) fn is_punct(self) -> bool {
        matches!(self, Class::Other | Class::Mark)
    }

    /// `[^\r\n\p{L}\p{N}]`: the optional character before a word.
    #[inline]
    pub(crate) fn is_word_prefix(self) -> bool {
        matches!(self, Class::Other | Class::Mark | Class::Space)
    }

    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`: o200k's upper-case run.
    #[inline]
    pub(crate) fn is_upper_run(self) -> bool {
        matches!(self, Class::Upper | Class::Caseless | Class::Mark)
    }

    /// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`: o200k's lower-case run.
    #[inline]
    pub(crate) fn is_lower_run(self) -> bool {
        matches!(self, Class::Lower | Class::Caseless | Class::Mark)
    }
}

/// The sets as `regex` patterns; `Other` is what none of them holds.
const SETS: [(Class, &str); 7] = [
    (Class::Space, r"[\s&&[^\r\n]]"),
    (Class::Newline, r"[\r\n]"),
    (Class::Number, r"\p{N}"),
    (Class::Upper, r"[\p{Lu}\p{Lt}]"),
    (Class::Lower, r"\p{Ll}"),
    (Class::Caseless, r"[\p{Lm}\p{Lo}]"),
    (Class::Mark, r"\p{M}"),
];

const BLOCK_BITS: u32 = 8;
const BLOCK: usize = 1 << BLOCK_BITS;
const CODE_POINTS: usize = 0x11_0000;

/// A two-level table: `blocks[index[cp >> 8] * 256 + (cp & 0xff)]`. Most of the 4,352 blocks
/// of 256 code points are alike (all `Other`, all `Caseless`), so a few hundred are stored.
pub(crate) struct CharClasses {
    ascii: [Class; 128],
    index: Vec<u16>,
    blocks: Vec<Class>,
}

impl CharClasses {
    /// Builds the table from `regex-syntax`'s Unicode tables (about a millisecond).
    pub(crate) fn new() -> Self {
        let mut flat = vec![Class::Other; CODE_POINTS];
        for (class, pattern) in SETS {
            for (start, end) in class_ranges(pattern) {
                for cell in &mut flat[start as usize..=end as usize] {
                    debug_assert_eq!(*cell, Class::Other, "{pattern} overlaps another set");
                    *cell = class;
                }
            }
        }
        let mut index = Vec::with_capacity(CODE_POINTS / BLOCK);
        let mut blocks = Vec::new();
        // Keyed by bytes: a byte array hashes in one call, a slice of enums one by one.
        let mut seen: HashMap<[u8; BLOCK], u16> = HashMap::new();
        for block in flat.chunks(BLOCK) {
            let key: [u8; BLOCK] = std::array::from_fn(|i| block[i] as u8);
            let next = seen.len();
            let id = *seen.entry(key).or_insert_with(|| {
                blocks.extend_from_slice(block);
                u16::try_from(next).expect("fewer than 65,536 distinct blocks")
            });
            index.push(id);
        }
        let mut ascii = [Class::Other; 128];
        ascii.copy_from_slice(&flat[..128]);
        CharClasses {
            ascii,
            index,
            blocks,
        }
    }

    /// The class of an ASCII byte (`b < 0x80`).
    #[inline]
    pub(crate) fn ascii(&self, b: u8) -> Class {
        self.ascii[usize::from(b & 0x7f)]
    }

    /// The class of `c`.
    #[inline]
    pub(crate) fn of(&self, c: u32) -> Class {
        if c < 0x80 {
            return self.ascii(c as u8);
        }
        let block = self
            .index
            .get((c >> BLOCK_BITS) as usize)
            .map_or(0, |&b| usize::from(b));
        self.blocks
            .get(block * BLOCK + (c as usize & (BLOCK - 1)))
            .copied()
            .unwrap_or(Class::Other)
    }

    /// The class of the character that starts at `text[at]`, and its length in bytes.
    /// `at` must be below `text.len()`.
    #[inline(always)]
    pub(crate) fn at(&self, text: &[u8], at: usize) -> (Class, usize) {
        let b = text[at];
        if b < 0x80 {
            (self.ascii(b), 1)
        } else {
            self.at_multibyte(text, at)
        }
    }

    #[inline]
    fn at_multibyte(&self, text: &[u8], at: usize) -> (Class, usize) {
        let (c, len) = decode(text, at);
        (self.of(c), len)
    }
}

/// Decodes the non-ASCII character that starts at `text[at]` of a `str`'s bytes. Never panics:
/// bytes past the end read as continuation bytes of zero (which cannot happen in a `str`).
#[inline]
pub(crate) fn decode(text: &[u8], at: usize) -> (u32, usize) {
    let byte = |i: usize| u32::from(text.get(at + i).copied().unwrap_or(0x80) & 0x3f);
    let b0 = u32::from(text[at]);
    if b0 < 0xe0 {
        (((b0 & 0x1f) << 6) | byte(1), 2)
    } else if b0 < 0xf0 {
        (((b0 & 0x0f) << 12) | (byte(1) << 6) | byte(2), 3)
    } else {
        (
            ((b0 & 0x07) << 18) | (byte(1) << 12) | (byte(2) << 6) | byte(3),
            4,
        )
    }
}

/// The ranges of the character class `pattern`, as the `regex` crate parses it.
fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class as HirClass, HirKind};
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .expect("a valid class pattern");
    match hir.kind() {
        HirKind::Class(HirClass::Unicode(class)) => class
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
        HirKind::Literal(lit) => {
            let c = std::str::from_utf8(&lit.0)
                .ok()
                .and_then(|s| s.chars().next())
                .expect("a one-character literal");
            vec![(u32::from(c), u32::from(c))]
        }
        other => panic!("{pattern} is not a Unicode class: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pattern: &str) -> Vec<(u32, u32)> {
        class_ranges(pattern)
    }

    fn members(ranges: &[(u32, u32)]) -> impl Iterator<Item = u32> + '_ {
        ranges.iter().flat_map(|&(a, b)| a..=b)
    }

    #[test]
    fn every_code_point_gets_the_class_regex_gives_it() {
        let table = CharClasses::new();
        let mut want = vec![Class::Other; CODE_POINTS];
        for (class, pattern) in SETS {
            for c in members(&set(pattern)) {
                assert_eq!(want[c as usize], Class::Other, "{c:x} in two sets");
                want[c as usize] = class;
            }
        }
        for (c, &class) in want.iter().enumerate() {
            assert_eq!(table.of(c as u32), class, "U+{c:04X}");
        }
        assert!(
            table.blocks.len() / BLOCK < 1000,
            "{} blocks",
            table.blocks.len() / BLOCK
        );
    }

    #[test]
    fn the_classes_cover_the_pattern_sets_exactly() {
        let table = CharClasses::new();
        let check = |pattern: &str, pred: fn(Class) -> bool| {
            let mut inside = vec![false; CODE_POINTS];
            for c in members(&set(pattern)) {
                inside[c as usize] = true;
            }
            for c in (0..CODE_POINTS as u32).filter(|c| !(0xd800..0xe000).contains(c)) {
                assert_eq!(pred(table.of(c)), inside[c as usize], "{pattern} U+{c:04X}");
            }
        };
        check(r"\p{L}", Class::is_letter);
        check(r"\s", Class::is_space);
        check(r"[^\s\p{L}\p{N}]", Class::is_punct);
        check(r"[^\r\n\p{L}\p{N}]", Class::is_word_prefix);
        check(r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", Class::is_upper_run);
        check(r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]", Class::is_lower_run);
        check(r"\p{N}", |c| c == Class::Number);
    }

    #[test]
    fn decoding_matches_std() {
        for s in [
            "é",
            "中",
            "😀",
            "\u{10ffff}",
            "\u{80}",
            "\u{7ff}",
            "\u{800}",
        ] {
            let (c, len) = decode(s.as_bytes(), 0);
            assert_eq!((char::from_u32(c), len), (s.chars().next(), s.len()), "{s}");
        }
    }
}
