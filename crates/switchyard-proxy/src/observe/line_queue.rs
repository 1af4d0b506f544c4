//! The access log's queue between request threads and the writer thread: the bytes of whole
//! lines in one buffer behind a mutex. A request formats its line straight into that buffer
//! under the lock (no allocation once it has grown, no copy from a buffer of its own: a line is
//! written once); it wakes the writer only when [`WAKE_BYTES`] are waiting. The writer
//! swaps the whole buffer for its emptied previous one every [`FLUSH_PERIOD`] and writes it in
//! one call, so the two sides trade buffers instead of allocating a line each. More than
//! [`QUEUE_BYTES`] waiting (a disk slower than the traffic) drops lines, counted by the caller.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Bytes waiting for the writer (about 8,000 lines of 500 bytes); more are dropped.
pub(crate) const QUEUE_BYTES: usize = 4 << 20;
/// This much waiting wakes the writer before its period.
pub(crate) const WAKE_BYTES: usize = 256 << 10;
/// The longest a line waits in the queue (plus the write itself).
pub(crate) const FLUSH_PERIOD: Duration = Duration::from_millis(100);

/// The shared queue.
#[derive(Debug, Default)]
pub(crate) struct LineQueue {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    bytes: Vec<u8>,
    /// No more lines are taken; the writer writes what is queued and stops.
    stopping: bool,
    /// The writer should reopen its file after writing what is queued (`SIGUSR1`).
    reopen: bool,
}

/// What the writer must do after writing the batch it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Reopen the file.
    pub(crate) reopen: bool,
    /// Stop: the batch was the last one.
    pub(crate) stopping: bool,
}

impl LineQueue {
    /// Formats a line with `fill` straight into the queue's buffer (under the lock: formatting a
    /// line takes well under a microsecond) and keeps it. Returns false if the line was dropped: the
    /// queue is full or stopping (then the bytes `fill` wrote are taken back).
    #[inline]
    pub(crate) fn push_with(&self, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut state = self.lock();
        let before = state.bytes.len();
        if state.stopping || before >= QUEUE_BYTES {
            return false;
        }
        fill(&mut state.bytes);
        if state.bytes.len() > QUEUE_BYTES {
            state.bytes.truncate(before);
            return false;
        }
        let wake = before < WAKE_BYTES && state.bytes.len() >= WAKE_BYTES;
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Queues `line` (whole lines, `\n`-terminated). Returns false if it was dropped.
    pub(crate) fn push(&self, line: &[u8]) -> bool {
        let mut state = self.lock();
        let before = state.bytes.len();
        if state.stopping || before + line.len() > QUEUE_BYTES {
            return false;
        }
        state.bytes.extend_from_slice(line);
        let wake = before < WAKE_BYTES && state.bytes.len() >= WAKE_BYTES;
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Waits until `period` has passed, [`WAKE_BYTES`] are waiting, a reopen is asked for or the
    /// queue is stopping; then swaps the queued bytes with `spare` (which must be empty).
    pub(crate) fn take(&self, spare: &mut Vec<u8>, period: Duration) -> Taken {
        let mut state = self.lock();
        if !state.stopping && !state.reopen && state.bytes.len() < WAKE_BYTES {
            state = match self.wake.wait_timeout(state, period) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        std::mem::swap(&mut state.bytes, spare);
        let reopen = std::mem::take(&mut state.reopen);
        Taken {
            reopen,
            stopping: state.stopping,
        }
    }

    /// Asks the writer to reopen its file once it has written what is queued now.
    pub(crate) fn reopen(&self) {
        self.lock().reopen = true;
        self.wake.notify_all();
    }

    /// Refuses further lines and asks the writer to write what is queued and stop.
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.wake.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves bytes that are still whole lines.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_batched_bounded_and_refused_after_stop() {
        let q = LineQueue::default();
        assert!(q.push_with(|b| b.extend_from_slice(b"one\n")));
        assert!(q.push(b"two\n"));
        let mut spare = Vec::new();
        let t = q.take(&mut spare, Duration::from_millis(1));
        assert_eq!(spare, b"one\ntwo\n");
        assert_eq!(
            t,
            Taken {
                reopen: false,
                stopping: false
            }
        );
        // Full: the line that does not fit is refused whole.
        let big = vec![b'x'; QUEUE_BYTES - 3];
        assert!(q.push(&big));
        assert!(!q.push(b"abcd"));
        assert!(q.push(b"ab\n"));
        spare.clear();
        // Past WAKE_BYTES the writer does not wait for its period.
        let started = std::time::Instant::now();
        q.take(&mut spare, Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(spare.len(), QUEUE_BYTES);
        q.reopen();
        spare.clear();
        assert!(q.take(&mut spare, Duration::from_secs(30)).reopen);
        assert!(q.push(b"last\n"));
        q.stop();
        assert!(!q.push(b"late\n"));
        spare.clear();
        let t = q.take(&mut spare, Duration::from_secs(30));
        assert!(t.stopping);
        assert_eq!(spare, b"last\n");
    }
}
