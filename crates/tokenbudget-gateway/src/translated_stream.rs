//! Relaying a translated stream: `message_start` goes to the client at once, a `ping` after
//! every `keepalive` of silence (a local model loading can take a minute before its first
//! byte), each upstream chunk is translated and sent on as it comes, and every path ends in
//! exactly one `message_stop` (an `error` event first when it did not end well) and one
//! settlement.
//!
//! The translation is [`StreamTranslator`], a pure state machine; this task only waits,
//! moves bytes and picks the [`FinishCause`].

use std::sync::atomic::Ordering;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use tokenbudget_translate::openai::ChatResponse;
use tokenbudget_translate::{
    response_as_chunk, FinishCause, StreamStart, StreamTranslator, Upstream,
};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

use crate::finalize::{Ending, Finalizer};
use crate::gateway::Gateway;
use crate::routes::translated::{upstream_error, Counted, ROUTE};
use crate::tap::SseTap;

type Chunk = Result<Bytes, std::io::Error>;

/// The client's body: translated events as the task sends them.
pub(crate) fn relay(
    gateway: &Gateway,
    upstream: reqwest::RequestBuilder,
    fin: Finalizer,
    start: StreamStart,
    counted: Counted,
) -> Body {
    // A few events of slack; past that the task waits for the client (backpressure up to
    // the upstream), so nothing piles up in memory.
    let (tx, rx) = mpsc::channel::<Chunk>(16);
    tokio::spawn(run(gateway.clone(), upstream, fin, start, counted, tx));
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

/// Counts the stream in the open-streams gauge while it lives.
struct Open(Gateway);

impl Open {
    fn new(gateway: &Gateway) -> Self {
        let n = gateway.inner.open_streams.fetch_add(1, Ordering::SeqCst) + 1;
        crate::metrics::open_streams(n);
        Open(gateway.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let n = self.0.inner.open_streams.fetch_sub(1, Ordering::SeqCst) - 1;
        crate::metrics::open_streams(n);
    }
}

/// The stream's state: the translator, the client's channel, the finalizer.
struct Relay {
    t: StreamTranslator,
    out: Vec<u8>,
    tx: mpsc::Sender<Chunk>,
    fin: Finalizer,
}

/// Why the relay stopped early: the client is gone.
struct Gone;

impl Relay {
    /// Sends what the translator wrote.
    async fn flush(&mut self) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        let bytes = Bytes::from(std::mem::take(&mut self.out));
        self.tx.send(Ok(bytes)).await.map_err(|_| Gone)
    }

    async fn ping(&mut self) -> Result<(), Gone> {
        self.t.keepalive(&mut self.out);
        self.flush().await
    }

    /// Finishes the client's stream with `cause` and settles: `accepted` false rolls the
    /// reservation back (the upstream refused or was never reached).
    async fn end(mut self, cause: FinishCause, accepted: bool, reason: &'static str) {
        let well = self.t.finish(cause, &mut self.out);
        // The client may be gone by now; the settlement does not depend on it.
        let _ = self.flush().await;
        self.settle(well, accepted, reason);
    }

    /// Settles with the usage so far, sending nothing more (the client is gone).
    fn abandon(self) {
        self.settle(false, true, "client disconnected");
    }

    fn settle(mut self, well: bool, accepted: bool, reason: &'static str) {
        self.fin.reader.translated(&self.t.usage(), well);
        self.fin.finish(match (accepted, well) {
            (false, _) => Ending::NotAccepted,
            (true, true) => Ending::Completed,
            (true, false) => Ending::Cut(reason),
        });
    }
}

async fn run(
    gateway: Gateway,
    upstream: reqwest::RequestBuilder,
    fin: Finalizer,
    mut start: StreamStart,
    counted: Counted,
    tx: mpsc::Sender<Chunk>,
) {
    let _open = Open::new(&gateway);
    let settings = &gateway.inner.settings;
    let keepalive = settings.keepalive;
    let began = std::time::Instant::now();
    let deadline = Instant::now() + settings.timeouts.total;
    let first_byte = (Instant::now() + settings.timeouts.first_byte).min(deadline);
    let cut = gateway.inner.cut_streams.clone();

    // The request goes out first; `message_start` carries the prompt's count, which is
    // finished on its own thread meanwhile (the response headers may even come first).
    let send = upstream.send();
    tokio::pin!(send);
    let count = counted.get();
    tokio::pin!(count);
    let mut early = None;
    start.input_tokens = loop {
        tokio::select! {
            n = &mut count => break n,
            response = &mut send, if early.is_none() => early = Some(response),
        }
    };
    let mut r = Relay {
        t: StreamTranslator::new(start),
        out: Vec::new(),
        tx,
        fin,
    };
    r.t.start(&mut r.out);
    if r.flush().await.is_err() {
        return r.abandon();
    }

    // Waiting for the response headers.
    let response = loop {
        if let Some(response) = early.take() {
            break response;
        }
        let tx = r.tx.clone();
        tokio::select! {
            response = &mut send => break response,
            () = sleep(keepalive) => {
                if r.ping().await.is_err() {
                    return r.abandon();
                }
            }
            () = sleep_until(first_byte) => {
                return r.end(FinishCause::Timeout, false, "first byte timeout").await;
            }
            () = cut.cancelled() => {
                return r.end(FinishCause::Cut, true, "gateway shutting down").await;
            }
            () = tx.closed() => return r.abandon(),
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            let message = format!("upstream unreachable: {}", e.without_url());
            return r
                .end(FinishCause::UpstreamError(message), false, "unreachable")
                .await;
        }
    };
    crate::metrics::ttfb(ROUTE, began.elapsed().as_secs_f64());
    let status = response.status();
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !status.is_success() || !is_sse {
        let limit = deadline.saturating_duration_since(Instant::now());
        let body = match tokio::time::timeout(limit, response.bytes()).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => return r.end(FinishCause::Cut, status.is_success(), "cut").await,
            Err(_) => {
                return r
                    .end(FinishCause::Timeout, status.is_success(), "timeout")
                    .await
            }
        };
        if !status.is_success() {
            let (_, message) = upstream_error("upstream", status.as_u16(), &body);
            return r
                .end(FinishCause::UpstreamError(message), false, "upstream error")
                .await;
        }
        // A JSON answer to a stream request: one chunk of it all.
        return match serde_json::from_slice::<ChatResponse>(&body) {
            Ok(parsed) => {
                r.t.push(&response_as_chunk(&parsed), &mut r.out);
                r.end(FinishCause::Done, true, "untranslatable answer")
                    .await
            }
            Err(e) => {
                let message = format!("the upstream answered neither SSE nor JSON: {e}");
                r.end(
                    FinishCause::UpstreamError(message),
                    true,
                    "untranslatable answer",
                )
                .await
            }
        };
    }

    let mut body = response.bytes_stream();
    let mut tap = SseTap::new();
    let mut last_byte = Instant::now();
    loop {
        let idle = (last_byte + settings.timeouts.idle).min(deadline);
        let tx = r.tx.clone();
        let next = tokio::select! {
            next = body.next() => next,
            () = sleep(keepalive) => {
                if r.ping().await.is_err() {
                    return r.abandon();
                }
                continue;
            }
            () = sleep_until(idle) => {
                return r.end(FinishCause::Timeout, true, "timeout").await;
            }
            () = cut.cancelled() => {
                return r.end(FinishCause::Cut, true, "gateway shutting down").await;
            }
            () = tx.closed() => return r.abandon(),
        };
        let mut ended: Option<FinishCause> = None;
        let Relay { t, out, .. } = &mut r;
        let mut translate = |data: &str| {
            if ended.is_some() {
                return;
            }
            match t.push_data(data, out) {
                Upstream::Continue => {}
                Upstream::Done => ended = Some(FinishCause::Done),
                Upstream::Error(message) => ended = Some(FinishCause::UpstreamError(message)),
            }
        };
        match next {
            Some(Ok(chunk)) => {
                last_byte = Instant::now();
                tap.feed(&chunk, &mut |e| translate(&e.data));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "translated upstream stream cut");
                ended.get_or_insert(FinishCause::Cut);
            }
            None => {
                tap.finish(&mut |e| translate(&e.data));
                // A body that ends after its finish reason but without `[DONE]` (some
                // servers) ended well; one that ends before it was cut.
                let cause = if t.saw_finish_reason() {
                    FinishCause::Done
                } else {
                    FinishCause::Cut
                };
                ended.get_or_insert(cause);
            }
        }
        match ended {
            Some(cause) => {
                let reason = match cause {
                    FinishCause::Cut => "upstream cut",
                    _ => "upstream error",
                };
                return r.end(cause, true, reason).await;
            }
            None => {
                if r.flush().await.is_err() {
                    return r.abandon();
                }
            }
        }
    }
}
