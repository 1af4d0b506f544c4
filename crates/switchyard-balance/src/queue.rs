//! The queue of requests waiting for a free server of one upstream (HAProxy's backend queue).
//!
//! When every server an upstream could use is at its `max_in_flight`, a request may join the
//! upstream's [`SlotQueue`] (bounded by the caller's capacity) and wait for its turn. A slot
//! freed on any server of the upstream wakes the longest-waiting request, which then claims a
//! server through the selectors as usual ([`crate::Pool::admit`]). Nothing polls: a waiter
//! sleeps until a release wakes it.
//!
//! Cost when nobody waits: a release reads one atomic counter ([`SlotQueue::slot_freed`]);
//! picks never touch the queue unless a server has a limit and the counter is non-zero.
//!
//! Ordering. Releases (`fetch_sub` of a server's in-flight count, then a load of the waiter
//! count) and joins (`fetch_add` of the waiter count, then a claim attempt) are sequentially
//! consistent, so either the releaser sees the new waiter and wakes it, or the waiter's claim
//! sees the freed slot. A waiter that joins behind others does not claim before its turn, so a
//! slot freed for the first in line is not taken by a later one. While anyone waits, new
//! requests queue behind them instead of claiming directly (FIFO).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Requests waiting for a free server, in arrival order.
///
/// ```
/// use switchyard_balance::queue::SlotQueue;
/// let q = SlotQueue::default();
/// let first = q.join(1).unwrap();
/// assert!(first.was_first());
/// assert!(q.join(1).is_none()); // full
/// assert_eq!(q.waiting(), 1);
/// drop(first);
/// assert_eq!(q.waiting(), 0);
/// ```
#[derive(Debug, Default)]
pub struct SlotQueue {
    waiting: AtomicUsize,
    /// Wakes waiters one at a time, oldest first (a notification given to a waiter that leaves
    /// before using it passes to the next one).
    notify: Notify,
}

impl SlotQueue {
    /// Requests waiting now.
    #[inline]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Joins the queue, unless `capacity` requests already wait. The ticket leaves the queue
    /// when dropped.
    pub fn join(&self, capacity: usize) -> Option<QueueTicket<'_>> {
        let before = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < capacity).then_some(n + 1)
            })
            .ok()?;
        Some(QueueTicket {
            queue: self,
            first: before == 0,
        })
    }

    /// A server slot was freed: wakes the longest-waiting request, if any.
    #[inline]
    pub(crate) fn slot_freed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_one();
        }
    }

    /// Wakes one waiter to look again (a server was added or came back): the same as a freed
    /// slot.
    pub fn poke(&self) {
        self.slot_freed();
    }
}

/// A place in a [`SlotQueue`].
#[derive(Debug)]
pub struct QueueTicket<'a> {
    queue: &'a SlotQueue,
    first: bool,
}

impl QueueTicket<'_> {
    /// True if nobody waited when this request joined: it must look for a free slot once
    /// before sleeping (a slot freed just before it joined woke nobody).
    pub fn was_first(&self) -> bool {
        self.first
    }

    /// Sleeps until a freed slot wakes this request (oldest waiter first).
    pub async fn turn(&self) {
        self.queue.notify.notified().await;
    }
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}
