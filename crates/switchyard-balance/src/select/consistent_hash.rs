//! Consistent hashing (`consistent_hash`, `source_ip_hash`, `uri_hash`): a weighted **Maglev**
//! table, the default ring ([`super::HashRing::Maglev`]). A fleet moving from NGINX that must keep
//! its key → server mapping uses [`super::Ketama`] instead (`hash_ring = "ketama"`).
//!
//! Why Maglev rather than a Ketama ring: a pick is one multiply and one table read, O(1) at any
//! pool size, where a ring of `160 × n` points needs a binary search (21 dependent cache misses
//! at 10,000 servers); the table is one flat array of server indices (2 bytes a slot up to
//! 65,536 servers), cheap to build (about 0.1–0.2 s at 10,000 servers) and spreads keys within about 1% of the weights. The price is slightly more
//! than minimal disruption: removing one of `n` servers moves a little more than `1/n` of the
//! keys (about 11% for 1 of 10, where a ring moves 10%).
//!
//! Construction (Eisenbud et al., NSDI 2016): each server gets a permutation of the `M` slots
//! (`M` prime, at least 65,537 and at least 100 × the servers) from an offset and a skip derived
//! from [`crate::hash_key`] of its *identity*, so every gateway of a fleet builds the same table
//! from the same servers, whatever their order in the file. Servers take turns claiming their
//! next free preferred slot; weights set how often a server's turn comes (the turns follow the
//! smooth weighted round-robin sequence over the servers in identity-hash order), so shares
//! follow weights even when they differ by orders of magnitude.
//!
//! A pick mixes the key and reads its slot. When that server was already tried by the request,
//! the pick walks to the following slots until it meets a server not tried — the same fallback
//! on every gateway. **A missing key (`None`) falls back to smooth weighted round robin**: a
//! request without the header or cookie is still served, spread by weight, rather than all such
//! requests landing on one server.
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_balance::{hash_key, Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
//!
//! let specs: Vec<ServerSpec> = (1..=4)
//!     .map(|i| ServerSpec::new("g", format!("10.0.0.{i}:80").parse().unwrap(), 1))
//!     .collect();
//! let pool = Pool::new("api", PoolOptions::new(Algorithm::ConsistentHash), specs, Arc::new(StatsStore::default()));
//! let snap = pool.snapshot();
//! let key = Some(hash_key(b"user-42"));
//! let owner = snap.pick(key, &Tried::default()).unwrap();
//! assert_eq!(owner.spec.id, snap.pick(key, &Tried::default()).unwrap().spec.id);
//!
//! // The owner failed: the retry goes to another server, the same one every time.
//! let mut tried = Tried::default();
//! tried.insert(&owner.stats);
//! let next = snap.pick(key, &tried).unwrap();
//! assert_ne!(next.spec.id, owner.spec.id);
//! ```

use super::rng::mix64;
use super::wrr::WrrTree;
use super::{keyless_pick, walk_ring, weighted, PickContext, Selector};
use crate::hash::hash_key;
use crate::server::Server;

/// Smallest table size (a prime).
pub const MIN_TABLE_SIZE: u64 = 65_537;
/// Slots per server at least (the table is the smallest prime ≥ this × servers).
pub const SLOTS_PER_SERVER: u64 = 100;

/// Slot → server index: two bytes a slot while the snapshot has at most 65,536 servers (the table
/// is 100 slots per server, so halving it keeps more of it in cache at 10,000 servers), four
/// above. Holding server indices rather than candidate positions saves a dependent read per pick.
#[derive(Debug)]
enum Slots {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Slots {
    /// `table` holds positions in `candidates`; the slots hold the servers they name.
    fn new(table: &[u32], candidates: &[usize], servers: usize) -> Slots {
        let server = |p: u32| candidates.get(p as usize).copied().unwrap_or(0);
        if servers <= usize::from(u16::MAX) + 1 {
            Slots::Narrow(table.iter().map(|&p| server(p) as u16).collect())
        } else {
            Slots::Wide(table.iter().map(|&p| server(p) as u32).collect())
        }
    }

    #[inline(always)]
    fn len(&self) -> usize {
        match self {
            Slots::Narrow(t) => t.len(),
            Slots::Wide(t) => t.len(),
        }
    }

    #[inline(always)]
    fn get(&self, slot: usize) -> Option<usize> {
        match self {
            Slots::Narrow(t) => t.get(slot).map(|&p| usize::from(p)),
            Slots::Wide(t) => t.get(slot).map(|&p| p as usize),
        }
    }
}

/// Weighted Maglev consistent hashing; smooth WRR for requests without a key.
#[derive(Debug)]
pub struct Maglev {
    /// Slot → server index.
    table: Slots,
    candidates: Vec<usize>,
    wrr: Option<WrrTree>,
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// The table size for `n` servers: the smallest prime ≥ max(65,537, 100 n).
pub fn table_size(n: usize) -> u64 {
    let mut m = MIN_TABLE_SIZE.max(SLOTS_PER_SERVER.saturating_mul(n as u64));
    while !is_prime(m) {
        m += 1;
    }
    m
}

impl Maglev {
    /// Builds the table over the candidates with a positive weight.
    pub fn new(servers: &[Server], candidates: &[usize]) -> Self {
        let weighted = weighted(servers, candidates);
        let weights: Vec<u64> = weighted.iter().map(|&(_, w)| w).collect();
        let candidates: Vec<usize> = weighted.iter().map(|&(i, _)| i).collect();
        let wrr = super::wrr::labelled_tree(&weighted);
        if candidates.is_empty() {
            return Maglev {
                table: Slots::Narrow(Vec::new()),
                candidates,
                wrr,
            };
        }
        let m = table_size(candidates.len());
        // Each server's permutation: slot_j = (offset + j × skip) mod m.
        let mut cursor = Vec::with_capacity(candidates.len());
        let mut skip = Vec::with_capacity(candidates.len());
        let mut ties = Vec::with_capacity(candidates.len());
        for &i in &candidates {
            let h = hash_key(servers[i].spec.id.as_str().as_bytes());
            cursor.push(h % m);
            skip.push(mix64(h) % (m - 1) + 1);
            ties.push(h);
        }
        let mut table = vec![0u32; m as usize];
        // Probes test a bitmap (m / 8 bytes, cache-resident) rather than the table itself.
        let mut taken = vec![0u64; (m as usize).div_ceil(64)];
        // Turns follow the smooth weighted round-robin sequence over the servers in
        // identity-hash order: each server claims slots in proportion to its weight, evenly
        // spread, and the order does not depend on the order of the configuration.
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by_key(|&p| (ties[p], p));
        let ordered: Vec<u64> = order.iter().map(|&p| weights[p]).collect();
        let Some(turns) = WrrTree::new(&ordered) else {
            return Maglev {
                table: Slots::Narrow(Vec::new()),
                candidates,
                wrr,
            };
        };
        let mut filled = 0u64;
        let mut turn = 0u64;
        while filled < m {
            let Some(&p) = order.get(turns.at(turn)) else {
                break;
            };
            turn += 1;
            if turn == turns.total() {
                turn = 0;
            }
            // m is prime and 0 < skip < m, so the walk visits every slot: it finds a free one.
            loop {
                let slot = cursor[p] as usize;
                cursor[p] += skip[p];
                if cursor[p] >= m {
                    cursor[p] -= m;
                }
                let (word, bit) = (slot / 64, 1u64 << (slot % 64));
                if taken[word] & bit == 0 {
                    taken[word] |= bit;
                    table[slot] = p as u32;
                    filled += 1;
                    break;
                }
            }
        }
        Maglev {
            table: Slots::new(&table, &candidates, servers.len()),
            candidates,
            wrr,
        }
    }

    /// The table size (0 without candidates).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True without candidates.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    #[inline]
    fn slot(&self, key: u64) -> usize {
        ((u128::from(mix64(key)) * self.table.len() as u128) >> 64) as usize
    }
}

impl Selector for Maglev {
    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let Some(key) = ctx.key else {
            // No key: smooth WRR.
            return keyless_pick(ctx, &self.candidates, self.wrr.as_ref());
        };
        if self.table.len() == 0 {
            return None;
        }
        let start = self.slot(key);
        walk_ring(ctx, &self.candidates, start, self.table.len(), |s| {
            self.table.get(s)
        })
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
    fn slots_hold_server_indices_in_either_width() {
        let positions = [0u32, 2, 1, 1];
        let candidates = [7usize, 70_000, 9];
        let wide = Slots::new(&positions, &candidates, 70_001);
        assert!(matches!(wide, Slots::Wide(_)));
        let got: Vec<usize> = (0..4).filter_map(|s| wide.get(s)).collect();
        assert_eq!(got, [7, 9, 70_000, 70_000]);
        let narrow = Slots::new(&positions, &[7, 8, 9], 10);
        assert!(matches!(narrow, Slots::Narrow(_)));
        let got: Vec<usize> = (0..5).filter_map(|s| narrow.get(s)).collect();
        assert_eq!(got, [7, 9, 8, 8]);
    }

    #[test]
    fn sizes_are_prime() {
        assert_eq!(table_size(1), 65_537);
        assert!(is_prime(table_size(10_000)));
        assert!(table_size(10_000) >= 1_000_000);
    }
}
