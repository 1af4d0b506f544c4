//! Selectors: *what to pick*, given the candidates of a snapshot.
//!
//! A [`Selector`] is built once per snapshot over the candidate servers and then answers picks
//! concurrently without locks. Dynamic state it needs (in-flight counts, latency) is read from the
//! servers' [`crate::ServerStats`], which outlive the selector.
//!
//! | Algorithm | Module | Pick cost | State per pick |
//! |---|---|---|---|
//! | [`Algorithm::Wrr`] | [`wrr`] | one atomic add + `⌈log₂ n⌉` steps of one multiply each | one ticket |
//! | [`Algorithm::LeastConn`] | [`least_conn`] | full scan up to [`least_conn::SCAN_LIMIT`] candidates, P2C above | none |
//! | [`Algorithm::Ewma`] | [`ewma`] | power of two choices, at most one `exp`, no clock read | a per-thread RNG |
//! | [`Algorithm::ConsistentHash`] | [`consistent_hash`] | one table lookup (Maglev, 2-byte slots up to 65,536 servers) | none |
//! | [`Algorithm::ConsistentHash`] with [`HashRing::Ketama`] | [`ketama`] | one binary search over `160 × Σw` points (NGINX's ring) | none |
//! | [`Algorithm::Random`] | [`random`] | one alias-table draw | a per-thread RNG |
//!
//! The load-aware algorithms are split the way tower splits `Load` from its balancers: a
//! [`Load`] says *what to measure* ([`InFlightPerWeight`], [`PeakEwma`]), and a strategy says
//! *how to choose* by that measure ([`LeastLoaded`]: full scan; [`P2c`]: power of two choices).
//! A new measure plugs into both strategies without rewriting a pick; a whole new algorithm
//! implements [`Selector`].
//!
//! Slow start ([`crate::slow_start`]) thins the visits of a ramping server in `wrr`, `random` and
//! the weighted draws and tie-breaks of `least_conn`/`ewma`, and scales its load in the latter
//! ([`Load::less_ramped`]); hashing is not ramped. A selector built while nothing ramps pays one
//! predictable branch per pick for it.
//!
//! No built-in pick allocates, takes a lock or makes a system call (the crate's `no_alloc` test
//! checks the first with a counting global allocator).

use std::fmt::Debug;
use std::str::FromStr;

use crate::server::Server;
use crate::tried::Tried;

pub(crate) mod alias;
pub mod consistent_hash;
pub mod ewma;
pub mod ketama;
pub mod least_conn;
pub mod load;
pub mod random;
pub(crate) mod rng;
pub mod wrr;

pub use consistent_hash::Maglev;
pub use ewma::Ewma;
pub use ketama::Ketama;
pub use least_conn::LeastConn;
pub use load::{InFlightPerWeight, LeastLoaded, Load, P2c, PeakEwma, Ratio};
pub use random::WeightedRandom;
pub use wrr::SmoothWrr;

/// Load-balancing algorithms.
///
/// Parses from the configuration names:
///
/// ```
/// use switchyard_balance::Algorithm;
/// assert_eq!("wlc".parse::<Algorithm>(), Ok(Algorithm::LeastConn));
/// assert_eq!("uri_hash".parse::<Algorithm>(), Ok(Algorithm::ConsistentHash));
/// assert_eq!(Algorithm::Ewma.name(), "ewma");
/// assert!("fastest".parse::<Algorithm>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Smooth weighted round robin.
    #[default]
    Wrr,
    /// Weighted least connections.
    LeastConn,
    /// Peak EWMA × (in-flight + 1), power of two choices.
    Ewma,
    /// Consistent hashing on a request key.
    ConsistentHash,
    /// Weighted random.
    Random,
}

impl Algorithm {
    /// The canonical configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Wrr => "wrr",
            Algorithm::LeastConn => "least_conn",
            Algorithm::Ewma => "ewma",
            Algorithm::ConsistentHash => "consistent_hash",
            Algorithm::Random => "random",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown algorithm name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown algorithm `{0}` (expected wrr, least_conn, wlc, ewma, consistent_hash, \
     source_ip_hash, uri_hash or random)"
)]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;
    /// Accepts the configuration names; `source_ip_hash` and `uri_hash` are consistent hashing on
    /// a key the caller extracts.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "wrr" | "round_robin" => Algorithm::Wrr,
            "least_conn" | "wlc" => Algorithm::LeastConn,
            "ewma" | "peak_ewma" => Algorithm::Ewma,
            "consistent_hash" | "source_ip_hash" | "uri_hash" => Algorithm::ConsistentHash,
            "random" => Algorithm::Random,
            other => return Err(UnknownAlgorithm(other.to_string())),
        })
    }
}

/// The ring a consistent-hashing pool places keys on, and the hash of the request key it reads.
///
/// ```
/// use switchyard_balance::{hash_key, HashRing};
/// assert_eq!(HashRing::default(), HashRing::Maglev);
/// assert_eq!(HashRing::Maglev.hash(b"user-42"), hash_key(b"user-42"));
/// // Ketama reads what NGINX hashes: the CRC-32 of the key's bytes.
/// assert_eq!(HashRing::Ketama.hash(b"123456789"), 0xCBF4_3926);
/// assert_eq!("ketama".parse::<HashRing>(), Ok(HashRing::Ketama));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HashRing {
    /// A weighted Maglev table ([`Maglev`]) on the XXH3 hash of the key ([`crate::hash_key`]).
    #[default]
    Maglev,
    /// NGINX's Ketama ring ([`Ketama`]) on the CRC-32 of the key, exactly as NGINX's
    /// `hash $key consistent`.
    Ketama,
}

impl HashRing {
    /// The configuration name (`maglev`, `ketama`).
    pub fn name(self) -> &'static str {
        match self {
            HashRing::Maglev => "maglev",
            HashRing::Ketama => "ketama",
        }
    }

    /// Hashes a request key for [`PickContext::key`] the way this ring reads it: XXH3-64 for
    /// Maglev, CRC-32 (IEEE, as NGINX's `ngx_crc32_long`) for Ketama.
    #[inline]
    pub fn hash(self, key: &[u8]) -> u64 {
        match self {
            HashRing::Maglev => crate::hash_key(key),
            HashRing::Ketama => u64::from(crc32fast::hash(key)),
        }
    }
}

impl FromStr for HashRing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "maglev" => Ok(HashRing::Maglev),
            "ketama" => Ok(HashRing::Ketama),
            other => Err(format!(
                "unknown hash ring `{other}` (expected maglev or ketama)"
            )),
        }
    }
}

/// What a selector sees for one pick.
#[derive(Debug)]
pub struct PickContext<'a> {
    /// Every server of the snapshot; selectors return an index into it.
    pub servers: &'a [Server],
    /// A hash of the request key, for hashing selectors; `None` when the key is missing.
    /// Computed by the pool's ring ([`crate::Pool::hash_key`], [`HashRing::hash`]): XXH3-64
    /// ([`crate::hash_key`]) for Maglev, CRC-32 for Ketama — specified hashes, so every gateway
    /// of a fleet agrees.
    pub key: Option<u64>,
    /// Servers this request already tried: never pick them again.
    pub tried: &'a Tried,
    /// Now, from the pool's clock: the reading a claim takes anyway for the in-flight count
    /// ([`crate::Snapshot::claim`]), else read for the pick only when the selector's
    /// [`Selector::needs_clock`] is true (a plain [`crate::Snapshot::pick`] otherwise passes 0).
    pub now_ns: u64,
}

impl PickContext<'_> {
    /// True if server `i` may be picked: not tried yet, and below its `max_in_flight` (a full
    /// server is skipped like an unavailable one: hashing walks on to the next on the ring).
    #[inline]
    pub fn allowed(&self, i: usize) -> bool {
        self.servers.get(i).is_some_and(|s| {
            (self.tried.is_empty() || !self.tried.contains(&s.stats)) && s.has_room()
        })
    }
}

/// A load-balancing algorithm over a fixed candidate set.
///
/// Implement this (and pass a builder to [`crate::PoolOptions::with_selector`]) to add an
/// algorithm. `pick` must be synchronous, must not allocate, and must only return indices of
/// candidates for which [`PickContext::allowed`] is true. A selector is rebuilt with every
/// snapshot (reload, weight or health change), so keep long-lived state in
/// [`crate::ServerStats`], which survives rebuilds.
///
/// To only change *what is measured* (say, in-flight bytes instead of requests), implement
/// [`Load`] instead and reuse [`LeastLoaded`] or [`P2c`].
///
/// ```
/// use std::sync::Arc;
/// use switchyard_balance::{
///     Algorithm, PickContext, Pool, PoolOptions, Selector, ServerSpec, StatsStore, Tried,
/// };
///
/// /// Always the first allowed candidate (an active/passive pair).
/// #[derive(Debug)]
/// struct First(Vec<usize>);
///
/// impl Selector for First {
///     fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
///         self.0.iter().copied().find(|&i| ctx.allowed(i))
///     }
///     fn needs_clock(&self) -> bool {
///         false
///     }
/// }
///
/// let specs = vec![
///     ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1),
///     ServerSpec::new("g", "127.0.0.1:8082".parse().unwrap(), 1),
/// ];
/// let opts = PoolOptions::new(Algorithm::Wrr)
///     .with_selector(|_servers, candidates| Box::new(First(candidates.to_vec())));
/// let pool = Pool::new("api", opts, specs, Arc::new(StatsStore::default()));
/// let snap = pool.snapshot();
/// let first = snap.pick(None, &Tried::default()).unwrap();
/// assert_eq!(first.spec.addr.port(), 8081);
///
/// // A retry never goes back to a tried server.
/// let mut tried = Tried::default();
/// tried.insert(&first.stats);
/// assert_eq!(snap.pick(None, &tried).unwrap().spec.addr.port(), 8082);
/// ```
pub trait Selector: Send + Sync + Debug {
    /// Picks one candidate, or `None` if every candidate was tried.
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize>;

    /// True if `pick` reads [`PickContext::now_ns`]. The default is true; selectors that never
    /// read the time return false and save a clock read per pick.
    fn needs_clock(&self) -> bool {
        true
    }
}

/// Builds the selector for `algorithm` over `candidates` (indices into `servers`). Candidates
/// with weight 0 are ignored; with none left, every pick is `None`.
///
/// ```
/// use std::sync::Arc;
/// use switchyard_balance::{select, Algorithm, Server, ServerSpec, ServerStats};
///
/// let servers: Vec<Server> = (0..3)
///     .map(|i| Server {
///         spec: ServerSpec::new("g", format!("127.0.0.1:{}", 8080 + i).parse().unwrap(), 1),
///         stats: Arc::new(ServerStats::default()),
///     })
///     .collect();
/// let sel = select::build(Algorithm::LeastConn, &servers, &[0, 1, 2]);
/// assert!(!sel.needs_clock());
/// ```
pub fn build(algorithm: Algorithm, servers: &[Server], candidates: &[usize]) -> Box<dyn Selector> {
    build_with_ring(algorithm, HashRing::Maglev, servers, candidates)
}

/// [`build`] with the ring `ring` for [`Algorithm::ConsistentHash`] (ignored by the others).
pub fn build_with_ring(
    algorithm: Algorithm,
    ring: HashRing,
    servers: &[Server],
    candidates: &[usize],
) -> Box<dyn Selector> {
    match (algorithm, ring) {
        (Algorithm::Wrr, _) => Box::new(SmoothWrr::new(servers, candidates)),
        (Algorithm::LeastConn, _) => Box::new(LeastConn::new(servers, candidates)),
        (Algorithm::Ewma, _) => Box::new(Ewma::new(servers, candidates)),
        (Algorithm::ConsistentHash, HashRing::Maglev) => Box::new(Maglev::new(servers, candidates)),
        (Algorithm::ConsistentHash, HashRing::Ketama) => Box::new(Ketama::new(servers, candidates)),
        (Algorithm::Random, _) => Box::new(WeightedRandom::new(servers, candidates)),
    }
}

/// The largest weight sum a selector works with; larger sums are scaled down proportionally
/// (keeps every product in `u64` and the f64 reciprocals exact to ±1).
pub(crate) const MAX_TOTAL_WEIGHT: u64 = 1 << 31;

/// The candidates with a positive weight, as `(server index, weight)`, with weights divided by
/// their greatest common divisor (so 500:100 behaves exactly like 5:1) and scaled down if their
/// sum exceeds [`MAX_TOTAL_WEIGHT`].
pub(crate) fn weighted(servers: &[Server], candidates: &[usize]) -> Vec<(usize, u64)> {
    let mut out: Vec<(usize, u64)> = candidates
        .iter()
        .filter_map(|&i| servers.get(i).map(|s| (i, u64::from(s.spec.weight))))
        .filter(|&(_, w)| w > 0)
        .collect();
    let g = out.iter().fold(0, |g, &(_, w)| gcd(g, w));
    if g > 1 {
        for (_, w) in &mut out {
            *w /= g;
        }
    }
    let total: u64 = out.iter().map(|&(_, w)| w).sum();
    if total > MAX_TOTAL_WEIGHT {
        let n = out.len() as u64;
        let budget = MAX_TOTAL_WEIGHT.saturating_sub(n);
        for (_, w) in &mut out {
            let scaled = u128::from(*w) * u128::from(budget) / u128::from(total);
            *w = 1 + u64::try_from(scaled).unwrap_or(0);
        }
    }
    out
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Places of a hash ring (slots or points) walked past tried servers before [`fallback`].
pub(crate) const MAX_WALK: usize = 64;

/// The first allowed server on a ring of `len` places, from place `start` on and wrapping, where
/// `owner(p)` is the server at place `p`; after [`MAX_WALK`] places, [`fallback`].
#[inline]
pub(crate) fn walk_ring(
    ctx: &PickContext<'_>,
    candidates: &[usize],
    start: usize,
    len: usize,
    owner: impl Fn(usize) -> Option<usize>,
) -> Option<usize> {
    for step in 0..MAX_WALK.min(len) {
        let mut p = start + step;
        if p >= len {
            p -= len;
        }
        let i = owner(p)?;
        if ctx.allowed(i) {
            return Some(i);
        }
    }
    fallback(ctx, candidates)
}

/// A hash selector's pick for a request without a key: smooth WRR over `wrr` (up to 8 turns past
/// tried servers, then [`fallback`]).
#[inline]
pub(crate) fn keyless_pick(
    ctx: &PickContext<'_>,
    candidates: &[usize],
    wrr: Option<&wrr::WrrTree>,
) -> Option<usize> {
    let wrr = wrr?;
    for _ in 0..candidates.len().min(8) {
        let i = wrr.next();
        if ctx.allowed(i) {
            return Some(i);
        }
    }
    fallback(ctx, candidates)
}

/// First allowed candidate with the highest weight: the fallback when a selector's own walk keeps
/// landing on tried servers.
pub(crate) fn fallback(ctx: &PickContext<'_>, candidates: &[usize]) -> Option<usize> {
    candidates
        .iter()
        .copied()
        .filter(|&i| ctx.allowed(i))
        .max_by_key(|&i| (ctx.servers[i].spec.weight, std::cmp::Reverse(i)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_algorithm_message() {
        assert_eq!(
            UnknownAlgorithm("rr".into()).to_string(),
            "unknown algorithm `rr` (expected wrr, least_conn, wlc, ewma, consistent_hash, \
             source_ip_hash, uri_hash or random)"
        );
    }

    #[test]
    fn gcd_and_scaling() {
        assert_eq!(gcd(500, 100), 100);
        assert_eq!(gcd(0, 7), 7);
    }

    #[test]
    fn names_round_trip() {
        for a in [
            Algorithm::Wrr,
            Algorithm::LeastConn,
            Algorithm::Ewma,
            Algorithm::ConsistentHash,
            Algorithm::Random,
        ] {
            assert_eq!(a.name().parse::<Algorithm>(), Ok(a));
            assert_eq!(a.to_string(), a.name());
        }
    }
}
