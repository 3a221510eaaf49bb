//! The cross-process writer queue: processes sharing a database take turns at writing
//! instead of polling SQLite's lock.
//!
//! SQLite's busy handler sleeps and polls (1, 2, 5, … 100 ms), so a process that writes back
//! to back keeps winning the write lock while the others sleep: measured here, one process
//! got 2 pairs/s against another's 2,000, and single operations waited seconds. This queue
//! makes the waiting happen in the kernel instead, with two `flock` locks on files next to
//! the database:
//!
//! - `<db>-writer.lock` is held for the whole write transaction;
//! - `<db>-turnstile.lock` is held by the one process waiting for it. A process must pass
//!   the turnstile before it may wait for the writer lock, so when the writer lock is
//!   released the process that was waiting gets it; the one that just wrote must queue
//!   at the turnstile with the others and cannot take two turns in a row while another
//!   process waits.
//!
//! The queue only orders tokenbudget processes; correctness never depends on it. SQLite's
//! `BEGIN IMMEDIATE` lock still serializes every writer (other tools included), and when the
//! queue cannot be used (an I/O error, or a wait past the retry deadline) the store falls back
//! to that lock, its busy timeout and whole-transaction retries. A process killed while
//! holding a lock releases it: the kernel closes its files.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use self::sys::{lock, try_lock};

/// The two lock files of one database.
#[derive(Debug, Clone)]
pub(crate) struct WriterQueue {
    writer: PathBuf,
    turnstile: PathBuf,
}

/// This process's turn at writing; dropping it (closing the file) lets the next one in.
#[derive(Debug)]
pub(crate) struct Turn {
    _writer: File,
}

impl WriterQueue {
    /// The queue of the database file `db`, creating its lock files.
    pub(crate) fn new(db: &Path) -> io::Result<Self> {
        let with_suffix = |suffix: &str| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let queue = Self {
            writer: with_suffix("-writer.lock"),
            turnstile: with_suffix("-turnstile.lock"),
        };
        // Fails where there is no `flock` (not Unix): the store then goes without a queue.
        try_lock(&open(&queue.writer)?)?;
        open(&queue.turnstile)?;
        Ok(queue)
    }

    /// Waits for this process's turn, until `deadline`. `None` when the queue could not be
    /// used; the caller then relies on SQLite's own lock alone.
    pub(crate) async fn enter(&self, deadline: Instant) -> Option<Turn> {
        match self.try_enter(deadline).await {
            Ok(turn) => Some(turn),
            Err(e) => {
                tracing::debug!(error = %e, "tokenbudget-sqlite: writer queue skipped");
                None
            }
        }
    }

    async fn try_enter(&self, deadline: Instant) -> io::Result<Turn> {
        // Each turn opens its own files: a flock belongs to an open file description, so a
        // wait abandoned by a cancelled operation can never be mistaken for a later one's.
        let writer = open(&self.writer)?;
        let turnstile = open(&self.turnstile)?;
        let wait: Box<dyn FnOnce() -> io::Result<Turn> + Send> = if try_lock(&turnstile)? {
            if try_lock(&writer)? {
                return Ok(Turn { _writer: writer }); // closing `turnstile` unlocks it
            }
            Box::new(move || {
                lock(&writer)?;
                drop(turnstile);
                Ok(Turn { _writer: writer })
            })
        } else {
            Box::new(move || {
                lock(&turnstile)?;
                lock(&writer)?;
                drop(turnstile);
                Ok(Turn { _writer: writer })
            })
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        // On timeout the blocking wait goes on; the turn it gets is dropped at once, since
        // nobody awaits it, which releases the lock again.
        match tokio::time::timeout(remaining, tokio::task::spawn_blocking(wait)).await {
            Ok(Ok(turn)) => turn,
            Ok(Err(join)) => Err(io::Error::other(join)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "waited for the writer queue past the retry deadline",
            )),
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

#[cfg(unix)]
mod sys {
    use std::fs::File;
    use std::io;

    use rustix::fs::{flock, FlockOperation};

    /// Waits for `file`'s exclusive lock.
    pub(super) fn lock(file: &File) -> io::Result<()> {
        Ok(flock(file, FlockOperation::LockExclusive)?)
    }

    /// Takes `file`'s exclusive lock if it is free.
    pub(super) fn try_lock(file: &File) -> io::Result<bool> {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(not(unix))]
mod sys {
    use std::fs::File;
    use std::io;

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the writer queue needs flock (Unix)",
        )
    }

    pub(super) fn lock(_: &File) -> io::Result<()> {
        Err(unsupported())
    }

    pub(super) fn try_lock(_: &File) -> io::Result<bool> {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_turn_at_a_time_and_a_waiter_gets_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let queue = WriterQueue::new(&dir.path().join("q.db")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = queue.enter(deadline).await.expect("free queue");

        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.enter(deadline).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "a second turn while the first is held"
        );
        // The waiter now holds the turnstile: a third caller cannot overtake it.
        let short = Instant::now() + Duration::from_millis(50);
        assert!(queue.enter(short).await.is_none(), "overtook the waiter");

        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter got its turn")
            .unwrap();
        assert!(second.is_some());
    }
}
