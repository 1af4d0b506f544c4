//! Rate limiting per route (`[routes.rate_limit]`): a token bucket per key, local to the
//! instance, checked before any upstream work.
//!
//! Each bucket is kept as one number, GCRA's "theoretical arrival time" (the time at which the
//! bucket will be full again): a request at `now` is allowed if that time is at most
//! `(burst - 1) × interval` ahead of `now`, and pushes it one `interval` (`1 / requests_per_s`)
//! further. This is exactly a token bucket of `burst` tokens refilled at `requests_per_s`, in 8
//! bytes per key with no refill arithmetic on floats.
//!
//! Memory is bounded: keys live in [`SHARDS`] shards of at most `max_keys / SHARDS` entries
//! each (a `Mutex<HashMap>` per shard, held for a lookup and an insert). A bucket whose time
//! is in the past is full, the same as an absent one, so it can be dropped without changing any
//! answer; a shard that fills up first drops those, and if every key is still active (more
//! active clients than `max_keys`), drops a quarter of them — which gives those clients a full
//! bucket again (the limit errs on the side of letting requests through, never of refusing
//! them). Time is a parameter (nanoseconds on any monotonic clock), so tests drive it by hand.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

/// Shards of the key table (a power of two).
pub const SHARDS: usize = 64;

/// Keys a route's limiter keeps at most (about 3 MB at 24–48 bytes a key, map overhead
/// included).
pub const DEFAULT_MAX_KEYS: usize = 65_536;

/// The keys are hashes already: the map uses them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Buckets = HashMap<u64, u64, BuildHasherDefault<Identity>>;

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit (a token was taken).
    Allow,
    /// Over the limit: a token is free again in this many whole seconds (at least 1), the
    /// `Retry-After` value.
    Deny {
        /// Seconds until the next token.
        retry_after_s: u64,
    },
}

/// Token buckets by key for one route.
///
/// ```
/// use switchyard_proxy::rate_limit::{RateLimiter, Verdict};
/// // 2 requests per second, bursts of 3.
/// let l = RateLimiter::new(2.0, 3, 1024);
/// let s = 1_000_000_000;
/// for _ in 0..3 {
///     assert_eq!(l.check(7, 0), Verdict::Allow);
/// }
/// assert_eq!(l.check(7, 0), Verdict::Deny { retry_after_s: 1 });
/// assert_eq!(l.check(8, 0), Verdict::Allow); // another key, another bucket
/// assert_eq!(l.check(7, s / 2), Verdict::Allow); // one token back after 500 ms
/// ```
#[derive(Debug)]
pub struct RateLimiter {
    interval_ns: u64,
    tolerance_ns: u64,
    shard_cap: usize,
    shards: Box<[Mutex<Buckets>]>,
}

impl RateLimiter {
    /// A limiter of `requests_per_s` (> 0) with bursts of `burst` (≥ 1) per key, keeping at
    /// most about `max_keys` keys.
    pub fn new(requests_per_s: f64, burst: u32, max_keys: usize) -> Self {
        let interval = (1e9 / requests_per_s).clamp(1.0, u64::MAX as f64 / 4.0);
        let interval_ns = interval as u64;
        RateLimiter {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1) - 1)),
            shard_cap: (max_keys / SHARDS).max(4),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes a token from `key`'s bucket at `now_ns`, if it has one.
    pub fn check(&self, key: u64, now_ns: u64) -> Verdict {
        // The low bits pick the map slot; the high ones the shard.
        let shard = &self.shards[(key >> 58) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(&key).map_or(now_ns, |&t| t.max(now_ns));
        let ahead = tat - now_ns;
        if ahead > self.tolerance_ns {
            let wait_ns = ahead - self.tolerance_ns;
            return Verdict::Deny {
                retry_after_s: wait_ns.div_ceil(1_000_000_000).max(1),
            };
        }
        if map.len() >= self.shard_cap && !map.contains_key(&key) {
            evict(&mut map, now_ns, self.shard_cap);
        }
        map.insert(key, tat.saturating_add(self.interval_ns));
        Verdict::Allow
    }

    /// Keys held now (for tests and the measurement in the docs).
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Makes room in a full shard: drops every full bucket (its time is past), then, if that was
/// not a quarter of the shard, arbitrary ones until it is.
#[cold]
fn evict(map: &mut Buckets, now_ns: u64, cap: usize) {
    map.retain(|_, &mut tat| tat > now_ns);
    let target = cap - cap / 4;
    if map.len() > target {
        let excess = map.len() - target;
        let victims: Vec<u64> = map.keys().take(excess).copied().collect();
        for k in victims {
            map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn steady_rate_and_burst() {
        // 10/s, burst 5: 5 at once, then one every 100 ms.
        let l = RateLimiter::new(10.0, 5, 1024);
        let allowed = (0..20).filter(|_| l.check(1, 0) == Verdict::Allow).count();
        assert_eq!(allowed, 5);
        let mut t = 0;
        let mut more = 0;
        for _ in 0..100 {
            t += S / 100; // every 10 ms for one second
            if l.check(1, t) == Verdict::Allow {
                more += 1;
            }
        }
        assert_eq!(more, 10, "one per 100 ms");
    }

    #[test]
    fn retry_after_is_whole_seconds_until_a_token() {
        // One request every 10 s.
        let l = RateLimiter::new(0.1, 1, 1024);
        assert_eq!(l.check(1, 0), Verdict::Allow);
        assert_eq!(l.check(1, 0), Verdict::Deny { retry_after_s: 10 });
        assert_eq!(l.check(1, 9 * S + 1), Verdict::Deny { retry_after_s: 1 });
        assert_eq!(l.check(1, 10 * S), Verdict::Allow);
    }

    #[test]
    fn an_idle_key_gets_its_whole_burst_back_and_no_more() {
        let l = RateLimiter::new(1.0, 3, 1024);
        for _ in 0..3 {
            assert_eq!(l.check(1, 0), Verdict::Allow);
        }
        // An hour later: three again, not 3600.
        let later = 3600 * S;
        let allowed = (0..10)
            .filter(|_| l.check(1, later) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn memory_is_bounded_and_full_buckets_go_first() {
        let l = RateLimiter::new(1.0, 1, 1024);
        // A key kept busy, then a flood of one-off keys.
        let busy = 42u64 << 58;
        assert_eq!(l.check(busy, 0), Verdict::Allow);
        for k in 0..100_000u64 {
            // Spread over the shards like real hashes.
            let key = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let _ = l.check(key, k * 1000);
        }
        assert!(l.keys() <= 1024 + SHARDS, "{}", l.keys());
        // The flood's keys were full after 1 s and dropped first: the busy key, refilled by
        // now (100 ms of flood), behaves as any full bucket.
        assert_eq!(l.check(busy, 2 * S), Verdict::Allow);
        assert!(matches!(l.check(busy, 2 * S), Verdict::Deny { .. }));
    }
}
