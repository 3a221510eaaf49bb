//! Relaying a streamed response: the upstream's chunks go to the client as they come, a copy
//! goes to the SSE tap that reads usage, and the finalizer settles when the stream ends, is
//! cut, times out or is dropped (client gone).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::finalize::{Ending, Finalizer};
use crate::gateway::Gateway;
use crate::reader::Api;
use crate::tap::{EventSplitter, SseTap};

struct Relay {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    fin: Finalizer,
    tap: SseTap,
    api: Api,
    /// Set on OpenAI streams where the gateway asked for the usage chunk: it is cut out.
    hide_usage: Option<EventSplitter>,
    queued: VecDeque<Bytes>,
    idle: Duration,
    deadline: Instant,
    done: bool,
    gateway: Gateway,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let n = self
            .gateway
            .inner
            .open_streams
            .fetch_sub(1, Ordering::SeqCst)
            - 1;
        crate::metrics::open_streams(n);
        // `fin` drops after this and settles if nothing else did (client disconnected):
        // dropping `upstream` with it closes the upstream connection, which stops spending.
    }
}

/// The body that relays `upstream` to the client.
pub(crate) fn relay(
    gateway: &Gateway,
    upstream: reqwest::Response,
    fin: Finalizer,
    api: Api,
    hide_usage: bool,
    deadline: Instant,
) -> Body {
    let n = gateway.inner.open_streams.fetch_add(1, Ordering::SeqCst) + 1;
    crate::metrics::open_streams(n);
    let relay = Relay {
        upstream: upstream.bytes_stream().boxed(),
        fin,
        tap: SseTap::new(),
        api,
        hide_usage: hide_usage.then(EventSplitter::default),
        queued: VecDeque::new(),
        idle: gateway.inner.settings.timeouts.idle,
        deadline,
        done: false,
        gateway: gateway.clone(),
    };
    Body::from_stream(futures_util::stream::unfold(relay, step))
}

async fn step(mut r: Relay) -> Option<(Result<Bytes, std::io::Error>, Relay)> {
    loop {
        if let Some(chunk) = r.queued.pop_front() {
            return Some((Ok(chunk), r));
        }
        if r.done {
            return None;
        }
        let wait = r
            .idle
            .min(r.deadline.saturating_duration_since(Instant::now()));
        let cut = r.gateway.inner.cut_streams.clone();
        let next = tokio::select! {
            () = cut.cancelled() => {
                r.fin.finish(Ending::Cut("gateway shutting down"));
                r.done = true;
                return Some((Err(std::io::Error::other("gateway shutting down")), r));
            }
            next = tokio::time::timeout(wait, r.upstream.next()) => next,
        };
        match next {
            Ok(Some(Ok(chunk))) => r.observe(chunk),
            Ok(None) => {
                r.end();
                r.fin.finish(Ending::Completed);
                r.done = true;
            }
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "upstream stream cut");
                r.fin.finish(Ending::Cut("upstream cut"));
                r.done = true;
                // An error ends the client's response abruptly too: it must not look complete.
                return Some((Err(std::io::Error::other("upstream cut")), r));
            }
            Err(_) => {
                r.fin.finish(Ending::Cut("timeout"));
                r.done = true;
                return Some((Err(std::io::Error::other("upstream timed out")), r));
            }
        }
    }
}

impl Relay {
    fn observe(&mut self, chunk: Bytes) {
        let Relay {
            tap,
            fin,
            api,
            hide_usage,
            queued,
            ..
        } = self;
        let reader = &mut fin.reader;
        match (api, hide_usage) {
            (Api::Anthropic, _) => {
                tap.feed(&chunk, &mut |e| reader.anthropic_event(&e.data));
                queued.push_back(chunk);
            }
            (Api::OpenAi, None) => {
                tap.feed(&chunk, &mut |e| {
                    reader.openai_event(&e.data);
                });
                queued.push_back(chunk);
            }
            (Api::OpenAi, Some(splitter)) => {
                for event in splitter.push(&chunk) {
                    let mut usage_only = false;
                    tap.feed(&event, &mut |e| usage_only |= reader.openai_event(&e.data));
                    if !usage_only {
                        queued.push_back(event);
                    }
                }
            }
        }
    }

    /// The upstream ended: parse and pass what is left.
    fn end(&mut self) {
        let Relay {
            tap,
            fin,
            api,
            hide_usage,
            queued,
            ..
        } = self;
        let reader = &mut fin.reader;
        if let Some(rest) = hide_usage.as_mut().and_then(EventSplitter::finish) {
            let mut usage_only = false;
            tap.feed(&rest, &mut |e| usage_only |= reader.openai_event(&e.data));
            if !usage_only {
                queued.push_back(rest);
            }
        }
        let api = *api;
        tap.finish(&mut |e| match api {
            Api::Anthropic => reader.anthropic_event(&e.data),
            Api::OpenAi => {
                reader.openai_event(&e.data);
            }
        });
    }
}
