//! SSE framing on a copy of the bytes: `eventsource-stream` parses what the client receives
//! untouched.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use eventsource_stream::{Event, EventStream, Eventsource};
use futures_util::{FutureExt, Stream, StreamExt};

/// The copies fed so far, not yet read by the parser.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    closed: bool,
}

/// A stream over the queue that never waits: `Pending` means "nothing more fed yet", and the
/// tap only ever polls it with `now_or_never`.
struct Fed(Arc<Mutex<Queue>>);

impl Stream for Fed {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut queue = match self.0.lock() {
            Ok(queue) => queue,
            Err(poisoned) => poisoned.into_inner(),
        };
        match queue.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(chunk))),
            None if queue.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

/// Parses SSE events out of byte chunks fed one at a time, however they were split.
pub struct SseTap {
    queue: Arc<Mutex<Queue>>,
    events: EventStream<Fed>,
}

impl Default for SseTap {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SseTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseTap").finish_non_exhaustive()
    }
}

impl SseTap {
    /// A tap with nothing fed.
    pub fn new() -> Self {
        let queue = Arc::new(Mutex::new(Queue::default()));
        Self {
            events: Fed(queue.clone()).eventsource(),
            queue,
        }
    }

    /// Feeds a copy of `chunk` (cheap: `Bytes` is shared) and calls `on_event` for every
    /// event it completes.
    pub fn feed(&mut self, chunk: &Bytes, on_event: &mut dyn FnMut(&Event)) {
        self.with_queue(|q| q.chunks.push_back(chunk.clone()));
        self.drain(on_event);
    }

    /// The stream ended: completes a last event that had no blank line after it.
    pub fn finish(&mut self, on_event: &mut dyn FnMut(&Event)) {
        self.with_queue(|q| q.closed = true);
        self.drain(on_event);
    }

    fn with_queue(&self, f: impl FnOnce(&mut Queue)) {
        let mut queue = match self.queue.lock() {
            Ok(queue) => queue,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut queue);
    }

    fn drain(&mut self, on_event: &mut dyn FnMut(&Event)) {
        // The inner stream never waits, so `now_or_never` only returns `None` when every
        // byte fed so far has been parsed.
        while let Some(Some(item)) = self.events.next().now_or_never() {
            match item {
                Ok(event) => on_event(&event),
                // Invalid UTF-8 in one event: skip it (usage is only read, never forwarded).
                Err(_) => continue,
            }
        }
    }
}

/// Cuts a byte stream into whole SSE events (each with its terminating blank line), holding
/// back an incomplete tail. Only the OpenAI route uses it, to drop the usage chunk the
/// gateway asked for; the bytes of every event it passes are the upstream's.
#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: Vec<u8>,
}

impl EventSplitter {
    /// Appends `chunk` and returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.buf) {
            let rest = self.buf.split_off(end);
            out.push(Bytes::from(std::mem::replace(&mut self.buf, rest)));
        }
        out
    }

    /// What remains when the stream ends (an event with no blank line after it).
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.buf)))
    }
}

/// The end (exclusive) of the first complete event: two line ends in a row, where a line end
/// is `\r\n`, `\n` or `\r`.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut previous_was_line_end = false;
    let mut line_start = true;
    while i < buf.len() {
        let len = match buf[i] {
            b'\r' if buf.get(i + 1) == Some(&b'\n') => 2,
            // A lone `\r` at the very end may be the first half of `\r\n`: wait for more.
            b'\r' if i + 1 == buf.len() => return None,
            b'\r' | b'\n' => 1,
            _ => 0,
        };
        if len == 0 {
            previous_was_line_end = false;
            line_start = false;
            i += 1;
            continue;
        }
        i += len;
        if previous_was_line_end && line_start {
            return Some(i);
        }
        previous_was_line_end = true;
        line_start = true;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_of(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut tap = SseTap::new();
        let mut seen = Vec::new();
        let mut push = |e: &Event| seen.push((e.event.clone(), e.data.clone()));
        for chunk in chunks {
            tap.feed(&Bytes::copy_from_slice(chunk), &mut push);
        }
        tap.finish(&mut push);
        seen
    }

    #[test]
    fn events_split_at_every_byte_parse_the_same() {
        let text: &[u8] =
            b"event: ping\ndata: {\"type\":\"ping\"}\n\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n";
        let whole = events_of(&[text]);
        assert_eq!(
            whole,
            vec![
                ("ping".into(), "{\"type\":\"ping\"}".into()),
                ("x".into(), "a\nb".into())
            ]
        );
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(events_of(&bytes), whole);
        for cut in 0..text.len() {
            assert_eq!(
                events_of(&[&text[..cut], &text[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn splitter_returns_whole_events_with_their_bytes() {
        let text: &[u8] = b"data: 1\n\ndata: 2\r\n\r\ndata: 3\r\rdata: tail";
        for cut in 0..text.len() {
            let mut s = EventSplitter::default();
            let mut got = s.push(&text[..cut]);
            got.extend(s.push(&text[cut..]));
            got.extend(s.finish());
            let joined: Vec<u8> = got.iter().flat_map(|b| b.to_vec()).collect();
            assert_eq!(joined, text, "cut at {cut}");
            assert_eq!(
                got,
                vec![
                    Bytes::from_static(b"data: 1\n\n"),
                    Bytes::from_static(b"data: 2\r\n\r\n"),
                    Bytes::from_static(b"data: 3\r\r"),
                    Bytes::from_static(b"data: tail"),
                ],
                "cut at {cut}"
            );
        }
    }
}
