//! tiktoken's pre-tokenization, written out by hand for `cl100k_base` and `o200k_base`.
//!
//! tiktoken splits text with a backtracking regex before it applies byte-pair merges; the
//! merges never cross a piece boundary, so the pieces must be exactly the regex's. Each
//! function below follows one pattern alternative by alternative, in the pattern's order,
//! and the comments give the alternative and how backtracking resolves it.
//!
//! Each scan is one forward pass over a run of characters of one kind, and what a piece
//! scans past its own end is only the rest of that run, which the next pieces consume. So
//! no character is looked at more than four times (a run of capitals after a combining mark,
//! in o200k: the mark's two attempts, then the next piece's two case alternatives), and a
//! count is linear in the text. The regex instead needs a stack as deep as a whitespace run
//! and overflows on a megabyte of spaces.
//!
//! The patterns, as tiktoken-rs 0.12 and Python tiktoken 0.14 write them:
//!
//! ```text
//! cl100k_base  '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+
//!              | ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s
//! o200k_base   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//!              |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//!              |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! Every character starts a match of some alternative, so the pieces tile the text.

use super::classes::{CharClasses, Class};

/// Which split pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `cl100k_base`'s.
    Cl100k,
    /// `o200k_base`'s.
    O200k,
}

/// Splits text into tiktoken's pieces.
#[derive(Clone, Copy)]
pub(crate) struct Splitter<'a> {
    classes: &'a CharClasses,
    pattern: Pattern,
}

impl<'a> Splitter<'a> {
    pub(crate) fn new(classes: &'a CharClasses, pattern: Pattern) -> Self {
        Splitter { classes, pattern }
    }

    /// The end of the piece that starts at `at`: a char boundary in `at + 1..=text.len()`.
    /// `text` is a `str`'s bytes and `at` a char boundary below its length.
    #[inline]
    pub(crate) fn piece_end(&self, text: &[u8], at: usize) -> usize {
        let end = match self.pattern {
            Pattern::Cl100k => self.cl100k(text, at),
            Pattern::O200k => self.o200k(text, at),
        };
        // Every branch returns a later position; the clamp makes progress certain anyway.
        debug_assert!(end > at && end <= text.len(), "piece {at}..{end}");
        debug_assert!(
            end == text.len() || (text[end] as i8) >= -0x40,
            "piece {at}..{end} ends inside a character"
        );
        end.clamp(at + 1, text.len())
    }

    /// The pieces of `text`, in order.
    #[cfg(test)]
    pub(crate) fn pieces<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let end = self.piece_end(bytes, at);
            pieces.push(&text[at..end]);
            at = end;
        }
        pieces
    }

    fn cl100k(&self, text: &[u8], at: usize) -> usize {
        let (c, len) = self.classes.at(text, at);
        let next = at + len;
        // '(?i:[sdmt]|ll|ve|re)
        if text[at] == b'\'' {
            let n = contraction(text, at);
            if n > 0 {
                return at + n;
            }
        }
        match c {
            // [^\r\n\p{L}\p{N}]?+\p{L}++ without the prefix.
            _ if c.is_letter() => return self.run(text, next, Class::is_letter),
            // \p{N}{1,3}+
            Class::Number => return self.numbers(text, next),
            _ => {}
        }
        // [^\r\n\p{L}\p{N}]?+\p{L}++ with the prefix.
        if c.is_word_prefix() && next < text.len() {
            let (c2, len2) = self.classes.at(text, next);
            if c2.is_letter() {
                return self.run(text, next + len2, Class::is_letter);
            }
        }
        //  ?[^\s\p{L}\p{N}]++[\r\n]*+
        if let Some(end) = self.punct(text, at, c, next) {
            return newlines(text, end, false);
        }
        self.spaces(text, at, Pattern::Cl100k)
    }

    fn o200k(&self, text: &[u8], at: usize) -> usize {
        let (c, len) = self.classes.at(text, at);
        let next = at + len;
        if c.is_letter() {
            // No prefix. A lower-case letter starts a lower run; an upper-case letter starts
            // an upper run (the second alternative if the first finds no lower part); a
            // caseless letter is in both runs. So one of the two matches.
            return self
                .upper_then_lower(text, at)
                .or_else(|| self.upper_then_any(text, at))
                .unwrap_or(next);
        }
        if c.is_word_prefix() {
            // The first alternative with the prefix, then without it (only a mark can start
            // either run), then the second alternative the same way.
            if let Some(end) = self.upper_then_lower(text, next) {
                return end;
            }
            if c == Class::Mark {
                // A mark is in the lower run, so the first alternative matches here.
                return self.upper_then_lower(text, at).unwrap_or(next);
            }
            if let Some(end) = self.upper_then_any(text, next) {
                return end;
            }
        }
        // \p{N}{1,3}
        if c == Class::Number {
            return self.numbers(text, next);
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n/]*
        if let Some(end) = self.punct(text, at, c, next) {
            return newlines(text, end, true);
        }
        self.spaces(text, at, Pattern::O200k)
    }

    /// o200k's first alternative from `from` (after the optional prefix):
    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` then the contraction.
    ///
    /// The upper run is greedy. If a lower-case letter follows it, the lower run takes over
    /// from there. Otherwise the regex gives characters back until the lower run can start:
    /// at the last caseless letter or mark of the upper run, and the lower run is that one
    /// character (everything after it in the upper run is upper or title case).
    fn upper_then_lower(&self, text: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
        let mut last_lower_end = None;
        while i < text.len() {
            let (c, len) = self.classes.at(text, i);
            if !c.is_upper_run() {
                if c == Class::Lower {
                    let end = self.run(text, i + len, Class::is_lower_run);
                    return Some(end + contraction(text, end));
                }
                break;
            }
            i += len;
            if c.is_lower_run() {
                last_lower_end = Some(i);
            }
        }
        let end = last_lower_end?;
        Some(end + contraction(text, end))
    }

    /// o200k's second alternative from `from` (after the optional prefix):
    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` then the contraction.
    fn upper_then_any(&self, text: &[u8], from: usize) -> Option<usize> {
        let upper_end = self.run(text, from, Class::is_upper_run);
        if upper_end == from {
            return None;
        }
        let end = self.run(text, upper_end, Class::is_lower_run);
        Some(end + contraction(text, end))
    }

    /// ` ?[^\s\p{L}\p{N}]+`, shared by both patterns: the end of the punctuation run.
    #[inline]
    fn punct(&self, text: &[u8], at: usize, c: Class, next: usize) -> Option<usize> {
        if c.is_punct() {
            return Some(self.run(text, next, Class::is_punct));
        }
        if text[at] == b' ' && next < text.len() {
            let (c2, len2) = self.classes.at(text, next);
            if c2.is_punct() {
                return Some(self.run(text, next + len2, Class::is_punct));
            }
        }
        None
    }

    /// `\p{N}{1,3}` after the first number at `from`'s left.
    #[inline]
    fn numbers(&self, text: &[u8], from: usize) -> usize {
        let mut end = from;
        for _ in 0..2 {
            if end >= text.len() {
                break;
            }
            let (c, len) = self.classes.at(text, end);
            if c != Class::Number {
                break;
            }
            end += len;
        }
        end
    }

    /// The whitespace alternatives, for a piece that starts with whitespace and matched
    /// nothing before them. `run` is the whole whitespace run from `at`.
    ///
    /// - `\s++$` (cl100k, tried first): the run reaches the end of the text.
    /// - `\s*[\r\n]+` / `\s*[\r\n]`: the greedy `\s*` gives back characters until a line
    ///   break follows: the piece ends after the last `\r` or `\n` of the run.
    /// - `\s+(?!\S)`: the whole run at the end of the text; otherwise the run less its last
    ///   character, which is whitespace, so the look-ahead holds (needs two characters).
    /// - `\s+` / `\s`: a single whitespace character before a non-space.
    fn spaces(&self, text: &[u8], at: usize, pattern: Pattern) -> usize {
        let mut i = at;
        let mut last_start = at;
        let mut after_newline = None;
        while i < text.len() {
            let (c, len) = self.classes.at(text, i);
            if !c.is_space() {
                break;
            }
            if c == Class::Newline {
                after_newline = Some(i + len);
            }
            last_start = i;
            i += len;
        }
        let run_end = i;
        if pattern == Pattern::Cl100k && run_end == text.len() {
            return run_end;
        }
        if let Some(end) = after_newline {
            return end;
        }
        if run_end == text.len() {
            return run_end;
        }
        if last_start > at {
            return last_start;
        }
        run_end
    }

    /// The end of the run of characters in `class` from `from`.
    #[inline]
    fn run(&self, text: &[u8], from: usize, class: fn(Class) -> bool) -> usize {
        let mut i = from;
        while i < text.len() {
            let (c, len) = self.classes.at(text, i);
            if !class(c) {
                break;
            }
            i += len;
        }
        i
    }
}

/// `[\r\n]*` (cl100k) or `[\r\n/]*` (o200k) from `from`.
#[inline]
fn newlines(text: &[u8], from: usize, slash: bool) -> usize {
    let mut i = from;
    while let Some(&b) = text.get(i) {
        if b == b'\r' || b == b'\n' || (slash && b == b'/') {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// The length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `at`, or 0. Case-insensitive as the
/// `regex` crate is: Unicode simple case folding adds `ſ` (U+017F) to `s`, and nothing to
/// the other letters (checked in the tests).
#[inline]
pub(crate) fn contraction(text: &[u8], at: usize) -> usize {
    if text.get(at) != Some(&b'\'') {
        return 0;
    }
    let second = |b: u8| text.get(at + 2).is_some_and(|&c| c | 0x20 == b);
    match text.get(at + 1).map(|&b| b | 0x20) {
        Some(b's' | b't' | b'm' | b'd') => 2,
        Some(b'r') if second(b'e') => 3,
        Some(b'v') if second(b'e') => 3,
        Some(b'l') if second(b'l') => 3,
        // `ſ` is C5 BF; `0xc5 | 0x20` is 0xe5, which no ASCII letter gives.
        Some(0xe5) if text[at + 1] == 0xc5 && text.get(at + 2) == Some(&0xbf) => 3,
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
