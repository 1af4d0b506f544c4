//! The queue of requests waiting for a free server of one upstream (HAProxy's backend queue).
//!
//! When every server an upstream could use is at its `max_in_flight`, a request may join the
//! upstream's [`SlotQueue`] (bounded by the caller's capacity) and wait for its turn. A slot
//! freed on any server of the upstream wakes the longest-waiting request that is asleep, which
//! then claims a server through the selectors as usual ([`crate::Pool::admit`]). Nothing polls:
//! a waiter sleeps until a release (or new capacity) wakes it.
//!
//! **Places are kept.** A woken waiter that finds no free slot (a request that does not queue,
//! such as a retry, took the slot first) goes back to sleep *in its place*, not at the back of
//! the line: the next freed slot is still its own (HAProxy's queue behaves the same way).
//!
//! **New capacity.** A server that enters service (health up, enabled, added or given a higher
//! limit by a reload) frees no slot, so the pool [pokes](SlotQueue::poke) the queue whenever it
//! publishes a new snapshot: the first sleeping waiter looks, and a waiter served by a poke
//! passes the poke on to the next one, so the appeared capacity is handed out in arrival order
//! until a waiter finds nothing free (that waiter sleeps again, in its place).
//!
//! Cost when nobody waits: a release reads one atomic counter ([`SlotQueue::slot_freed`]);
//! picks never touch the queue unless a server has a limit and the counter is non-zero. The
//! line itself is behind a mutex taken only by waiters and by releases that find waiters.
//!
//! Ordering. Releases (`fetch_sub` of a server's in-flight count, then a load of the waiter
//! count) and joins (`fetch_add` of the waiter count under the line's lock, then a claim
//! attempt) are sequentially consistent, so either the releaser sees the new waiter and wakes
//! it, or the waiter's claim sees the freed slot. A waiter that joins behind others does not
//! claim before its turn, so a slot freed for the first in line is not taken by a later one.
//! While anyone waits, new requests queue behind them instead of claiming directly (FIFO). A
//! wake that finds every waiter already awake (looking for a slot) is kept as a spare: the next
//! waiter about to sleep looks once more instead.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

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
    /// The line's length, readable without the lock (the fast path's only read).
    waiting: AtomicUsize,
    line: Mutex<Line>,
}

/// The waiters in arrival order.
#[derive(Debug, Default)]
struct Line {
    next_id: u64,
    places: VecDeque<Place>,
    /// Wakes that found no sleeping waiter (see the module docs).
    spare: usize,
}

#[derive(Debug)]
struct Place {
    id: u64,
    turn: Turn,
    waker: Option<Waker>,
}

/// What woke a waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// A slot was freed: one waiter may use it.
    Freed,
    /// Capacity may have appeared: a waiter served by it wakes the next one.
    Poke,
}

/// Where a waiter is in its wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Sleeping (or about to), until woken.
    Asleep,
    /// Woken, not yet looking.
    Woken(Wake),
    /// Looking for a slot after a wake.
    Looking(Wake),
}

impl Line {
    fn position(&self, id: u64) -> Option<usize> {
        self.places.iter().position(|p| p.id == id)
    }

    /// Wakes the first sleeping waiter; keeps the wake as a spare if every waiter is awake.
    fn wake(&mut self, wake: Wake) -> Option<Waker> {
        match self.places.iter_mut().find(|p| p.turn == Turn::Asleep) {
            Some(place) => {
                place.turn = Turn::Woken(wake);
                place.waker.take()
            }
            None => {
                self.spare = (self.spare + 1).min(self.places.len());
                None
            }
        }
    }
}

impl SlotQueue {
    /// Requests waiting now.
    #[inline]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the queue, unless `capacity` requests already wait. The ticket leaves the queue
    /// when dropped.
    pub fn join(&self, capacity: usize) -> Option<QueueTicket<'_>> {
        let mut line = self.line();
        let before = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < capacity).then_some(n + 1)
            })
            .ok()?;
        let id = line.next_id;
        line.next_id += 1;
        line.places.push_back(Place {
            id,
            turn: Turn::Asleep,
            waker: None,
        });
        Some(QueueTicket {
            queue: self,
            id,
            first: before == 0,
            served: false,
        })
    }

    /// A server slot was freed: wakes the longest-waiting sleeping request, if any.
    #[inline]
    pub(crate) fn slot_freed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake(Wake::Freed);
        }
    }

    /// Capacity may have appeared (a server entered service, or a limit was raised): wakes the
    /// first sleeping waiter, and each waiter it serves wakes the next, in arrival order, until
    /// one finds nothing free. Costs one atomic load when nobody waits.
    #[inline]
    pub fn poke(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake(Wake::Poke);
        }
    }

    #[cold]
    fn wake(&self, wake: Wake) {
        let waker = self.line().wake(wake);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A place in a [`SlotQueue`].
#[derive(Debug)]
pub struct QueueTicket<'a> {
    queue: &'a SlotQueue,
    id: u64,
    first: bool,
    served: bool,
}

impl QueueTicket<'_> {
    /// True if nobody waited when this request joined: it must look for a free slot once
    /// before sleeping (a slot freed just before it joined woke nobody).
    pub fn was_first(&self) -> bool {
        self.first
    }

    /// Sleeps until a freed slot (or new capacity) wakes this request, oldest waiter first.
    /// Called again after a look that found nothing free, it sleeps in the same place.
    pub async fn turn(&self) {
        poll_fn(|cx| self.poll_turn(cx)).await;
    }

    fn poll_turn(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut line = self.queue.line();
        let Some(i) = line.position(self.id) else {
            return Poll::Ready(());
        };
        if let Turn::Woken(wake) = line.places[i].turn {
            line.places[i].turn = Turn::Looking(wake);
            return Poll::Ready(());
        }
        if line.spare > 0 {
            line.spare -= 1;
            line.places[i].turn = Turn::Looking(Wake::Freed);
            return Poll::Ready(());
        }
        let place = &mut line.places[i];
        place.turn = Turn::Asleep;
        match &mut place.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Leaves the queue with a server claimed (a freed slot woke it: used up; a poke: passed
    /// on to the next waiter).
    pub fn served(mut self) {
        self.served = true;
    }
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        let mut line = self.queue.line();
        let Some(i) = line.position(self.id) else {
            return;
        };
        let place = line.places.remove(i);
        self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
        // A wake this request did not use goes to the next waiter (as does a poke it used:
        // there may be more room).
        let pass = match place.map(|p| p.turn) {
            Some(Turn::Woken(wake)) => Some(wake),
            Some(Turn::Looking(Wake::Poke)) => Some(Wake::Poke),
            Some(Turn::Looking(Wake::Freed)) if !self.served => Some(Wake::Freed),
            _ => None,
        };
        if line.places.is_empty() {
            line.spare = 0;
        }
        let waker = match pass {
            Some(wake) if !line.places.is_empty() => line.wake(wake),
            _ => None,
        };
        drop(line);
        if let Some(w) = waker {
            w.wake();
        }
    }
}
