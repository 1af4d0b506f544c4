//! The queue between request threads and the span exporter's thread: the encoded spans
//! ([`super::span_writer`]) one after the other in a byte buffer behind a mutex. A request writes
//! its spans straight into the buffer under the lock (a few hundred bytes: no allocation once the
//! buffer has grown, no wake-up unless [`WAKE_AT`] spans are waiting); the exporter swaps the
//! whole buffer for its emptied previous one, so the two sides trade buffers instead of
//! allocating. A full queue drops spans and counts them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Spans waiting for export; more are dropped.
pub(crate) const QUEUE_SPANS: usize = 16_384;
/// Bytes waiting for export; spans written past this are dropped.
const QUEUE_BYTES: usize = 16 << 20;
/// A batch this large wakes the exporter before its scheduled time.
pub(crate) const WAKE_AT: usize = 2048;
/// The buffer's starting size: room for about [`WAKE_AT`] spans.
pub(crate) const BATCH_BYTES: usize = WAKE_AT * 512;

/// Encoded spans and how many they are.
#[derive(Debug)]
pub(crate) struct SpanBytes {
    /// `room` bytes kept free for the export request's framing (written there by the exporter,
    /// so that the spans are sent where the request threads wrote them, without a copy), then
    /// `ScopeSpans.spans` fields, one after the other.
    pub(crate) bytes: Vec<u8>,
    /// How many bytes come before the first span.
    pub(crate) room: usize,
    /// How many spans `bytes` holds.
    pub(crate) spans: usize,
}

impl SpanBytes {
    /// An empty batch with `room` bytes free before its spans, and space for `capacity` bytes of
    /// spans before it grows.
    pub(crate) fn new(room: usize, capacity: usize) -> SpanBytes {
        let mut bytes = Vec::with_capacity(room + capacity);
        bytes.resize(room, 0);
        SpanBytes {
            bytes,
            room,
            spans: 0,
        }
    }

    /// The spans' bytes.
    pub(crate) fn spans(&self) -> &[u8] {
        self.bytes.get(self.room..).unwrap_or_default()
    }

    /// Empties the batch, keeping its buffer.
    pub(crate) fn clear(&mut self) {
        self.bytes.resize(self.room, 0);
        self.bytes.truncate(self.room);
        self.spans = 0;
    }
}

/// The shared queue.
#[derive(Debug)]
pub(crate) struct SpanQueue {
    state: Mutex<State>,
    wake: Condvar,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct State {
    batch: SpanBytes,
    stopping: bool,
}

impl SpanQueue {
    /// An empty queue whose batches keep `room` bytes free before their spans.
    pub(crate) fn new(room: usize) -> SpanQueue {
        SpanQueue {
            state: Mutex::new(State {
                batch: SpanBytes::new(room, BATCH_BYTES),
                stopping: false,
            }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Lets `fill` append `spans` encoded spans to the pending bytes, unless the queue is full
    /// (then the spans are counted as dropped and `fill` is not called).
    #[inline]
    pub(crate) fn push(&self, spans: usize, fill: impl FnOnce(&mut Vec<u8>)) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let batch = &mut state.batch;
        if state.stopping || batch.spans + spans > QUEUE_SPANS || batch.bytes.len() > QUEUE_BYTES {
            drop(guard);
            self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
            return;
        }
        let before = batch.spans;
        fill(&mut batch.bytes);
        batch.spans += spans;
        let wake = before < WAKE_AT && batch.spans >= WAKE_AT;
        drop(guard);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Waits until `period` has passed, the batch has reached [`WAKE_AT`] spans or the queue is
    /// stopping; then swaps the pending batch with `spare` (which must be empty, with the same
    /// room). Returns true
    /// if the queue is stopping (the batch taken is the last one).
    pub(crate) fn take(&self, spare: &mut SpanBytes, period: Duration) -> bool {
        let mut state = self.lock();
        if !state.stopping && state.batch.spans < WAKE_AT {
            state = match self.wake.wait_timeout(state, period) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        std::mem::swap(&mut state.batch, spare);
        state.stopping
    }

    /// Asks the exporter to take the last batch and stop; spans pushed afterwards are dropped.
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.wake.notify_all();
    }

    /// Spans dropped so far because the queue was full (taken: the count restarts at 0).
    pub(crate) fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can leave a span cut short: the exporter's framing
        // (`span_end`) stops at it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_and_counts_and_batches_are_swapped() {
        let q = SpanQueue::new(3);
        for _ in 0..QUEUE_SPANS {
            q.push(1, |b| b.push(1));
        }
        q.push(2, |_| panic!("a full queue must not call fill"));
        assert_eq!(q.take_dropped(), 2);
        let mut spare = SpanBytes::new(3, 0);
        assert!(!q.take(&mut spare, Duration::from_millis(1)));
        assert_eq!(spare.spans, QUEUE_SPANS);
        assert_eq!(spare.spans().len(), QUEUE_SPANS);
        assert_eq!(spare.bytes.len(), QUEUE_SPANS + 3);
        spare.clear();
        q.push(1, |b| b.push(2));
        q.stop();
        q.push(1, |_| panic!("a stopped queue must not call fill"));
        assert_eq!(q.take_dropped(), 1);
        assert!(q.take(&mut spare, Duration::from_secs(5)));
        assert_eq!((spare.spans, spare.spans()), (1, &[2u8][..]));
    }
}
