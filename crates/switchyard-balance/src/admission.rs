//! Admission: a pick that also takes one of the server's `max_in_flight` slots, and the wait in
//! the upstream's [`SlotQueue`] when every server is full.
//!
//! [`Snapshot::claim`] picks and counts the request in flight in one step (an atomic
//! check-and-increment, so two requests racing for a server's last slot cannot both get it; the
//! loser picks again without it). [`Pool::admit`] adds the queue: when every server of the
//! serving and standby tiers is full, the request joins the queue (if it has room) and claims
//! again each time a slot is freed. Without limits both are a pick and an in-flight count, as
//! before.

use std::sync::Arc;

use crate::pool::{Pool, Snapshot};
use crate::server::Server;
use crate::stats::InFlight;
use crate::tried::Tried;

/// How many times a claim picks again after losing a race for a server's last slot.
const MAX_CLAIM_RACES: usize = 8;

/// Why no server was claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No server is available (or every one was tried): the all-down or retries-exhausted
    /// answer.
    Unavailable,
    /// Servers are available but every one is at its `max_in_flight`, and the request may not
    /// wait (no queue, or a retry).
    Full,
    /// Every server is full and the queue holds its `queue_size` already.
    QueueFull,
}

/// A server claimed for one request: the snapshot it was picked from, its index there, and the
/// in-flight slot the request holds until it ends.
#[derive(Debug)]
pub struct Claim {
    /// The snapshot the server was picked from.
    pub snapshot: Arc<Snapshot>,
    /// The server's index in [`Snapshot::servers`].
    pub index: usize,
    /// The request's slot on the server.
    pub inflight: InFlight,
    /// True if the request waited in the queue.
    pub queued: bool,
}

impl Claim {
    /// The claimed server.
    pub fn server(&self) -> &Server {
        &self.snapshot.servers()[self.index]
    }
}

impl Snapshot {
    /// Picks a server not in `tried` that has room, and counts the request in flight on it
    /// (started at `now_ns`). Allocation-free, like a pick.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_balance::admission::Refusal;
    /// use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
    ///
    /// let specs = vec![
    ///     ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1).max_in_flight(1),
    ///     ServerSpec::new("g", "127.0.0.1:8082".parse().unwrap(), 1).max_in_flight(1).standby(true),
    /// ];
    /// let pool = Pool::new("api", PoolOptions::new(Algorithm::Wrr), specs, Arc::new(StatsStore::default()));
    /// let snap = pool.snapshot();
    /// let (i, a) = snap.claim(None, &Tried::default(), 0).unwrap();
    /// assert_eq!(snap.servers()[i].spec.addr.port(), 8081);
    /// // The primary is full: the standby server takes the overflow.
    /// let (j, b) = snap.claim(None, &Tried::default(), 0).unwrap();
    /// assert_eq!(snap.servers()[j].spec.addr.port(), 8082);
    /// assert_eq!(snap.claim(None, &Tried::default(), 0).unwrap_err(), Refusal::Full);
    /// drop((a, b));
    /// ```
    pub fn claim(
        &self,
        key: Option<u64>,
        tried: &Tried,
        now_ns: u64,
    ) -> Result<(usize, InFlight), Refusal> {
        let retry = !tried.is_empty();
        if !self.is_limited() {
            return match self.pick_in_tiers(key, tried, retry, Some(now_ns)) {
                Some((i, s)) => Ok((i, s.stats.begin(now_ns))),
                None => Err(Refusal::Unavailable),
            };
        }
        let mut skip = *tried;
        for _ in 0..MAX_CLAIM_RACES {
            let Some((i, s)) = self.pick_in_tiers(key, &skip, retry, Some(now_ns)) else {
                break;
            };
            match s.stats.try_begin(s.spec.max_in_flight, now_ns) {
                Some(slot) => return Ok((i, slot)),
                // Another request took its last slot since the pick looked.
                None => skip.insert(&s.stats),
            }
        }
        if self.any_full(tried) {
            Err(Refusal::Full)
        } else {
            Err(Refusal::Unavailable)
        }
    }
}

impl Pool {
    /// Claims a server for a request's first attempt: directly when nobody waits, else (or when
    /// every server is full) through the upstream's queue, which holds at most `queue_size`
    /// requests. Waits as long as it takes: the caller bounds it (`queue_timeout_ms`,
    /// `deadline_ms`) by dropping the future, which leaves the queue.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_balance::admission::Refusal;
    /// use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore};
    ///
    /// let specs = vec![ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1).max_in_flight(1)];
    /// let pool = Pool::new("api", PoolOptions::new(Algorithm::Wrr), specs, Arc::new(StatsStore::default()));
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// rt.block_on(async {
    ///     let first = pool.admit(None, 0).await.unwrap();
    ///     assert!(!first.queued);
    ///     assert_eq!(pool.admit(None, 0).await.unwrap_err(), Refusal::Full);
    /// });
    /// ```
    pub async fn admit(&self, key: Option<u64>, queue_size: usize) -> Result<Claim, Refusal> {
        match self.try_admit(key) {
            Err(Refusal::Full) => self.admit_queued(key, queue_size).await,
            other => other,
        }
    }

    /// The first half of [`Pool::admit`]: claims a server at once if nobody waits and one has
    /// room. `Full` means the request has to queue (every server is full, or others wait
    /// already and go first).
    pub fn try_admit(&self, key: Option<u64>) -> Result<Claim, Refusal> {
        let snapshot = self.snapshot();
        if snapshot.is_limited() && self.store().queue().waiting() > 0 {
            return Err(Refusal::Full);
        }
        let (index, inflight) = snapshot.claim(key, &Tried::default(), self.now_nanos())?;
        Ok(Claim {
            snapshot,
            index,
            inflight,
            queued: false,
        })
    }

    /// The second half of [`Pool::admit`]: joins the queue (unless `queue_size` requests wait
    /// already: `QueueFull`; 0 is no queue: `Full`) and claims a server when a freed slot wakes
    /// this request, in arrival order. A look that finds nothing free (a request that does not
    /// queue took the slot) sleeps again in the same place.
    pub async fn admit_queued(
        &self,
        key: Option<u64>,
        queue_size: usize,
    ) -> Result<Claim, Refusal> {
        if queue_size == 0 {
            return Err(Refusal::Full);
        }
        let none = Tried::default();
        let queue = Arc::clone(self.store().queue());
        let ticket = queue.join(queue_size).ok_or(Refusal::QueueFull)?;
        let mut look = ticket.was_first();
        loop {
            if look {
                let snapshot = self.snapshot();
                match snapshot.claim(key, &none, self.now_nanos()) {
                    Ok((index, inflight)) => {
                        ticket.served();
                        return Ok(Claim {
                            snapshot,
                            index,
                            inflight,
                            queued: true,
                        });
                    }
                    Err(Refusal::Full) => {}
                    Err(other) => return Err(other),
                }
            }
            look = true;
            ticket.turn().await;
        }
    }
}
