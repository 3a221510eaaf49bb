//! Whether streamed JSON text has closed its outermost value, without keeping the text.

/// Tracks nesting depth and string state over pieces of JSON text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JsonProgress {
    depth: u32,
    in_string: bool,
    escape: bool,
    seen: bool,
}

impl JsonProgress {
    /// Feeds the next piece.
    pub(crate) fn feed(&mut self, piece: &str) {
        for byte in piece.bytes() {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if byte == b'\\' {
                    self.escape = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                b'"' => self.in_string = true,
                _ => {}
            }
            if !byte.is_ascii_whitespace() {
                self.seen = true;
            }
        }
    }

    /// True when nothing but whitespace was fed (a call without arguments), or when every
    /// opened object, array and string was closed.
    pub(crate) fn is_complete(&self) -> bool {
        !self.in_string && self.depth == 0
    }

    /// Whether any non-whitespace text was fed.
    pub(crate) fn has_content(&self) -> bool {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::JsonProgress;

    fn complete(pieces: &[&str]) -> bool {
        let mut p = JsonProgress::default();
        pieces.iter().for_each(|s| p.feed(s));
        p.is_complete()
    }

    #[test]
    fn follows_nesting_strings_and_escapes_across_pieces() {
        assert!(complete(&[]));
        assert!(complete(&["{\"a\": ", "[1, {\"b\": \"}\"}]", "}"]));
        assert!(!complete(&["{\"a\": \"x\\", "\"", "}"]));
        assert!(complete(&["{\"a\": \"x\\", "\"\"", "}"]));
        assert!(!complete(&["{\"command\": \"ls"]));
        assert!(!complete(&["{\"a\": [1, 2"]));
    }
}
