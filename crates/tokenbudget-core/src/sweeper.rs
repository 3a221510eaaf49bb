//! The background sweeper: a tokio task that releases expired reservations.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::tracker::Tracker;

/// Controls a running sweeper. Dropping it stops the sweeper too.
#[derive(Debug)]
pub struct SweeperHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    completed: watch::Receiver<u64>,
}

impl SweeperHandle {
    pub(crate) fn spawn(tracker: Tracker, interval: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let (count, completed) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = ticks.tick() => {}
                }
                match tracker.sweep_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(released = n, "sweeper released expired reservations"),
                    Err(err) => tracing::warn!(error = %err, "sweeper failed; retrying next tick"),
                }
                count.send_modify(|n| *n += 1);
            }
        });
        Self {
            stop: Some(stop),
            task: Some(task),
            completed,
        }
    }

    /// How many sweeps have finished (whether or not they released anything or failed),
    /// updated after each one: a way to wait for a sweep that started after some moment
    /// (wait for the count to pass the value seen then by two).
    pub fn completed(&self) -> watch::Receiver<u64> {
        self.completed.clone()
    }

    /// Stops the sweeper and waits for a sweep in progress to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
