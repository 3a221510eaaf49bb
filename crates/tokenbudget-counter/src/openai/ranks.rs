//! Byte-pair merges for one piece, counted.
//!
//! tiktoken looks a piece up in its vocabulary (one token if found) and otherwise merges byte
//! pairs by rank, lowest first, leftmost among equals. Pieces up to [`MERGE_MAX`] bytes are
//! merged here the same way, over a hash table of the vocabulary and fixed-size arrays (no
//! allocation). Longer ones go to `bpe`'s backtracking encoder, which gives the same tokens
//! and costs time linear in the piece, where the merge loop's scans grow with the square of
//! it (from about 16 bytes, a Hindi or Thai word, the encoder is the faster of the two).
//! Token ids are tiktoken's ranks (checked in the tests against tiktoken-rs, token by
//! token), and the merge is checked against tiktoken-rs's own.

use bpe_openai::byte_pair_encoding::BytePairEncoding;

/// No token: a rank above every rank.
const NONE: u32 = u32::MAX;

/// Pieces up to this many bytes are merged here; longer ones are counted by `bpe`.
pub(crate) const MERGE_MAX: usize = 16;

/// One slot of the open-addressing table: the token's first eight bytes (zero-padded), its
/// length and its rank. `len == 0` marks an empty slot (no token is empty).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    head: u64,
    len: u32,
    rank: u32,
}

/// The vocabulary of one encoding: bytes → rank, plus `bpe` for long pieces.
pub(crate) struct Ranks {
    bpe: &'static BytePairEncoding,
    slots: Vec<Slot>,
    /// `64 - log2(slots.len())`: the hash's top bits index the table.
    shift: u32,
    /// The longest token, in bytes; longer pieces are never a single token.
    max_len: usize,
    /// The rank of every two-byte token, indexed by the two bytes (`u32::MAX`: none): the
    /// first round of every merge looks up nothing else.
    pairs: Vec<u32>,
}

impl Ranks {
    /// Indexes `bpe`'s vocabulary (a few milliseconds for 200,000 tokens).
    pub(crate) fn new(bpe: &'static BytePairEncoding) -> Self {
        let tokens = bpe.num_tokens();
        // At most half full, so a probe for a missing piece stops within a slot or two.
        let size = (tokens * 2).next_power_of_two().max(16);
        let mut ranks = Ranks {
            bpe,
            slots: vec![Slot::default(); size],
            shift: 64 - size.trailing_zeros(),
            max_len: 0,
            pairs: vec![NONE; 1 << 16],
        };
        for rank in 0..tokens {
            let rank = u32::try_from(rank).expect("fewer than 2^32 tokens");
            let bytes = bpe.token_bytes(rank);
            ranks.max_len = ranks.max_len.max(bytes.len());
            ranks.insert(bytes, rank);
            if let [a, b] = *bytes {
                ranks.pairs[usize::from(a) << 8 | usize::from(b)] = rank;
            }
        }
        ranks
    }

    fn insert(&mut self, bytes: &[u8], rank: u32) {
        let mask = self.slots.len() - 1;
        let mut i = self.index(bytes);
        while self.slots[i].len != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot {
            head: head(bytes),
            len: bytes.len() as u32,
            rank,
        };
    }

    #[inline]
    fn index(&self, bytes: &[u8]) -> usize {
        (hash(bytes) >> self.shift) as usize
    }

    /// The rank of the token whose bytes are `bytes`, if there is one.
    #[inline]
    pub(crate) fn rank(&self, bytes: &[u8]) -> Option<u32> {
        if bytes.is_empty() || bytes.len() > self.max_len {
            return None;
        }
        let mask = self.slots.len() - 1;
        let head = head(bytes);
        let mut i = self.index(bytes);
        loop {
            let slot = self.slots[i];
            if slot.len == 0 {
                return None;
            }
            if slot.head == head
                && slot.len as usize == bytes.len()
                && (bytes.len() <= 8 || self.bpe.token_bytes(slot.rank)[8..] == bytes[8..])
            {
                return Some(slot.rank);
            }
            i = (i + 1) & mask;
        }
    }

    /// The number of tokens tiktoken encodes `piece` into.
    #[cfg(test)]
    pub(crate) fn count(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 {
            // Every single byte is a token.
            piece.len()
        } else if self.rank(piece).is_some() {
            1
        } else {
            self.count_parts(piece)
        }
    }

    /// The number of tokens of a piece of two bytes or more that is not a token.
    #[inline]
    pub(crate) fn count_parts(&self, piece: &[u8]) -> usize {
        if piece.len() <= MERGE_MAX {
            self.merge_count(piece)
        } else {
            self.bpe.count(piece)
        }
    }

    /// The hash the table uses for `bytes`.
    #[inline]
    pub(crate) fn hash(&self, bytes: &[u8]) -> u64 {
        hash(bytes)
    }

    /// tiktoken's `_byte_pair_merge`, counting the parts left: each step merges the
    /// lowest-ranked adjacent pair, leftmost among equals, until no pair is a token.
    ///
    /// A part is named by the offset it starts at; `next` and `prev` link the parts, and
    /// `pair[i]` is the rank of part `i` followed by the next part (`NONE` when that is no
    /// token, when part `i` is the last, or when `i` no longer starts a part). Removing a part
    /// relinks instead of shifting arrays, so the scan for the minimum is over fixed slots.
    fn merge_count(&self, piece: &[u8]) -> usize {
        debug_assert!((2..=MERGE_MAX).contains(&piece.len()));
        let n = piece.len();
        let mut pair = [NONE; MERGE_MAX];
        let mut next = [0u8; MERGE_MAX];
        let mut prev = [0u8; MERGE_MAX];
        for (rank, two) in pair.iter_mut().zip(piece.windows(2)) {
            *rank = self.pairs[usize::from(two[0]) << 8 | usize::from(two[1])];
        }
        for i in 0..n {
            next[i] = (i + 1) as u8;
            prev[i] = i.saturating_sub(1) as u8;
        }
        let mut parts = n;
        loop {
            // All slots, not just the first `n - 1` (the rest are `NONE`): a fixed length
            // unrolls, and two passes (the minimum, then its first position) vectorize.
            let live = &pair[..MERGE_MAX - 1];
            let min = live.iter().copied().fold(NONE, u32::min);
            if min == NONE {
                return parts;
            }
            let at = live.iter().position(|&rank| rank == min).unwrap_or(0);
            // Merge part `at` with the next one, then rank the pairs the merged part is in.
            parts -= 1;
            let gone = usize::from(next[at]);
            let after = usize::from(next[gone]);
            pair[gone] = NONE;
            next[at] = after as u8;
            if after < n {
                prev[after] = at as u8;
                let end = usize::from(next[after]);
                pair[at] = self.rank(&piece[at..end]).unwrap_or(NONE);
            } else {
                pair[at] = NONE;
            }
            if at > 0 {
                let before = usize::from(prev[at]);
                pair[before] = self.rank(&piece[before..after]).unwrap_or(NONE);
            }
        }
    }
}

/// The first eight bytes, zero-padded, as a little-endian number. Shorter slices are read
/// as two overlapping loads (a `copy_from_slice` of a variable length is a `memcpy` call).
#[inline]
fn head(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    if let Some(first) = bytes.first_chunk::<8>() {
        u64::from_le_bytes(*first)
    } else if n >= 4 {
        let lo = u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        let hi = u64::from(u32::from_le_bytes([
            bytes[n - 4],
            bytes[n - 3],
            bytes[n - 2],
            bytes[n - 1],
        ]));
        lo | (hi << ((n - 4) * 8))
    } else if n > 0 {
        u64::from(bytes[0])
            | (u64::from(bytes[n / 2]) << (n / 2 * 8))
            | (u64::from(bytes[n - 1]) << ((n - 1) * 8))
    } else {
        0
    }
}

/// A multiplicative hash; the table uses its top bits. Speed matters more than strength:
/// the keys are the fixed vocabulary, and a lookup of anything else stops at an empty slot.
#[inline]
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (head(bytes) ^ (bytes.len() as u64).rotate_right(8)).wrapping_mul(K);
    if bytes.len() > 8 {
        for chunk in bytes[8..].chunks(8) {
            h = (h.rotate_left(23) ^ head(chunk)).wrapping_mul(K);
        }
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranks(cl100k: bool) -> Ranks {
        let tokenizer = if cl100k {
            bpe_openai::cl100k_base()
        } else {
            bpe_openai::o200k_base()
        };
        Ranks::new(&tokenizer.bpe)
    }

    #[test]
    fn every_token_is_found_under_its_own_rank_and_ranks_are_tiktokens() {
        for (cl100k, tiktoken) in [
            (true, tiktoken_rs::cl100k_base_singleton()),
            (false, tiktoken_rs::o200k_base_singleton()),
        ] {
            let table = ranks(cl100k);
            let bpe = table.bpe;
            for rank in 0..bpe.num_tokens() as u32 {
                let bytes = bpe.token_bytes(rank);
                assert_eq!(table.rank(bytes), Some(rank));
                assert_eq!(
                    tiktoken.decode_bytes(&[rank]).unwrap(),
                    bytes,
                    "rank {rank}"
                );
            }
            assert!(tiktoken
                .decode_bytes(&[bpe.num_tokens() as u32 - 1])
                .is_ok());
            assert_eq!(table.rank(b""), None);
            assert_eq!(table.rank(&[b'x'; 200]), None);
        }
    }

    #[test]
    fn head_reads_the_first_eight_bytes_zero_padded() {
        let bytes: Vec<u8> = (1..=12).collect();
        for n in 0..=12 {
            let mut want = [0u8; 8];
            want[..n.min(8)].copy_from_slice(&bytes[..n.min(8)]);
            assert_eq!(head(&bytes[..n]), u64::from_le_bytes(want), "{n}");
        }
    }

    /// tiktoken's vocabulary map, typed by inference from `byte_pair_split`'s signature.
    fn vocabulary<M: Default + Extend<(Vec<u8>, u32)>>(table: &Ranks) -> M {
        let mut map = M::default();
        map.extend(
            (0..table.bpe.num_tokens() as u32).map(|r| (table.bpe.token_bytes(r).to_vec(), r)),
        );
        map
    }

    #[test]
    fn pieces_count_what_tiktokens_merge_gives() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        for cl100k in [true, false] {
            let table = ranks(cl100k);
            let vocabulary = vocabulary(&table);
            let tiktoken = |piece: &[u8]| tiktoken_rs::byte_pair_split(piece, &vocabulary).len();
            // Bytes that make long merge chains, arbitrary bytes, and both sides of
            // `MERGE_MAX` (pieces past it go to `bpe`).
            let piece = prop_oneof![
                proptest::collection::vec(
                    proptest::sample::select(
                        &b"aeinorst ._-=0123\xe4\xb8\xad\xf0\x9f\x98\x80\xe0\xa4"[..]
                    ),
                    2..=3 * MERGE_MAX
                ),
                proptest::collection::vec(any::<u8>(), 2..=3 * MERGE_MAX),
            ];
            let mut runner = TestRunner::new(Config {
                cases: 3000,
                failure_persistence: None,
                ..Config::default()
            });
            runner
                .run(&piece, |piece| {
                    prop_assert_eq!(table.count(&piece), tiktoken(&piece), "{:?}", piece);
                    Ok(())
                })
                .unwrap();
            for piece in [
                &b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..],
                b"                                                ",
                b"abababababababababababababababababababababababab",
                b"supercalifragilisticexpialidociousness",
                b"ab",
                "\u{939}\u{93f}\u{928}\u{94d}\u{926}\u{940}".as_bytes(),
            ] {
                assert_eq!(table.count(piece), tiktoken(piece), "{piece:?}");
                if piece.len() <= MERGE_MAX && table.rank(piece).is_none() {
                    assert_eq!(table.merge_count(piece), table.bpe.count(piece));
                }
            }
        }
    }
}
