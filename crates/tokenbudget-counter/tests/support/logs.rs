//! Captures `tracing` events emitted on the current thread.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One captured event.
#[derive(Debug, Clone)]
pub struct Captured {
    pub target: String,
    pub level: Level,
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

/// The events captured so far.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<Captured>>>);

impl Logs {
    pub fn all(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }

    /// This crate's events at `level` (dependencies' own events are ignored).
    pub fn at(&self, level: Level) -> Vec<Captured> {
        self.all()
            .into_iter()
            .filter(|e| e.level == level && e.target.starts_with("tokenbudget_counter"))
            .collect()
    }

    /// The `cause` field of each warning, in order.
    pub fn warned_causes(&self) -> Vec<String> {
        self.at(Level::WARN)
            .into_iter()
            .map(|e| e.fields.get("cause").cloned().unwrap_or_default())
            .collect()
    }
}

/// Starts capturing on this thread until the guard is dropped. Use it from
/// `#[tokio::test]` (a current-thread runtime), so spawned tasks log here too.
pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::registry().with(Capture(logs.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    (logs, guard)
}

struct Capture(Logs);

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        self.0 .0.lock().unwrap().push(Captured {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            message: visitor.message,
            fields: visitor.fields,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let value = format!("{value:?}");
        if field.name() == "message" {
            self.message = value;
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}
