//! Selectors: *what to pick*, given the candidates of a snapshot.
//!
//! A [`Selector`] is built once per snapshot over the candidate servers and then answers picks
//! concurrently without locks. Dynamic state it needs (in-flight counts, latency) is read from the
//! servers' [`crate::ServerStats`], which outlive the selector.

use std::fmt::Debug;

use crate::pool::Server;
use crate::tried::Tried;

mod wrr;

pub use wrr::SmoothWrr;

/// Load-balancing algorithms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// What a selector sees for one pick.
#[derive(Debug)]
pub struct PickContext<'a> {
    /// Every server of the snapshot; selectors return an index into it.
    pub servers: &'a [Server],
    /// A hash of the request key, for hashing selectors; `None` when the key is missing.
    pub key: Option<u64>,
    /// Servers this request already tried: never pick them again.
    pub tried: &'a Tried,
    /// Now, from the pool's clock.
    pub now_ns: u64,
}

impl PickContext<'_> {
    /// True if server `i` may be picked (not tried yet).
    pub fn allowed(&self, i: usize) -> bool {
        self.servers
            .get(i)
            .is_some_and(|s| !self.tried.contains(&s.stats))
    }
}

/// A load-balancing algorithm over a fixed candidate set.
///
/// Implement this (and pass a builder to [`crate::PoolOptions::with_selector`]) to add an
/// algorithm. `pick` must be synchronous, must not allocate, and must only return indices of
/// candidates for which [`PickContext::allowed`] is true.
///
/// ```
/// use switchyard_balance::{PickContext, Selector};
///
/// /// Always the first allowed candidate.
/// #[derive(Debug)]
/// struct First(Vec<usize>);
///
/// impl Selector for First {
///     fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
///         self.0.iter().copied().find(|&i| ctx.allowed(i))
///     }
/// }
/// ```
pub trait Selector: Send + Sync + Debug {
    /// Picks one candidate, or `None` if every candidate was tried.
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize>;
}

/// Builds the selector for `algorithm` over `candidates` (indices into `servers`).
pub fn build(algorithm: Algorithm, servers: &[Server], candidates: &[usize]) -> Box<dyn Selector> {
    match algorithm {
        // Other algorithms are added alongside; until then they use smooth WRR.
        Algorithm::Wrr
        | Algorithm::LeastConn
        | Algorithm::Ewma
        | Algorithm::ConsistentHash
        | Algorithm::Random => Box::new(SmoothWrr::new(servers, candidates)),
    }
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
