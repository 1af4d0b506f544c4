//! Per-server run-time state that outlives selectors: in-flight counts, latency estimate, health.
//!
//! [`StatsStore`] hands out one [`ServerStats`] per [`ServerId`]; a rebuilt [`crate::Pool`]
//! snapshot looks its servers up again and finds the same counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::identity::ServerId;
use crate::queue::SlotQueue;
use crate::slow_start::ServiceState;

/// How a proxied request ended, as far as load estimation is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered (any status that is not counted as a failure).
    Success,
    /// Connect error, timeout, reset, or a status counted as a failure: penalised in the EWMA so
    /// that fast errors do not attract traffic.
    Failure,
}

/// Decay time constant of the latency EWMA.
pub const EWMA_DECAY_NS: f64 = 10_000_000_000.0;
/// Latency charged for a failure, so that a server answering fast errors looks slow.
pub const FAILURE_PENALTY_NS: f64 = 1_000_000_000.0;

/// Counters and estimates for one server.
///
/// ```
/// use std::sync::Arc;
/// use switchyard_balance::{Outcome, ServerStats};
/// let s = Arc::new(ServerStats::default());
/// let g = s.begin(0);
/// assert_eq!(s.in_flight(), 1);
/// g.finish(Outcome::Success, 2_000_000);
/// assert_eq!(s.in_flight(), 0);
/// assert!(s.ewma_nanos(2_000_000) > 0.0);
/// ```
#[derive(Debug)]
pub struct ServerStats {
    in_flight: AtomicU32,
    requests: AtomicU64,
    failures: AtomicU64,
    ewma_bits: AtomicU64,
    ewma_stamp: AtomicU64,
    healthy: AtomicBool,
    /// The upstream's queue, told when a slot frees (stats made by a [`StatsStore`]).
    queue: Option<Arc<SlotQueue>>,
    /// In service or not, and the slow-start ramp (kept across reloads with the stats).
    service: ServiceState,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ewma_bits: AtomicU64::new(0f64.to_bits()),
            ewma_stamp: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            queue: None,
            service: ServiceState::default(),
        }
    }
}

impl ServerStats {
    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// Requests finished (success or failure).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Requests that ended in failure.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
    /// Health verdict (active and passive checks combined). New servers start healthy unless the
    /// health layer marks them otherwise before publishing them.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
    /// The server's service history and slow-start ramp (see [`crate::slow_start`]).
    pub fn service(&self) -> &ServiceState {
        &self.service
    }
    /// Sets the health verdict; returns true if it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::AcqRel) != healthy
    }

    /// Starts tracking a request: in-flight +1 until the returned guard is finished or dropped.
    pub fn begin(self: &Arc<Self>, now_ns: u64) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            stats: Arc::clone(self),
            start_ns: now_ns,
            done: false,
        }
    }

    /// Starts tracking a request if fewer than `limit` are in flight (0 = no limit): the
    /// atomic check-and-count behind `max_in_flight`, so that concurrent picks of the last free
    /// slot cannot both take it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_balance::ServerStats;
    /// let s = Arc::new(ServerStats::default());
    /// let a = s.try_begin(1, 0).unwrap();
    /// assert!(s.try_begin(1, 0).is_none());
    /// drop(a);
    /// assert!(s.try_begin(1, 0).is_some());
    /// ```
    pub fn try_begin(self: &Arc<Self>, limit: u32, now_ns: u64) -> Option<InFlight> {
        if limit == 0 {
            return Some(self.begin(now_ns));
        }
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(InFlight {
            stats: Arc::clone(self),
            start_ns: now_ns,
            done: false,
        })
    }

    /// The peak-EWMA latency estimate in nanoseconds, decayed to `now_ns`.
    pub fn ewma_nanos(&self, now_ns: u64) -> f64 {
        let v = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        let stamp = self.ewma_stamp.load(Ordering::Relaxed);
        let dt = now_ns.saturating_sub(stamp) as f64;
        v * (-dt / EWMA_DECAY_NS).exp()
    }

    /// The estimate as of its last update, and the time of that update: `(nanoseconds, stamp)`.
    /// Two servers' estimates can be compared without reading the clock by decaying the older
    /// one to the newer stamp (both would decay by the same factor from there to now).
    pub fn ewma_raw(&self) -> (f64, u64) {
        (
            f64::from_bits(self.ewma_bits.load(Ordering::Relaxed)),
            self.ewma_stamp.load(Ordering::Relaxed),
        )
    }

    /// Feeds one observed latency into the peak EWMA: a sample above the estimate replaces it
    /// (peak), a lower one is blended in with weight decaying by elapsed time.
    pub fn observe_latency(&self, rtt_ns: f64, now_ns: u64) {
        let prev = self.ewma_nanos(now_ns);
        let stamp = self.ewma_stamp.load(Ordering::Relaxed);
        let dt = now_ns.saturating_sub(stamp) as f64;
        let next = if rtt_ns > prev {
            rtt_ns
        } else {
            let w = (-dt / EWMA_DECAY_NS).exp();
            prev * w + rtt_ns * (1.0 - w)
        };
        self.ewma_bits.store(next.to_bits(), Ordering::Relaxed);
        self.ewma_stamp.store(now_ns, Ordering::Relaxed);
    }

    fn end(&self, outcome: Option<(Outcome, u64)>, start_ns: u64) {
        match &self.queue {
            // Sequentially consistent with the queue's count of waiters (see `SlotQueue`): a
            // request that joins the queue either is seen here or sees this slot free.
            Some(queue) => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                queue.slot_freed();
            }
            None => {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if let Some((outcome, now_ns)) = outcome {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let rtt = now_ns.saturating_sub(start_ns) as f64;
            match outcome {
                Outcome::Success => self.observe_latency(rtt, now_ns),
                Outcome::Failure => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    self.observe_latency(rtt.max(FAILURE_PENALTY_NS), now_ns);
                }
            }
        }
    }
}

/// An in-flight request on one server. Dropping it without [`InFlight::finish`] (client abort,
/// retry elsewhere) only releases the in-flight count.
#[derive(Debug)]
pub struct InFlight {
    stats: Arc<ServerStats>,
    start_ns: u64,
    done: bool,
}

impl InFlight {
    /// Ends the request with its outcome at time `now_ns`.
    pub fn finish(mut self, outcome: Outcome, now_ns: u64) {
        self.done = true;
        self.stats.end(Some((outcome, now_ns)), self.start_ns);
    }
    /// The server's stats.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }
    /// When the request started.
    pub fn start_nanos(&self) -> u64 {
        self.start_ns
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.stats.end(None, self.start_ns);
        }
    }
}

/// One upstream's stats, keyed by server identity; shared by every snapshot of the upstream and
/// kept across reloads.
///
/// ```
/// use switchyard_balance::{ServerId, StatsStore};
/// let store = StatsStore::default();
/// let a = store.get_or_insert(&ServerId::new("g", "127.0.0.1:80"));
/// let b = store.get_or_insert(&ServerId::new("g", "127.0.0.1:80"));
/// assert!(std::sync::Arc::ptr_eq(&a, &b));
/// ```
#[derive(Debug, Default)]
pub struct StatsStore {
    map: Mutex<HashMap<ServerId, Arc<ServerStats>>>,
    /// Requests waiting for a free server of this upstream.
    queue: Arc<SlotQueue>,
    /// A snapshot was built over this store: servers seen from now on arrived after start-up
    /// (their first entry into service ramps, with slow start).
    started: AtomicBool,
}

impl StatsStore {
    /// The stats of `id`, created on first use. Called when a snapshot is built, never per pick.
    pub fn get_or_insert(&self, id: &ServerId) -> Arc<ServerStats> {
        self.get_or_insert_with(id, true)
    }
    /// Like [`StatsStore::get_or_insert`], but a server seen for the first time starts with the
    /// given health (false while it waits for its first active check).
    pub fn get_or_insert_with(&self, id: &ServerId, initially_healthy: bool) -> Arc<ServerStats> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(id.clone()).or_insert_with(|| {
            let s = ServerStats {
                queue: Some(Arc::clone(&self.queue)),
                service: ServiceState::arriving(self.started.load(Ordering::Acquire)),
                ..ServerStats::default()
            };
            s.set_healthy(initially_healthy);
            Arc::new(s)
        }))
    }
    /// Notes that the start-up snapshot was built: servers seen later are late arrivals.
    pub(crate) fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }
    /// The upstream's queue of requests waiting for a free server (kept across reloads, like
    /// the stats).
    pub fn queue(&self) -> &Arc<SlotQueue> {
        &self.queue
    }
    /// The stats of `id` if it exists.
    pub fn get(&self, id: &ServerId) -> Option<Arc<ServerStats>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned()
    }
    /// Forgets every server not in `keep` (servers removed by a reload).
    pub fn retain(&self, keep: &[ServerId]) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|id, _| keep.contains(id));
    }
}
