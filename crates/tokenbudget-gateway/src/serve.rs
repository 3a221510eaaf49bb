//! Serving with graceful shutdown: on the signal, stop accepting, let open responses finish
//! for a grace period, then drop what is left (each dropped stream settles as cut), and wait
//! for every settlement.

use std::future::Future;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

use crate::gateway::Gateway;

/// Serves `gateway` on `listener` until `shutdown` resolves; then gives open responses
/// `grace` to finish and settles everything before returning.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal.cancel();
    });
    let graceful = stop.clone();
    let replayer = tokio::spawn(replay_journal(gateway.clone(), stop.clone()));
    // The dashboard rides along on a loopback address; elsewhere it would need a token of
    // its own, so it is left to `tokenbudget dashboard --token`.
    let mut app = gateway.router();
    let mut dashboard = tokenbudget_dashboard::Dashboard::new(gateway.budgets().store().clone());
    if let Some(ledger) = gateway.inner.ledger.usage_store() {
        dashboard = dashboard.with_usage(ledger);
    }
    match listener
        .local_addr()
        .map(|addr| dashboard.check_listen(addr))
    {
        Ok(Ok(())) => app = app.merge(dashboard.router()),
        Ok(Err(e)) => tracing::warn!("no /dashboard here: {e}"),
        Err(e) => tracing::warn!("no /dashboard: {e}"),
    }
    // Each SSE event is a small write; with Nagle's algorithm on, one that follows another
    // unacknowledged one waits for the client's delayed ACK (40 ms on Linux).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { graceful.cancelled().await });
    let outcome = tokio::select! {
        result = server => result,
        () = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over: settling the responses still open as cut");
            gateway.inner.cut_streams.cancel();
            Ok(())
        }
    };
    gateway.inner.tasks.close();
    gateway.inner.tasks.wait().await;
    gateway.settled().await;
    let _ = replayer.await;
    // What the last settlements journaled gets one more try (bounded by the store timeout
    // per call); whatever stays is replayed at the next start.
    if gateway.journal_depth() > 0 {
        if let Err(e) = gateway.replay_journal().await {
            tracing::warn!(error = %e, depth = gateway.journal_depth(), "journal left for the next start");
        }
    }
    outcome
}

/// Replays the journal at start and then every `journal_retry` while it holds anything,
/// until `stop`.
async fn replay_journal(gateway: Gateway, stop: tokio_util::sync::CancellationToken) {
    if gateway.inner.journal.is_none() {
        return;
    }
    let every = gateway.inner.settings.journal_retry;
    loop {
        if gateway.journal_depth() > 0 {
            match gateway.replay_journal().await {
                Ok(n) if n > 0 => tracing::info!(replayed = n, "journal replayed into the store"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, depth = gateway.journal_depth(), "journal replay: the store is still unreachable")
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
