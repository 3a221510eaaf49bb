//! The counting engine: the hand-written split, then each piece's merges.

use std::sync::LazyLock;

use super::cache::{PieceMemo, MAX_PIECE, MIN_TEXT};
use super::classes::CharClasses;
use super::ranks::Ranks;
use super::split::{Pattern, Splitter};
use crate::Encoding;

/// One encoding's split pattern and vocabulary.
pub(crate) struct Engine {
    pattern: Pattern,
    ranks: Ranks,
}

/// Shared by both encodings.
static CLASSES: LazyLock<CharClasses> = LazyLock::new(CharClasses::new);

// The vocabularies are `bpe-openai`'s process-wide encoders, indexed once more for lookups.
static CL100K_BASE: LazyLock<Engine> = LazyLock::new(|| Engine {
    pattern: Pattern::Cl100k,
    ranks: Ranks::new(&bpe_openai::cl100k_base().bpe),
});
static O200K_BASE: LazyLock<Engine> = LazyLock::new(|| Engine {
    pattern: Pattern::O200k,
    ranks: Ranks::new(&bpe_openai::o200k_base().bpe),
});

impl Engine {
    /// The shared engine of `encoding`, built on first use.
    pub(crate) fn get(encoding: Encoding) -> &'static Engine {
        match encoding {
            Encoding::Cl100kBase => &CL100K_BASE,
            Encoding::O200kBase => &O200K_BASE,
        }
    }

    /// Builds what the first count would build.
    pub(crate) fn warm_up(&self) {
        LazyLock::force(&CLASSES);
    }

    /// The number of tokens tiktoken's `encode_ordinary` gives for `text`.
    pub(crate) fn count(&self, text: &str) -> usize {
        let splitter = Splitter::new(&CLASSES, self.pattern);
        let bytes = text.as_bytes();
        let mut memo = None;
        let mut at = 0;
        let mut tokens = 0;
        while at < bytes.len() {
            let end = splitter.piece_end(bytes, at);
            let piece = &bytes[at..end];
            at = end;
            tokens += if piece.len() <= 1 {
                // Every byte is a token.
                piece.len()
            } else if self.ranks.rank(piece).is_some() {
                1
            } else if piece.len() <= MAX_PIECE && bytes.len() >= MIN_TEXT {
                memo.get_or_insert_with(|| PieceMemo::for_text(bytes.len()))
                    .get_or(piece, self.ranks.hash(piece), || {
                        self.ranks.count_parts(piece)
                    })
            } else {
                self.ranks.count_parts(piece)
            };
        }
        tokens
    }
}
