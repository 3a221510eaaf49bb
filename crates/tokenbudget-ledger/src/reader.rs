//! Lines of a file of any size through one reusable buffer (ripgrep's way): never the whole
//! file in memory, only the longest line up to [`MAX_LINE`].

use std::io::{self, Read};

/// The longest line kept whole. A longer line is skipped to its end and reported as
/// [`Line::Oversized`] (no Claude Code line comes near it: its biggest, pasted images, are a
/// few MB).
pub const MAX_LINE: usize = 64 << 20;

/// The buffer's starting size.
const INITIAL: usize = 256 << 10;

/// One complete line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line, without `\n`, a trailing `\r` or (first line only) a UTF-8 BOM.
    Text {
        /// Byte offset of the line's first byte in the file.
        offset: u64,
        /// The line's bytes.
        bytes: &'a [u8],
        /// It ended in `\r\n`.
        crlf: bool,
        /// It started with a UTF-8 byte order mark (only at offset 0).
        bom: bool,
    },
    /// A line longer than [`MAX_LINE`], skipped.
    Oversized {
        /// Byte offset of the line's first byte.
        offset: u64,
        /// Its length, without the `\n`.
        len: u64,
    },
}

/// Reads lines from `inner`, which is positioned at file offset `start`.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// `buf[head..tail]` holds unread bytes.
    head: usize,
    tail: usize,
    /// Where in `buf[head..tail]` the newline search resumes.
    scanned: usize,
    /// File offset of `buf[head]`.
    pos: u64,
    eof: bool,
    /// In a line longer than MAX_LINE: its offset and length so far.
    skipping: Option<(u64, u64)>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl<R: Read> LineReader<R> {
    /// A reader of `inner`, whose next byte is at file offset `start`.
    pub fn new(inner: R, start: u64) -> Self {
        Self::with_buffer(inner, start, Vec::new())
    }

    /// As [`LineReader::new`], reusing `buf`'s allocation (take it back with
    /// [`LineReader::into_buffer`]).
    pub fn with_buffer(inner: R, start: u64, mut buf: Vec<u8>) -> Self {
        if buf.len() < INITIAL {
            buf.resize(INITIAL, 0);
        }
        Self {
            inner,
            buf,
            head: 0,
            tail: 0,
            scanned: 0,
            pos: start,
            eof: false,
            skipping: None,
        }
    }

    /// The buffer, for the next file.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Just past the last complete line returned: where a later read resumes.
    pub fn consumed(&self) -> u64 {
        // Inside an over-long line: resume at its start, so a torn one is read again later.
        self.skipping.map_or(self.pos, |(offset, _)| offset)
    }

    /// Bytes after the last complete line once the end is reached (a torn final line).
    pub fn torn(&self) -> u64 {
        let pending = (self.tail - self.head) as u64;
        pending + self.skipping.map_or(0, |(_, len)| len)
    }

    /// The next complete line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            let window = &self.buf[self.scanned..self.tail];
            if let Some(i) = memchr::memchr(b'\n', window) {
                let nl = self.scanned + i;
                let offset = self.pos;
                let len = nl - self.head;
                let start = self.head;
                self.head = nl + 1;
                self.scanned = self.head;
                self.pos += len as u64 + 1;
                if let Some((skip_offset, skipped)) = self.skipping.take() {
                    return Ok(Some(Line::Oversized {
                        offset: skip_offset,
                        len: skipped + len as u64,
                    }));
                }
                let mut bytes = &self.buf[start..nl];
                let bom = offset == 0 && bytes.starts_with(BOM);
                if bom {
                    bytes = &bytes[BOM.len()..];
                }
                let crlf = bytes.last() == Some(&b'\r');
                if crlf {
                    bytes = &bytes[..bytes.len() - 1];
                }
                return Ok(Some(Line::Text {
                    offset,
                    bytes,
                    crlf,
                    bom,
                }));
            }
            self.scanned = self.tail;
            if self.eof {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Makes room and reads more; sets `eof` at the end.
    fn fill(&mut self) -> io::Result<()> {
        let pending = self.tail - self.head;
        if pending >= MAX_LINE {
            // Too long to keep: remember it and drop what we have of it.
            let (offset, len) = self.skipping.unwrap_or((self.pos, 0));
            self.skipping = Some((offset, len + pending as u64));
            self.pos += pending as u64;
            self.head = 0;
            self.tail = 0;
            self.scanned = 0;
        } else if self.head > 0 {
            self.buf.copy_within(self.head..self.tail, 0);
            self.tail = pending;
            self.scanned -= self.head;
            self.head = 0;
        }
        if self.tail == self.buf.len() {
            let grown = (self.buf.len() * 2).min(MAX_LINE + INITIAL);
            self.buf.resize(grown, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.tail..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.tail += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Lines = Vec<(u64, Vec<u8>, bool, bool)>;

    fn lines(input: &[u8], start: u64) -> (Lines, u64, u64) {
        let mut r = LineReader::with_buffer(input, start, vec![0; 3]);
        let mut out = Vec::new();
        while let Some(line) = r.next_line().unwrap() {
            match line {
                Line::Text {
                    offset,
                    bytes,
                    crlf,
                    bom,
                } => out.push((offset, bytes.to_vec(), crlf, bom)),
                Line::Oversized { .. } => unreachable!(),
            }
        }
        (out, r.consumed(), r.torn())
    }

    #[test]
    fn lines_offsets_crlf_bom_and_a_torn_tail() {
        let (got, consumed, torn) = lines(b"\xEF\xBB\xBFab\r\n\ncd\nef", 0);
        assert_eq!(
            got,
            vec![
                (0, b"ab".to_vec(), true, true),
                (7, b"".to_vec(), false, false),
                (8, b"cd".to_vec(), false, false),
            ]
        );
        assert_eq!((consumed, torn), (11, 2));
        // A BOM-looking start later in a file is data.
        let (got, consumed, torn) = lines(b"\xEF\xBB\xBFx\n", 5);
        assert_eq!(got, vec![(5, b"\xEF\xBB\xBFx".to_vec(), false, false)]);
        assert_eq!((consumed, torn), (10, 0));
    }

    #[test]
    fn long_lines_grow_the_buffer_and_the_buffer_is_reused() {
        let long = vec![b'x'; INITIAL * 3];
        let mut input = long.clone();
        input.extend_from_slice(b"\nyz\n");
        let mut r = LineReader::new(&input[..], 0);
        assert!(
            matches!(r.next_line().unwrap(), Some(Line::Text { bytes, .. }) if bytes == &long[..])
        );
        assert!(
            matches!(r.next_line().unwrap(), Some(Line::Text { offset, bytes, .. }) if bytes == b"yz" && offset == long.len() as u64 + 1)
        );
        assert!(r.next_line().unwrap().is_none());
        let buf = r.into_buffer();
        assert!(buf.len() >= long.len());
    }
}
