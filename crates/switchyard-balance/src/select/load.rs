//! *What to measure* ([`Load`]) apart from *how to choose by it* ([`LeastLoaded`], [`P2c`]).
//!
//! The split follows tower's `Load` trait: a measure maps a server (its spec and its long-lived
//! [`crate::ServerStats`]) to a comparable cost; a strategy decides which servers to compare.
//! Least connections is [`InFlightPerWeight`] under [`LeastLoaded`] (or [`P2c`] for large
//! pools); peak EWMA is [`PeakEwma`] under [`P2c`]. A new measure — in-flight bytes, a queue
//! depth a health checker reports — is one small `impl Load`, and both strategies work with it:
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_balance::select::{LeastLoaded, Load};
//! use switchyard_balance::{PoolOptions, Algorithm, Pool, Server, ServerSpec, StatsStore, Tried};
//!
//! /// Fewest failures so far (a toy measure).
//! #[derive(Debug, Clone, Copy)]
//! struct Failures;
//!
//! impl Load for Failures {
//!     type Cost = u64;
//!     fn cost(&self, server: &Server, _now_ns: u64) -> u64 {
//!         server.stats.failures()
//!     }
//!     fn needs_clock(&self) -> bool {
//!         false
//!     }
//! }
//!
//! let specs = vec![
//!     ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1),
//!     ServerSpec::new("g", "127.0.0.1:8082".parse().unwrap(), 1),
//! ];
//! let opts = PoolOptions::new(Algorithm::Wrr)
//!     .with_selector(|servers, candidates| Box::new(LeastLoaded::new(Failures, servers, candidates)));
//! let pool = Pool::new("api", opts, specs, Arc::new(StatsStore::default()));
//! let snap = pool.snapshot();
//! let bad = &snap.servers()[0];
//! bad.stats.begin(0).finish(switchyard_balance::Outcome::Failure, 1);
//! for _ in 0..10 {
//!     assert_eq!(snap.pick(None, &Tried::default()).unwrap().spec.addr.port(), 8082);
//! }
//! ```

use std::cmp::Ordering;
use std::fmt::Debug;

use super::alias::AliasTable;
use super::wrr::WrrTree;
use super::{rng, weighted, PickContext, Selector};
use crate::server::Server;
use crate::slow_start::{accepts, any_ramping, RAMP_ONE};

/// A measure of how loaded a server is: lower cost is better.
///
/// `cost` runs on the pick path: it must not allocate or lock; read atomics.
pub trait Load: Send + Sync + Debug {
    /// A comparable cost (an integer, an `f64`, a [`Ratio`]…).
    type Cost: PartialOrd + Copy + Debug;
    /// The server's cost now.
    fn cost(&self, server: &Server, now_ns: u64) -> Self::Cost;
    /// True if `a` is less loaded than `b`: what the strategies call. The default compares
    /// [`Load::cost`]s; a measure may override it to compare without absolute time (as
    /// [`PeakEwma`] does).
    #[inline]
    fn less(&self, a: &Server, b: &Server, now_ns: u64) -> bool {
        self.cost(a, now_ns) < self.cost(b, now_ns)
    }
    /// [`Load::less`] for servers carrying `a_share` and `b_share` of their weights (slow start,
    /// in [`RAMP_ONE`]ths; see [`Server::ramp`]): a ramping server should look proportionally
    /// more loaded. The default ignores the shares.
    #[inline]
    fn less_ramped(&self, a: &Server, a_share: u32, b: &Server, b_share: u32, now_ns: u64) -> bool {
        let _ = (a_share, b_share);
        self.less(a, b, now_ns)
    }
    /// True if `cost`/`less` read `now_ns` (the default); false saves a clock read per pick
    /// (`now_ns` is then 0).
    fn needs_clock(&self) -> bool {
        true
    }
}

/// A load relative to a weight, compared by cross-multiplication (`a.load × b.weight` vs
/// `b.load × a.weight`): no division per pick, exact for integers.
///
/// ```
/// use switchyard_balance::select::Ratio;
/// // 3 in flight on weight 2 is more loaded than 1 in flight on weight 1.
/// assert!(Ratio { load: 3, weight: 2 } > Ratio { load: 1, weight: 1 });
/// assert!(Ratio { load: 2, weight: 2 } == Ratio { load: 1, weight: 1 });
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    /// The load (e.g. requests in flight).
    pub load: u64,
    /// The weight it is shared by.
    pub weight: u64,
}

impl Ratio {
    #[inline]
    fn sides(&self, other: &Ratio) -> (u128, u128) {
        (
            u128::from(self.load) * u128::from(other.weight),
            u128::from(other.load) * u128::from(self.weight),
        )
    }
}

impl PartialEq for Ratio {
    fn eq(&self, other: &Ratio) -> bool {
        let (a, b) = self.sides(other);
        a == b
    }
}

impl PartialOrd for Ratio {
    #[inline]
    fn partial_cmp(&self, other: &Ratio) -> Option<Ordering> {
        let (a, b) = self.sides(other);
        Some(a.cmp(&b))
    }
}

/// Requests in flight relative to weight: weighted least connections (WLC). With equal weights,
/// plain least connections.
///
/// ```
/// use std::sync::Arc;
/// use switchyard_balance::select::{InFlightPerWeight, Load};
/// use switchyard_balance::{Server, ServerSpec, ServerStats};
///
/// let s = Server {
///     spec: ServerSpec::new("g", "127.0.0.1:80".parse().unwrap(), 4),
///     stats: Arc::new(ServerStats::default()),
/// };
/// let _guard = s.stats.begin(0);
/// let c = InFlightPerWeight.cost(&s, 0);
/// assert_eq!((c.load, c.weight), (1, 4));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct InFlightPerWeight;

impl Load for InFlightPerWeight {
    type Cost = Ratio;
    #[inline]
    fn cost(&self, server: &Server, _now_ns: u64) -> Ratio {
        Ratio {
            load: u64::from(server.stats.in_flight()),
            weight: u64::from(server.spec.weight),
        }
    }
    /// In flight against the weight times its share: a server at 10% of its weight is as
    /// loaded with one request as its full self with ten.
    #[inline]
    fn less_ramped(&self, a: &Server, a_share: u32, b: &Server, b_share: u32, _now: u64) -> bool {
        let ratio = |s: &Server, share: u32| Ratio {
            load: u64::from(s.stats.in_flight()) * u64::from(RAMP_ONE),
            weight: u64::from(s.spec.weight) * u64::from(share),
        };
        ratio(a, a_share) < ratio(b, b_share)
    }
    fn needs_clock(&self) -> bool {
        false
    }
}

/// Peak-EWMA latency × (in-flight + 1), in nanoseconds (the tower/Linkerd measure).
///
/// Failures are penalised by [`crate::ServerStats`], which charges a failed request at least
/// [`crate::stats::FAILURE_PENALTY_NS`] (1 s): a server answering fast 503s looks slow and loses.
/// A server that has never finished a request (no estimate yet) is compared with another server
/// by requests in flight alone (least-connections between the two): it is tried as soon as it is
/// less busy than its rival, but never assumed faster than a measured server, so it cannot take
/// more than an even share before its first answer. Its [`Load::cost`] (what an operator reads)
/// is [`PeakEwma::default_rtt_ns`] per request in flight.
///
/// ```
/// use std::sync::Arc;
/// use switchyard_balance::select::{Load, PeakEwma};
/// use switchyard_balance::{Outcome, Server, ServerSpec, ServerStats};
///
/// let s = Server {
///     spec: ServerSpec::new("g", "127.0.0.1:80".parse().unwrap(), 1),
///     stats: Arc::new(ServerStats::default()),
/// };
/// let ewma = PeakEwma::default();
/// assert_eq!(ewma.cost(&s, 0), ewma.default_rtt_ns);
/// s.stats.begin(0).finish(Outcome::Success, 50_000_000);
/// assert_eq!(ewma.cost(&s, 50_000_000), 50_000_000.0);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PeakEwma {
    /// Latency assumed for a server with no estimate yet (default 10 ms).
    pub default_rtt_ns: f64,
}

impl PeakEwma {
    /// The default assumed latency of an unprobed server.
    pub const DEFAULT_RTT_NS: f64 = 10_000_000.0;
}

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma {
            default_rtt_ns: Self::DEFAULT_RTT_NS,
        }
    }
}

impl PeakEwma {
    /// Cost as of the estimate's last update, and that update's time (`None`: no estimate).
    #[inline]
    fn undecayed(&self, server: &Server) -> (f64, Option<u64>) {
        let stats = &server.stats;
        let queue = f64::from(stats.in_flight()) + 1.0;
        if stats.requests() == 0 {
            (self.default_rtt_ns * queue, None)
        } else {
            let (v, stamp) = stats.ewma_raw();
            (v * queue, Some(stamp))
        }
    }
}

fn decay(dt_ns: u64) -> f64 {
    (-(dt_ns as f64) / crate::stats::EWMA_DECAY_NS).exp()
}

/// `ca` (stamped `ta`) below `cb` (stamped `tb`), both decayed to the later stamp. Decay is at
/// most 1, so when the older estimate is already the smaller one the answer is known without
/// the `exp` (about half of the comparisons).
#[inline]
fn decayed_less(ca: f64, ta: u64, cb: f64, tb: u64) -> bool {
    if ta < tb {
        ca < cb || ca * decay(tb - ta) < cb
    } else if tb < ta {
        ca < cb && ca < cb * decay(ta - tb)
    } else {
        ca < cb
    }
}

/// `a` less loaded than `b` by `load`, with their slow-start shares if the selector ramps.
#[inline]
fn less_at<L: Load>(load: &L, ramped: bool, a: &Server, b: &Server, now_ns: u64) -> bool {
    if ramped {
        load.less_ramped(a, a.ramp(now_ns), b, b.ramp(now_ns), now_ns)
    } else {
        load.less(a, b, now_ns)
    }
}

/// True if the candidate at `pos` passes its ramp's thinning (always when it does not ramp).
#[inline]
fn ramp_accepts(ctx: &PickContext<'_>, candidates: &[usize], pos: usize) -> bool {
    candidates
        .get(pos)
        .and_then(|&i| ctx.servers.get(i))
        .is_none_or(|s| accepts(s.ramp(ctx.now_ns)))
}

impl Load for PeakEwma {
    type Cost = f64;
    /// The cost decayed to `now_ns` (what an operator would read).
    #[inline]
    fn cost(&self, server: &Server, now_ns: u64) -> f64 {
        let stats = &server.stats;
        let rtt = if stats.requests() == 0 {
            self.default_rtt_ns
        } else {
            stats.ewma_nanos(now_ns)
        };
        rtt * (f64::from(stats.in_flight()) + 1.0)
    }
    /// Compares without the clock: from any `now` on, both estimates decay by the same factor,
    /// so only the older one needs decaying to the newer one's stamp (one `exp`, no clock read).
    /// When either server has no estimate yet, the two are compared by requests in flight.
    #[inline]
    fn less(&self, a: &Server, b: &Server, _now_ns: u64) -> bool {
        let (ca, ta) = self.undecayed(a);
        let (cb, tb) = self.undecayed(b);
        match (ta, tb) {
            (Some(ta), Some(tb)) => decayed_less(ca, ta, cb, tb),
            _ => a.stats.in_flight() < b.stats.in_flight(),
        }
    }
    /// The cost divided by the share: a server at 10% of its weight looks ten times as
    /// loaded. Without estimates, (in flight + 1) divided by the share.
    #[inline]
    fn less_ramped(&self, a: &Server, a_share: u32, b: &Server, b_share: u32, _now: u64) -> bool {
        let (sa, sb) = (f64::from(a_share.max(1)), f64::from(b_share.max(1)));
        let (ca, ta) = self.undecayed(a);
        let (cb, tb) = self.undecayed(b);
        match (ta, tb) {
            (Some(ta), Some(tb)) => decayed_less(ca / sa, ta, cb / sb, tb),
            _ => {
                let queue = |s: &Server| f64::from(s.stats.in_flight()) + 1.0;
                queue(a) * sb < queue(b) * sa
            }
        }
    }
    fn needs_clock(&self) -> bool {
        false
    }
}

/// Full scan: the allowed candidate with the lowest cost. Ties go to the first one found from a
/// start that follows the smooth weighted round-robin sequence, so equally loaded servers share
/// traffic by weight (as NGINX's `least_conn` falls back to weighted round robin).
///
/// Cost is linear in the number of candidates; [`super::LeastConn`] switches to [`P2c`] above
/// [`super::least_conn::SCAN_LIMIT`].
#[derive(Debug)]
pub struct LeastLoaded<L> {
    load: L,
    candidates: Vec<usize>,
    start: Option<WrrTree>,
    /// A candidate ramps (slow start): loads are compared with shares, tie-breaks thinned.
    ramped: bool,
}

impl<L: Load> LeastLoaded<L> {
    /// Builds over the candidates with a positive weight.
    pub fn new(load: L, servers: &[Server], candidates: &[usize]) -> Self {
        let weighted = weighted(servers, candidates);
        let weights: Vec<u64> = weighted.iter().map(|&(_, w)| w).collect();
        LeastLoaded {
            load,
            candidates: weighted.iter().map(|&(i, _)| i).collect(),
            start: WrrTree::new(&weights),
            ramped: any_ramping(servers, candidates),
        }
    }

    /// The tie-break's start, thinned like `wrr` when a candidate ramps.
    #[inline]
    fn start<const RAMPED: bool>(&self, tree: &WrrTree, ctx: &PickContext<'_>) -> usize {
        let mut p = tree.next();
        if RAMPED {
            for _ in 0..4 {
                if ramp_accepts(ctx, &self.candidates, p) {
                    break;
                }
                p = tree.next();
            }
        }
        p
    }

    #[inline]
    fn scan<const RAMPED: bool>(
        &self,
        ctx: &PickContext<'_>,
        part: &[usize],
        best: &mut Option<usize>,
        check: bool,
    ) {
        for &i in part {
            if check && !ctx.allowed(i) {
                continue;
            }
            let Some(server) = ctx.servers.get(i) else {
                continue;
            };
            let better = match *best {
                Some(b) => ctx
                    .servers
                    .get(b)
                    .is_some_and(|b| less_at(&self.load, RAMPED, server, b, ctx.now_ns)),
                None => true,
            };
            if better {
                *best = Some(i);
            }
        }
    }
}

impl<L: Load> LeastLoaded<L> {
    /// A pick; `RAMPED` (slow start under way) is a constant so that the usual pick is
    /// compiled without the ramp's branches.
    #[inline]
    fn pick_with<const RAMPED: bool>(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let start = self
            .start::<RAMPED>(self.start.as_ref()?, ctx)
            .min(self.candidates.len());
        let (tail, head) = self.candidates.split_at(start);
        let check = !ctx.tried.is_empty();
        let mut best = None;
        self.scan::<RAMPED>(ctx, head, &mut best, check);
        self.scan::<RAMPED>(ctx, tail, &mut best, check);
        best
    }
}

impl<L: Load> Selector for LeastLoaded<L> {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        if self.ramped {
            self.pick_with::<true>(ctx)
        } else {
            self.pick_with::<false>(ctx)
        }
    }
    fn needs_clock(&self) -> bool {
        self.load.needs_clock() || self.ramped
    }
}

/// Power of two choices: draw two distinct candidates at random (weighted by server weight, with
/// an alias table) and take the one with the lower cost; a tie goes to the first draw, so equally
/// loaded servers share traffic by weight. O(1) per pick at any pool size, and it avoids the herd
/// effect of always choosing the global minimum from stale counts (Mitzenmacher; Envoy PR #9218:
/// two choices are enough).
#[derive(Debug)]
pub struct P2c<L> {
    load: L,
    candidates: Vec<usize>,
    table: AliasTable,
    /// A candidate ramps (slow start): loads are compared with shares, draws thinned.
    ramped: bool,
}

impl<L: Load> P2c<L> {
    /// Builds over the candidates with a positive weight.
    pub fn new(load: L, servers: &[Server], candidates: &[usize]) -> Self {
        let weighted = weighted(servers, candidates);
        let weights: Vec<u64> = weighted.iter().map(|&(_, w)| w).collect();
        P2c {
            load,
            candidates: weighted.iter().map(|&(i, _)| i).collect(),
            table: AliasTable::new(&weights),
            ramped: any_ramping(servers, candidates),
        }
    }

    /// One weighted draw, thinned like `random` when a candidate ramps.
    #[inline]
    fn sample<const RAMPED: bool>(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let mut p = self.table.sample(rng::next_u64())?;
        if RAMPED {
            for _ in 0..4 {
                if ramp_accepts(ctx, &self.candidates, p) {
                    break;
                }
                p = self.table.sample(rng::next_u64())?;
            }
        }
        Some(p)
    }

    /// Two distinct positions (the second differs from the first whenever n > 1).
    #[inline]
    fn draw_two<const RAMPED: bool>(&self, ctx: &PickContext<'_>) -> Option<(usize, usize)> {
        let n = self.table.len();
        let a = self.sample::<RAMPED>(ctx)?;
        for _ in 0..3 {
            let b = self.sample::<RAMPED>(ctx)?;
            if b != a {
                return Some((a, b));
            }
        }
        // Heavily skewed weights: take a uniform other position.
        let off = 1 + rng::below((rng::next_u64() >> 32) as u32, n.saturating_sub(1));
        Some((a, (a + off) % n.max(1)))
    }
}

impl<L: Load> P2c<L> {
    /// A pick; `RAMPED` (slow start under way) is a constant so that the usual pick is
    /// compiled without the ramp's branches.
    #[inline]
    fn pick_with<const RAMPED: bool>(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let servers = ctx.servers;
        if self.candidates.len() == 1 {
            let i = self.candidates[0];
            return ctx.allowed(i).then_some(i);
        }
        for _ in 0..4 {
            let (pa, pb) = self.draw_two::<RAMPED>(ctx)?;
            let (a, b) = (*self.candidates.get(pa)?, *self.candidates.get(pb)?);
            match (ctx.allowed(a), ctx.allowed(b)) {
                (true, true) => {
                    let (sa, sb) = (servers.get(a)?, servers.get(b)?);
                    return Some(if less_at(&self.load, RAMPED, sb, sa, ctx.now_ns) {
                        b
                    } else {
                        a
                    });
                }
                (true, false) => return Some(a),
                (false, true) => return Some(b),
                (false, false) => {}
            }
        }
        // Most candidates were tried: scan what is left.
        let mut best: Option<usize> = None;
        for &i in &self.candidates {
            if !ctx.allowed(i) {
                continue;
            }
            let better = match best {
                Some(b) => less_at(
                    &self.load,
                    RAMPED,
                    servers.get(i)?,
                    servers.get(b)?,
                    ctx.now_ns,
                ),
                None => true,
            };
            if better {
                best = Some(i);
            }
        }
        best
    }
}

impl<L: Load> Selector for P2c<L> {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        if self.ramped {
            self.pick_with::<true>(ctx)
        } else {
            self.pick_with::<false>(ctx)
        }
    }
    fn needs_clock(&self) -> bool {
        self.load.needs_clock() || self.ramped
    }
}
