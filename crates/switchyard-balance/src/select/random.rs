//! Weighted random (`random`).
//!
//! Walker/Vose **alias method**: built in O(n), each pick draws one 64-bit number from a
//! per-thread xorshift generator and reads one table slot — O(1) at any pool size, where a binary
//! search over cumulative weights would cost `log₂ n` dependent loads. Stateless across picks, so
//! it needs no shared counter (unlike round robin) and suits many gateways that should not
//! synchronise their sequences.
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
//!
//! let specs = vec![
//!     ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 3),
//!     ServerSpec::new("g", "127.0.0.1:8082".parse().unwrap(), 0), // draining
//! ];
//! let pool = Pool::new("api", PoolOptions::new(Algorithm::Random), specs, Arc::new(StatsStore::default()));
//! let snap = pool.snapshot();
//! assert!((0..100).all(|_| snap.pick(None, &Tried::default()).unwrap().spec.addr.port() == 8081));
//! ```

use super::alias::AliasTable;
use super::{fallback, rng, weighted, PickContext, Selector};
use crate::server::Server;

/// Weighted random selection with an alias table.
#[derive(Debug)]
pub struct WeightedRandom {
    table: AliasTable,
    candidates: Vec<usize>,
    /// A candidate ramps (slow start): picks thin its draws.
    ramped: bool,
}

impl WeightedRandom {
    /// Builds over the candidates with a positive weight.
    pub fn new(servers: &[Server], candidates: &[usize]) -> Self {
        let weighted = weighted(servers, candidates);
        let weights: Vec<u64> = weighted.iter().map(|&(_, w)| w).collect();
        WeightedRandom {
            table: AliasTable::new(&weights),
            candidates: weighted.iter().map(|&(i, _)| i).collect(),
            ramped: crate::slow_start::any_ramping(servers, candidates),
        }
    }
}

impl Selector for WeightedRandom {
    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        if self.ramped {
            let draw = || {
                self.candidates
                    .get(self.table.sample(rng::next_u64())?)
                    .copied()
            };
            return crate::slow_start::pick_thinned(ctx, draw)
                .or_else(|| fallback(ctx, &self.candidates));
        }
        for _ in 0..self.candidates.len().min(8) {
            let i = *self.candidates.get(self.table.sample(rng::next_u64())?)?;
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
