//! NGINX-compatible consistent hashing (`hash_ring = "ketama"`): a ring that places keys exactly
//! as NGINX's `hash $key consistent` does (`ngx_http_upstream_hash_module`), so a fleet moving
//! from NGINX keeps its key → server mapping (caches stay warm, sessions stay put).
//!
//! NGINX's ring, reproduced point for point:
//!
//! - each server is named by its `server` text, split at the last `:` followed only by digits
//!   into a host and a port (`10.0.0.1:80` → `10.0.0.1`, `80`; `[::1]:80` → `[::1]`, `80`).
//!   Switchyard names a server by its address as NGINX would print it in a `server` line:
//!   the IP (IPv6 in brackets) and the port, see [`point_name`];
//! - a server of weight `w` gets `160 × w` points: `crc32(host "\0" port prev)`, where `prev` is
//!   the previous point's hash as 4 little-endian bytes (0 for the first point);
//! - the points are sorted by hash; of several points with the same hash only the first (in
//!   server order, the order of the configuration) is kept — what glibc's stable `qsort`
//!   gives NGINX;
//! - a key is hashed with CRC-32 (IEEE, as `ngx_crc32_long`) of its bytes, and goes to the first
//!   point whose hash is at least the key's, wrapping to the first point.
//!
//! Weights are taken as configured, not divided by their common divisor (NGINX's ring depends on
//! them: weight 2 everywhere is another ring than weight 1). The key must be hashed with
//! [`HashRing::Ketama`](super::HashRing::Ketama)`.hash` (what `Pool::hash_key` does for a Ketama
//! pool): the pick reads the low 32 bits of [`PickContext::key`] as that CRC-32.
//!
//! Unlike NGINX, the ring is built over the available servers only (the snapshot's candidates),
//! so an unhealthy, disabled or drained server's points are absent and its keys go to the next
//! point on the ring — the server NGINX's walk would reach by skipping it. A server the request
//! already tried is skipped the same way, walking on from point to point (up to 64, then the
//! highest-weight untried server). A request without a key takes smooth weighted round robin,
//! as NGINX falls back to round robin for an empty key.
//!
//! A pick is one binary search over the points (`⌈log₂(160 × Σw)⌉` steps) and no allocation.
//! Rings larger than [`MAX_POINTS`] are built with proportionally lower weights (NGINX would
//! build them whole; the mapping then differs from NGINX's).
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_balance::{Algorithm, HashRing, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
//!
//! // NGINX: upstream { hash $request_uri consistent; server 127.0.0.1:7777; server 127.0.0.1:7778; }
//! let specs = vec![
//!     ServerSpec::new("g", "127.0.0.1:7777".parse().unwrap(), 1),
//!     ServerSpec::new("g", "127.0.0.1:7778".parse().unwrap(), 1),
//! ];
//! let opts = PoolOptions::new(Algorithm::ConsistentHash).hash_ring(HashRing::Ketama);
//! let pool = Pool::new("api", opts, specs, Arc::new(StatsStore::default()));
//! let snap = pool.snapshot();
//! let owner = |uri: &str| {
//!     let key = Some(pool.hash_key(uri.as_bytes()));
//!     snap.pick(key, &Tried::default()).unwrap().spec.addr.port()
//! };
//! // Where NGINX sends them (pingora-ketama's NGINX-checked sample).
//! assert_eq!(owner("/some/path"), 7778);
//! assert_eq!(owner("/some/longer/path"), 7777);
//! ```

use std::net::SocketAddr;

use super::wrr::WrrTree;
use super::{keyless_pick, walk_ring, weighted, PickContext, Selector};
use crate::server::Server;

/// Points per unit of weight (NGINX's constant).
pub const POINTS_PER_WEIGHT: u64 = 160;
/// The most points a ring holds (8 bytes each: 32 MiB); beyond, weights are scaled down.
pub const MAX_POINTS: u64 = 1 << 22;

/// The host and port text NGINX hashes for a server at `addr`: the IP as written in a
/// `server` line (IPv6 in brackets) and the port in decimal.
///
/// ```
/// use switchyard_balance::select::ketama::point_name;
/// assert_eq!(point_name("10.0.0.1:443".parse().unwrap()), ("10.0.0.1".to_string(), "443".to_string()));
/// assert_eq!(point_name("[::1]:80".parse().unwrap()), ("[::1]".to_string(), "80".to_string()));
/// ```
pub fn point_name(addr: SocketAddr) -> (String, String) {
    let text = addr.to_string();
    // NGINX: the port is the digits after the last `:`; a SocketAddr always has one.
    match text.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.to_string()),
        None => (text, String::new()),
    }
}

/// The `160 × weight` point hashes of a server named `host`, `port`, in NGINX's order.
pub fn server_points(host: &str, port: &str, weight: u64) -> impl Iterator<Item = u32> {
    let mut base = crc32fast::Hasher::new();
    base.update(host.as_bytes());
    base.update(b"\0");
    base.update(port.as_bytes());
    let mut prev = 0u32;
    (0..POINTS_PER_WEIGHT.saturating_mul(weight)).map(move |_| {
        let mut h = base.clone();
        h.update(&prev.to_le_bytes());
        prev = h.finalize();
        prev
    })
}

/// The weights a ring uses: as configured, unless their points would exceed [`MAX_POINTS`].
fn ring_weights(weights: &[u64]) -> Vec<u64> {
    let total: u64 = weights.iter().sum();
    let budget = MAX_POINTS / POINTS_PER_WEIGHT;
    if total <= budget {
        return weights.to_vec();
    }
    weights
        .iter()
        .map(|&w| {
            let scaled = u128::from(w) * u128::from(budget) / u128::from(total);
            u64::try_from(scaled).unwrap_or(1).max(1)
        })
        .collect()
}

/// An NGINX-compatible Ketama ring; smooth WRR for requests without a key.
#[derive(Debug)]
pub struct Ketama {
    /// Point hashes, ascending, distinct.
    hashes: Vec<u32>,
    /// The server index of each point.
    owners: Vec<u32>,
    /// Candidates with a positive weight, in server order.
    candidates: Vec<usize>,
    wrr: Option<WrrTree>,
}

impl Ketama {
    /// Builds the ring over the candidates with a positive weight.
    pub fn new(servers: &[Server], candidates: &[usize]) -> Self {
        let weighted = weighted(servers, candidates);
        let wrr = super::wrr::labelled_tree(&weighted);
        // Points need the configured weights (not divided by their divisor), in server order.
        let mut ordered: Vec<usize> = weighted.iter().map(|&(i, _)| i).collect();
        ordered.sort_unstable();
        let configured: Vec<u64> = ordered
            .iter()
            .map(|&i| u64::from(servers[i].spec.weight))
            .collect();
        let weights = ring_weights(&configured);
        let total = weights.iter().sum::<u64>() * POINTS_PER_WEIGHT;
        let mut points: Vec<(u32, u32)> = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for (&i, &w) in ordered.iter().zip(&weights) {
            let (host, port) = point_name(servers[i].spec.addr);
            let owner = u32::try_from(i).unwrap_or(u32::MAX);
            points.extend(server_points(&host, &port, w).map(|h| (h, owner)));
        }
        // Stable: among equal hashes the first server in order stays first, and is kept.
        points.sort_by_key(|&(h, _)| h);
        points.dedup_by_key(|&mut (h, _)| h);
        let (hashes, owners) = points.into_iter().unzip();
        Ketama {
            hashes,
            owners,
            candidates: ordered,
            wrr,
        }
    }

    /// The number of points on the ring.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True without candidates.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The index of the first point at or after `hash`, wrapping to 0 (NGINX's
    /// `ngx_http_upstream_find_chash_point`).
    #[inline]
    fn first_point(&self, hash: u32) -> usize {
        let i = self.hashes.partition_point(|&p| p < hash);
        if i == self.hashes.len() {
            0
        } else {
            i
        }
    }
}

impl Selector for Ketama {
    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let Some(key) = ctx.key else {
            // No key: smooth WRR, as in Maglev.
            return keyless_pick(ctx, &self.candidates, self.wrr.as_ref());
        };
        if self.hashes.is_empty() {
            return None;
        }
        // The key is the CRC-32 of the request key (HashRing::Ketama.hash): its low 32 bits.
        let start = self.first_point(key as u32);
        walk_ring(ctx, &self.candidates, start, self.owners.len(), |p| {
            self.owners.get(p).map(|&i| i as usize)
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
    fn points_follow_nginx_naming_and_chaining() {
        // First point: crc32("10.0.0.1" "\0" "80" 00 00 00 00); second chains the first.
        let pts: Vec<u32> = server_points("10.0.0.1", "80", 1).collect();
        assert_eq!(pts.len(), 160);
        assert_eq!(pts[0], crc32fast::hash(b"10.0.0.1\x0080\x00\x00\x00\x00"));
        let mut second = b"10.0.0.1\x0080".to_vec();
        second.extend_from_slice(&pts[0].to_le_bytes());
        assert_eq!(pts[1], crc32fast::hash(&second));
        assert_eq!(server_points("h", "1", 3).count(), 480);
    }

    #[test]
    fn ipv6_servers_are_named_with_brackets_as_nginx_writes_them() {
        let (host, port) = point_name("[2001:db8::1]:8080".parse().unwrap());
        assert_eq!((host.as_str(), port.as_str()), ("[2001:db8::1]", "8080"));
    }

    #[test]
    fn oversized_rings_are_scaled_down_proportionally() {
        assert_eq!(ring_weights(&[1, 2, 3]), [1, 2, 3]);
        let big = ring_weights(&[10_000; 1_000]);
        assert!(big.iter().sum::<u64>() * POINTS_PER_WEIGHT <= MAX_POINTS);
        assert!(big.iter().all(|&w| w == big[0] && w >= 1));
        assert_eq!(ring_weights(&[1_000_000, 1])[1], 1, "never below 1");
    }
}
