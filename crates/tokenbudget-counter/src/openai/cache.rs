//! A per-call memo of multi-token pieces: words recur, and merging a long word is the
//! slowest step (hundreds of instructions per byte in Hindi or Thai).

/// The longest piece remembered.
pub(crate) const MAX_PIECE: usize = 48;

/// Calls on less text than this get no memo: allocating it would cost more than it saves.
pub(crate) const MIN_TEXT: usize = 4 * 1024;

/// One remembered piece: its bytes, their length and its token count.
#[derive(Clone, Copy)]
struct Entry {
    bytes: [u8; MAX_PIECE],
    len: u8,
    count: u8,
}

const EMPTY: Entry = Entry {
    bytes: [0; MAX_PIECE],
    len: 0,
    count: 0,
};

/// A direct-mapped table from piece bytes to token count. A collision replaces the older
/// entry; an entry is only used when its bytes equal the piece, so the memo never changes a
/// count, it only saves recomputing one.
pub(crate) struct PieceMemo {
    entries: Vec<Entry>,
}

impl PieceMemo {
    /// A memo sized for `text_len` bytes of text: one entry per 64 bytes, between 256 and
    /// 4,096 entries (12 KB to 200 KB).
    pub(crate) fn for_text(text_len: usize) -> Self {
        let entries = (text_len / 64).clamp(256, 4096).next_power_of_two();
        PieceMemo {
            entries: vec![EMPTY; entries],
        }
    }

    /// The count of `piece` (at most [`MAX_PIECE`] bytes, whose hash is `hash`), computed
    /// by `count` unless remembered.
    #[inline]
    pub(crate) fn get_or(
        &mut self,
        piece: &[u8],
        hash: u64,
        count: impl FnOnce() -> usize,
    ) -> usize {
        let index = (hash >> 32) as usize & (self.entries.len() - 1);
        let entry = &mut self.entries[index];
        if usize::from(entry.len) == piece.len() && entry.bytes[..piece.len()] == *piece {
            return usize::from(entry.count);
        }
        let n = count();
        if let (Some(bytes), Ok(count)) = (entry.bytes.get_mut(..piece.len()), u8::try_from(n)) {
            bytes.copy_from_slice(piece);
            entry.len = piece.len() as u8;
            entry.count = count;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_exact_bytes_only() {
        let mut memo = PieceMemo::for_text(0);
        assert_eq!(memo.get_or(b"abc", 7, || 2), 2);
        assert_eq!(memo.get_or(b"abc", 7, || unreachable!()), 2);
        // Same slot, other bytes: computed, and replaces the entry.
        assert_eq!(memo.get_or(b"abd", 7, || 3), 3);
        assert_eq!(memo.get_or(b"abc", 7, || 2), 2);
        assert_eq!(memo.get_or(b"ab", 7, || 1), 1);
        assert_eq!(memo.entries.len(), 256);
    }
}
