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
//! Pingora's and APISIX's are). Each level is branch-free: one 64×64→128-bit multiply by the
//! node's share `L/T` held in 64-bit fixed point (rounded up), whose high word is the number of
//! earlier visits that went left and whose carry into the high word, when the share is added
//! once more, says where this visit goes. Exact as long as `2T² < 2⁶⁴`, which the weight cap
//! `MAX_TOTAL_WEIGHT` (`2³¹`) guarantees: the rounding error, below `k / 2⁶⁴`, never
//! reaches the distance `1 / 2T` from a multiple of `1/2T` to the next integer.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{fallback, weighted, PickContext, Selector};
use crate::server::Server;

const LEAF: u32 = 1 << 31;

/// An inner node: 16 bytes, four to a cache line.
#[derive(Debug, Clone, Copy)]
struct Split {
    /// `⌈L · 2⁶⁴ / T⌉`: the left side's share of the node's weight `T`, in fixed point.
    share: u64,
    left: u32,
    right: u32,
}

impl Split {
    /// Where visit `k` of this node goes (`true` = left), and the child's own visit number.
    #[inline(always)]
    fn route(&self, k: u64) -> (bool, u64) {
        // k·L/T + ½ in 64.64 fixed point: the high word is a_k = ⌊kL/T + ½⌋, the visits
        // before k that went left.
        let x = u128::from(k) * u128::from(self.share) + (1u128 << 63);
        let before = (x >> 64) as u64;
        // a_{k+1} − a_k is the carry out of the fraction when the share is added once more.
        let (_, left) = (x as u64).overflowing_add(self.share);
        (left, if left { before } else { k - before })
    }
}

/// The smooth weighted sequence over positions `0..n`, as a tree walked by ticket.
#[derive(Debug)]
pub(crate) struct WrrTree {
    nodes: Vec<Split>,
    root: u32,
    total: u64,
    /// `⌊2⁶⁴ / total⌋` (saturated), for a division-free `ticket mod total`.
    recip: u64,
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
        WrrTree::labelled(&items)
    }

    /// Like [`WrrTree::new`] over `(label, weight)` pairs: picks return the labels (below 2³¹)
    /// instead of positions, which saves a lookup per pick when the labels are server indices.
    pub(crate) fn labelled(items: &[(u32, u64)]) -> Option<WrrTree> {
        let total: u64 = items.iter().map(|&(_, w)| w).sum();
        if total > super::MAX_TOTAL_WEIGHT
            || items.iter().any(|&(label, w)| w == 0 || label & LEAF != 0)
        {
            return None;
        }
        let mut nodes = Vec::with_capacity(items.len());
        let root = build(items, &mut nodes)?;
        Some(WrrTree {
            nodes,
            root,
            total,
            recip: u64::try_from((1u128 << 64) / u128::from(total.max(1))).unwrap_or(u64::MAX),
            ticket: AtomicU64::new(0),
        })
    }

    /// The position (or label) for the next ticket.
    #[inline]
    pub(crate) fn next(&self) -> usize {
        self.next_visit().0
    }

    /// The position (or label) for the next ticket, and how many times that leaf was reached
    /// before in the current period (`0..weight`).
    #[inline]
    pub(crate) fn next_visit(&self) -> (usize, u64) {
        let t = self.ticket.fetch_add(1, Ordering::Relaxed);
        self.descend(self.reduce(t))
    }

    /// The position for visit `k` (reduced modulo the period).
    #[inline]
    pub(crate) fn at(&self, k: u64) -> usize {
        self.descend(k % self.total).0
    }

    /// `t mod total` without a hardware division: the quotient estimated from the reciprocal is
    /// short by at most one (its error is below `t / 2⁶⁴ < 1`), so one correction is exact.
    #[inline(always)]
    fn reduce(&self, t: u64) -> u64 {
        let q = ((u128::from(t) * u128::from(self.recip)) >> 64) as u64;
        let r = t.wrapping_sub(q.wrapping_mul(self.total));
        if r >= self.total {
            r - self.total
        } else {
            r
        }
    }

    /// The period: the sum of the weights.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The position for visit `k` (`k < total`), by descending the tree, and the leaf's own
    /// visit number.
    #[inline]
    fn descend(&self, mut k: u64) -> (usize, u64) {
        let mut child = self.root;
        while child & LEAF == 0 {
            let Some(n) = self.nodes.get(child as usize) else {
                return (0, 0);
            };
            let (left, next) = n.route(k);
            child = if left { n.left } else { n.right };
            k = next;
        }
        ((child & !LEAF) as usize, k)
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
            // ⌈L · 2⁶⁴ / T⌉ < 2⁶⁴ because 0 < L < T.
            let share = ((u128::from(left_weight) << 64).div_ceil(u128::from(total))) as u64;
            nodes.push(Split {
                share,
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

/// Servers of one weight, in candidate order.
#[derive(Debug, Clone, Copy)]
struct Class {
    /// Where the class's servers start in `SmoothWrr::members`.
    start: u32,
    /// How many servers share the weight.
    len: u32,
}

/// Smooth weighted round robin over a fixed candidate set.
///
/// Servers of equal weight form one class: the tree's leaves are the classes (weighted by weight ×
/// servers), and the `j`-th visit of a class within a period goes to its server `j mod len`. Each
/// server still gets exactly its weight per period, and consecutive visits of a class rotate
/// through its servers, so the sequence stays smooth; a pool of many servers with a few distinct
/// weights (the usual case) descends a tree of a few levels instead of `log₂ n`. With all
/// weights distinct, every class holds one server and the sequence is the plain tree's.
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
    /// Over the classes: leaf labels are indices into `classes`.
    tree: Option<WrrTree>,
    classes: Vec<Class>,
    /// Server indices, grouped by class.
    members: Vec<u32>,
    candidates: Vec<usize>,
    /// A candidate ramps (slow start): picks thin its visits.
    ramped: bool,
}

impl SmoothWrr {
    /// Builds the tree over the weight classes of the candidates with a positive weight.
    pub fn new(servers: &[Server], candidates: &[usize]) -> Self {
        let weighted = weighted(servers, candidates);
        // Classes in order of their weight's first appearance, so that with distinct weights the
        // tree (and the sequence) is exactly the per-server one.
        let mut groups: Vec<(u64, Vec<u32>)> = Vec::new();
        let mut class_of: HashMap<u64, usize> = HashMap::new();
        for &(i, w) in &weighted {
            let Ok(i) = u32::try_from(i) else {
                continue;
            };
            let c = *class_of.entry(w).or_insert_with(|| {
                groups.push((w, Vec::new()));
                groups.len() - 1
            });
            if let Some((_, g)) = groups.get_mut(c) {
                g.push(i);
            }
        }
        let mut classes = Vec::with_capacity(groups.len());
        let mut members = Vec::with_capacity(weighted.len());
        let mut items = Vec::with_capacity(groups.len());
        for (w, group) in &groups {
            // A leaf's label is its class's index in `classes`, whatever is skipped.
            let (Ok(start), Ok(len), Ok(label)) = (
                u32::try_from(members.len()),
                u32::try_from(group.len()),
                u32::try_from(classes.len()),
            ) else {
                continue;
            };
            classes.push(Class { start, len });
            members.extend_from_slice(group);
            items.push((label, w.saturating_mul(u64::from(len))));
        }
        SmoothWrr {
            tree: WrrTree::labelled(&items),
            classes,
            members,
            candidates: weighted.iter().map(|&(i, _)| i).collect(),
            ramped: crate::slow_start::any_ramping(servers, candidates),
        }
    }

    /// The server for the next ticket.
    #[inline]
    fn next(&self, tree: &WrrTree) -> Option<usize> {
        let (c, j) = tree.next_visit();
        let class = self.classes.get(c)?;
        // j < weight × len ≤ 2³¹, so the remainder fits a 32-bit division.
        let offset = if class.len == 1 {
            0
        } else {
            (j as u32) % class.len
        };
        self.members
            .get((class.start + offset) as usize)
            .map(|&i| i as usize)
    }
}

/// A tree over `(server index, weight)` whose picks are server indices.
pub(crate) fn labelled_tree(weighted: &[(usize, u64)]) -> Option<WrrTree> {
    let items: Option<Vec<(u32, u64)>> = weighted
        .iter()
        .map(|&(i, w)| u32::try_from(i).ok().map(|i| (i, w)))
        .collect();
    WrrTree::labelled(&items?)
}

impl Selector for SmoothWrr {
    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let tree = self.tree.as_ref()?;
        if self.ramped {
            return crate::slow_start::pick_thinned(ctx, || self.next(tree))
                .or_else(|| fallback(ctx, &self.candidates));
        }
        // A retry may land on tried servers; a few more tickets usually find another, then fall
        // back to a scan.
        for _ in 0..self.candidates.len().min(8) {
            let i = self.next(tree)?;
            if ctx.allowed(i) {
                return Some(i);
            }
        }
        fallback(ctx, &self.candidates)
    }

    /// Only while a candidate ramps (slow start).
    fn needs_clock(&self) -> bool {
        self.ramped
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{ServerSpec, ServerStats, Tried};
    use std::sync::Arc;

    fn servers(weights: &[u32]) -> Vec<Server> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Server {
                spec: ServerSpec::new("g", format!("127.0.0.1:{}", 10_000 + i).parse().unwrap(), w),
                stats: Arc::new(ServerStats::default()),
            })
            .collect()
    }

    fn smooth_seq(weights: &[u32], n: usize) -> Vec<usize> {
        let servers = servers(weights);
        let all: Vec<usize> = (0..servers.len()).collect();
        let wrr = SmoothWrr::new(&servers, &all);
        let tried = Tried::default();
        let ctx = PickContext {
            servers: &servers,
            key: None,
            tried: &tried,
            now_ns: 0,
        };
        (0..n).map(|_| wrr.pick(&ctx).unwrap()).collect()
    }

    #[test]
    fn distinct_weights_give_the_per_server_tree_sequence() {
        let w = [7u32, 3, 11, 1, 5];
        let total: u64 = w.iter().map(|&x| u64::from(x)).sum();
        let plain = seq(&w.map(u64::from), total as usize * 2);
        assert_eq!(smooth_seq(&w, total as usize * 2), plain);
    }

    #[test]
    fn equal_weights_rotate_through_the_class() {
        assert_eq!(smooth_seq(&[4, 4, 4], 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn grouped_weights_keep_exact_shares_and_spacing() {
        // Three classes: weight 3 (servers 0, 2, 5), weight 1 (1, 4), weight 6 (3).
        let w = [3u32, 1, 3, 6, 1, 3];
        let total = w.iter().sum::<u32>() as usize;
        let s = smooth_seq(&w, total * 4);
        for (p, &wp) in w.iter().enumerate() {
            assert_eq!(
                s.iter().filter(|&&x| x == p).count(),
                wp as usize * 4,
                "server {p}"
            );
            // Never twice in a row, except the heaviest server (6 of 17 picks).
            if p != 3 {
                assert!(
                    !s.windows(2).any(|x| x[0] == p && x[1] == p),
                    "server {p} picked twice in a row: {s:?}"
                );
            }
        }
        // The heaviest server's picks are spread: at most 2 in a row.
        assert!(!s.windows(3).any(|x| x.iter().all(|&i| i == 3)), "{s:?}");
    }

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

    /// The exact rule: visit `k` goes left iff `⌊(2(k+1)L + T) / 2T⌋ − ⌊(2kL + T) / 2T⌋ = 1`.
    fn exact(k: u64, l: u64, t: u64) -> (bool, u64) {
        let a = |k: u64| {
            ((2 * u128::from(k) * u128::from(l) + u128::from(t)) / (2 * u128::from(t))) as u64
        };
        let (before, after) = (a(k), a(k + 1));
        if after > before {
            (true, before)
        } else {
            (false, k - before)
        }
    }

    #[test]
    fn fixed_point_route_is_exact() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let totals = [2u64, 3, 6, 7, 1000, 65_537, (1 << 31) - 1, 1 << 31];
        for &t in &totals {
            let mut lefts = vec![1, t / 2, t - 1, (t / 3).max(1)];
            lefts.extend((0..8).map(|_| 1 + next() % (t - 1)));
            for &l in &lefts {
                let share = ((u128::from(l) << 64).div_ceil(u128::from(t))) as u64;
                let node = Split {
                    share,
                    left: 0,
                    right: 0,
                };
                let mut ks = vec![0, 1, t - 1, t / 2, t / 2 + 1];
                ks.extend((0..200).map(|_| next() % t));
                if t <= 1000 {
                    ks.extend(0..t);
                }
                for &k in &ks {
                    assert_eq!(node.route(k), exact(k, l, t), "k={k} L={l} T={t}");
                }
            }
        }
    }

    #[test]
    fn reduce_is_exact() {
        for w in [
            vec![1u64],
            vec![1, 1],
            vec![5, 1],
            vec![7, 3, 11],
            vec![1 << 30, (1 << 30) - 1],
        ] {
            let tree = WrrTree::new(&w).unwrap();
            let mut t = 0x2545_f491_4f6c_dd1du64;
            for probe in [
                0u64,
                1,
                tree.total - 1,
                tree.total,
                u64::MAX,
                u64::MAX - 1,
                1 << 63,
            ] {
                assert_eq!(
                    tree.reduce(probe),
                    probe % tree.total,
                    "{probe} mod {}",
                    tree.total
                );
            }
            for _ in 0..100_000 {
                t = t
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                assert_eq!(tree.reduce(t), t % tree.total, "{t} mod {}", tree.total);
            }
        }
    }

    #[test]
    fn rejects_oversized_or_zero_weights() {
        assert!(WrrTree::new(&[1 << 31, 1]).is_none());
        assert!(WrrTree::new(&[3, 0]).is_none());
        assert!(WrrTree::new(&[1 << 30, 1 << 30]).is_some());
    }
}
