//! The queue between request threads and the span exporter's thread: a [`SpanBatch`] behind a
//! mutex. A request appends its spans under the lock (no allocation once the buffers have grown,
//! no wake-up unless the batch has reached [`WAKE_AT`] spans); the exporter swaps the whole
//! batch for its emptied previous one, so the two sides trade buffers instead of allocating.
//! A full queue drops spans and counts them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::span_record::SpanBatch;

/// Spans waiting for export; more are dropped.
pub(crate) const QUEUE_SPANS: usize = 16_384;
/// Text waiting for export (bytes); spans that would grow it further are dropped.
const QUEUE_TEXT: usize = 16 << 20;
/// A batch this large wakes the exporter before its scheduled time.
pub(crate) const WAKE_AT: usize = 2048;

/// The shared queue.
#[derive(Debug)]
pub(crate) struct SpanQueue {
    state: Mutex<State>,
    wake: Condvar,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct State {
    batch: SpanBatch,
    stopping: bool,
}

impl Default for SpanQueue {
    /// An empty queue with room for [`WAKE_AT`] spans before it grows (a growing batch copies
    /// every span it holds).
    fn default() -> SpanQueue {
        SpanQueue {
            state: Mutex::new(State {
                batch: SpanBatch::with_capacity(WAKE_AT),
                stopping: false,
            }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    }
}

impl SpanQueue {
    /// Lets `fill` append spans to the pending batch, unless the queue is full (then the spans
    /// are counted as dropped and `fill` is not called). `spans` is how many `fill` adds.
    #[inline]
    pub(crate) fn push(&self, spans: usize, fill: impl FnOnce(&mut SpanBatch)) {
        let mut state = self.lock();
        let batch = &mut state.batch;
        if batch.spans.len() + spans > QUEUE_SPANS || batch.text.len() > QUEUE_TEXT {
            drop(state);
            self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
            return;
        }
        let before = batch.spans.len();
        fill(batch);
        let wake = before < WAKE_AT && batch.spans.len() >= WAKE_AT;
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Waits until `period` has passed, the batch has reached [`WAKE_AT`] spans or the queue is
    /// stopping; then swaps the pending batch with `spare` (which must be empty). Returns true
    /// if the queue is stopping (the batch taken is the last one).
    pub(crate) fn take(&self, spare: &mut SpanBatch, period: Duration) -> bool {
        let mut state = self.lock();
        if !state.stopping && state.batch.spans.len() < WAKE_AT {
            state = match self.wake.wait_timeout(state, period) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        std::mem::swap(&mut state.batch, spare);
        state.stopping
    }

    /// Asks the exporter to take the last batch and stop.
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.wake.notify_all();
    }

    /// Spans dropped so far because the queue was full (taken: the count restarts at 0).
    pub(crate) fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a batch that is still well-formed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::span_record::{Kind, SpanRecord, Value};

    fn record() -> SpanRecord {
        SpanRecord::new([1; 16], [2; 8], None, Kind::Server, Value::Static("GET"))
    }

    #[test]
    fn full_queue_drops_and_counts_and_batches_are_swapped() {
        let q = SpanQueue::default();
        for _ in 0..QUEUE_SPANS {
            q.push(1, |b| b.spans.push(record()));
        }
        q.push(2, |_| panic!("a full queue must not call fill"));
        assert_eq!(q.take_dropped(), 2);
        let mut spare = SpanBatch::default();
        assert!(!q.take(&mut spare, Duration::from_millis(1)));
        assert_eq!(spare.spans.len(), QUEUE_SPANS);
        spare.clear();
        q.push(1, |b| b.spans.push(record()));
        q.stop();
        assert!(q.take(&mut spare, Duration::from_secs(5)));
        assert_eq!(spare.spans.len(), 1);
    }
}
