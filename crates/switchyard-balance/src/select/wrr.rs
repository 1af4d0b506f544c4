//! Smooth weighted round robin, lock-free.
//!
//! NGINX's smooth WRR walks every server per pick under a lock. Here the candidates sit at the
//! leaves of a balanced binary tree whose nodes know the total weight on each side. A pick takes
//! one ticket `k` from an atomic counter and descends: a node with side weights `L` and `R`
//! (`T = L + R`) sends its `k`-th visit left iff `⌊(k+1)L/T + ½⌋ − ⌊kL/T + ½⌋ = 1`, the
//! best-balanced (Sturmian) split of `T` visits into `L` and `R`, and hands the child its own
//! visit number. Each server thus receives exactly its weight's share of every period of
//! `Σw` picks, spread as evenly as a two-way split allows at each level: weights 5:1 give
//! `a a a b a a`, as NGINX does; 100:1:1 gives runs of at most 51 `a`s with `b` and `c`
//! alternating.
//!
//! Cost: one atomic add and one `u64` remainder for the ticket, then `⌈log₂ n⌉` levels of the
//! tree: O(log n), with memory O(n) whatever the weights (no table expanded by weight, as
//! Pingora's and APISIX's are). Each level
//! needs a quotient and remainder by the node's `2T`; instead of a hardware division it
//! multiplies by a reciprocal precomputed in `f64` and corrects the estimate by one step (exact:
//! weights are normalised so that every numerator stays below 2⁶³ and the estimate within ±1).
//!
//! Weights are divided by their greatest common divisor first, so 500:100 has the period and
//! sequence of 5:1.
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
//!
//! let specs = vec![
//!     ServerSpec::new("g", "10.0.0.1:80".parse().unwrap(), 500),
//!     ServerSpec::new("g", "10.0.0.2:80".parse().unwrap(), 100),
//! ];
//! let pool = Pool::new("api", PoolOptions::new(Algorithm::Wrr), specs, Arc::new(StatsStore::default()));
//! let snap = pool.snapshot();
//! let seq: String = (0..6)
//!     .map(|_| match snap.pick(None, &Tried::default()).unwrap().spec.addr.ip().to_string().as_str() {
//!         "10.0.0.1" => 'a',
//!         _ => 'b',
//!     })
//!     .collect();
//! assert_eq!(seq, "aaabaa");
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use super::{fallback, weighted, PickContext, Selector};
use crate::pool::Server;

const LEAF: u32 = 1 << 31;

#[derive(Debug, Clone, Copy)]
struct Split {
    left_weight: u64,
    /// `2T`.
    two_total: u64,
    /// `1 / 2T`, for the division-free quotient.
    inv: f64,
    left: u32,
    right: u32,
}

/// `(num / d, num % d)` from a reciprocal estimate, corrected; exact for any input (falls back
/// to a hardware division if the estimate is off by more than one).
#[inline(always)]
fn divmod(num: u64, d: u64, inv: f64) -> (u64, u64) {
    let q = (num as f64 * inv) as u64;
    let Some(p) = q.checked_mul(d) else {
        return (num / d, num % d);
    };
    if p > num {
        let p1 = p - d; // q ≥ 1 here because p > num ≥ 0
        if p1 <= num {
            return (q - 1, num - p1);
        }
        return (num / d, num % d);
    }
    let r = num - p;
    if r < d {
        (q, r)
    } else if r - d < d {
        (q + 1, r - d)
    } else {
        (num / d, num % d)
    }
}

/// The smooth weighted sequence over positions `0..n`, as a tree walked by ticket.
#[derive(Debug)]
pub(crate) struct WrrTree {
    nodes: Vec<Split>,
    root: u32,
    total: u64,
    ticket: AtomicU64,
}

impl WrrTree {
    /// `weights` must all be positive and sum to at most [`super::MAX_TOTAL_WEIGHT`]; `None`
    /// when empty.
    pub(crate) fn new(weights: &[u64]) -> Option<WrrTree> {
        let items: Vec<(u32, u64)> = weights
            .iter()
            .enumerate()
            .map(|(p, &w)| (p as u32, w))
            .collect();
        let mut nodes = Vec::with_capacity(items.len());
        let root = build(&items, &mut nodes)?;
        Some(WrrTree {
            nodes,
            root,
            total: weights.iter().sum(),
            ticket: AtomicU64::new(0),
        })
    }

    /// The position for the next ticket.
    #[inline]
    pub(crate) fn next(&self) -> usize {
        let k = self.ticket.fetch_add(1, Ordering::Relaxed) % self.total;
        self.descend(k)
    }

    /// The position for visit `k` (reduced modulo the period).
    #[inline]
    pub(crate) fn at(&self, k: u64) -> usize {
        self.descend(k % self.total)
    }

    /// The period: the sum of the weights.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The position for visit `k` (`k < total`), by descending the tree.
    #[inline]
    fn descend(&self, mut k: u64) -> usize {
        let mut child = self.root;
        while child & LEAF == 0 {
            let Some(n) = self.nodes.get(child as usize) else {
                return 0;
            };
            // a_k = ⌊(2kL + T) / 2T⌋ visits went left before visit k.
            let num = 2 * k * n.left_weight + n.two_total / 2;
            let (before, rem) = divmod(num, n.two_total, n.inv);
            if rem + 2 * n.left_weight >= n.two_total {
                child = n.left;
                k = before;
            } else {
                child = n.right;
                k -= before;
            }
        }
        (child & !LEAF) as usize
    }
}

fn build(items: &[(u32, u64)], nodes: &mut Vec<Split>) -> Option<u32> {
    match items {
        [] => None,
        [(p, _)] => Some(LEAF | *p),
        _ => {
            let mid = items.len() / 2;
            let left_weight: u64 = items[..mid].iter().map(|&(_, w)| w).sum();
            let total: u64 = items.iter().map(|&(_, w)| w).sum();
            let me = nodes.len();
            nodes.push(Split {
                left_weight,
                two_total: 2 * total,
                inv: 1.0 / (2 * total) as f64,
                left: 0,
                right: 0,
            });
            let left = build(&items[..mid], nodes)?;
            let right = build(&items[mid..], nodes)?;
            nodes[me].left = left;
            nodes[me].right = right;
            Some(me as u32)
        }
    }
}

/// Smooth weighted round robin over a fixed candidate set.
///
/// ```
/// use std::sync::Arc;
/// use switchyard_balance::{select::SmoothWrr, PickContext, Selector, Server, ServerSpec, ServerStats, Tried};
///
/// let servers: Vec<Server> = [5, 1]
///     .iter()
///     .enumerate()
///     .map(|(i, &w)| Server {
///         spec: ServerSpec::new("g", format!("127.0.0.1:{}", 8080 + i).parse().unwrap(), w),
///         stats: Arc::new(ServerStats::default()),
///     })
///     .collect();
/// let wrr = SmoothWrr::new(&servers, &[0, 1]);
/// let tried = Tried::default();
/// let ctx = PickContext { servers: &servers, key: None, tried: &tried, now_ns: 0 };
/// let seq: Vec<usize> = (0..6).map(|_| wrr.pick(&ctx).unwrap()).collect();
/// assert_eq!(seq, [0, 0, 0, 1, 0, 0]);
/// ```
#[derive(Debug)]
pub struct SmoothWrr {
    tree: Option<WrrTree>,
    candidates: Vec<usize>,
}

impl SmoothWrr {
    /// Builds the tree over the candidates with a positive weight.
    pub fn new(servers: &[Server], candidates: &[usize]) -> Self {
        let weighted = weighted(servers, candidates);
        let weights: Vec<u64> = weighted.iter().map(|&(_, w)| w).collect();
        SmoothWrr {
            tree: WrrTree::new(&weights),
            candidates: weighted.iter().map(|&(i, _)| i).collect(),
        }
    }
}

impl Selector for SmoothWrr {
    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let tree = self.tree.as_ref()?;
        // A retry may land on tried servers; a few more tickets usually find another, then fall
        // back to a scan.
        for _ in 0..self.candidates.len().min(8) {
            let i = *self.candidates.get(tree.next())?;
            if ctx.allowed(i) {
                return Some(i);
            }
        }
        fallback(ctx, &self.candidates)
    }

    fn needs_clock(&self) -> bool {
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_does_not_grow_with_weights() {
        // Weights summing to millions still use one node per server pair.
        let t = WrrTree::new(&[5_000_000, 1_000_000, 3]).unwrap();
        assert_eq!(t.nodes.len(), 2);
        let picks: Vec<usize> = (0..12).map(|_| t.next()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 10);
    }

    fn seq(weights: &[u64], n: usize) -> Vec<usize> {
        let t = WrrTree::new(weights).unwrap();
        (0..n).map(|_| t.next()).collect()
    }

    #[test]
    fn five_to_one() {
        assert_eq!(seq(&[5, 1], 6), [0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn exact_shares_per_period() {
        let w = [7u64, 3, 11, 1, 5];
        let total: u64 = w.iter().sum();
        let s = seq(&w, total as usize * 3);
        for (p, &wp) in w.iter().enumerate() {
            assert_eq!(s.iter().filter(|&&x| x == p).count() as u64, wp * 3);
        }
    }

    #[test]
    fn divmod_is_exact() {
        for d in [2u64, 3, 12, 1 << 20, (1 << 32) - 2, (1 << 32) + 6] {
            let inv = 1.0 / d as f64;
            for num in [
                0u64,
                1,
                d - 1,
                d,
                d + 1,
                12_345_678_901,
                (1 << 62) + 17,
                u64::MAX,
            ] {
                assert_eq!(divmod(num, d, inv), (num / d, num % d), "{num} / {d}");
            }
        }
    }
}
