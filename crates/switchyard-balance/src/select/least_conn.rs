//! Weighted least connections (`least_conn`, alias `wlc`).
//!
//! The candidate with the fewest requests in flight relative to its weight wins
//! ([`InFlightPerWeight`]: `in_flight_a × w_b` vs `in_flight_b × w_a`, no division). In-flight
//! counts live in [`crate::ServerStats`], so they survive reloads and weight changes (Pingora
//! loses them on every rebuild).
//!
//! Strategy by pool size:
//!
//! - up to [`SCAN_LIMIT`] candidates: an exact **full scan** ([`LeastLoaded`]), as NGINX and
//!   HAProxy do. Ties are broken by starting the scan where smooth weighted round robin points,
//!   so with requests that finish at once traffic splits exactly by weight.
//! - above it: **power of two choices** ([`P2c`]) over weighted draws. A scan of thousands of
//!   atomics per pick would cost microseconds; two choices keep the pick O(1) and, by the
//!   balls-into-bins result, the maximum load within `ln ln n` of the optimum.
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
//!
//! let specs = vec![
//!     ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1),
//!     ServerSpec::new("g", "127.0.0.1:8082".parse().unwrap(), 1),
//! ];
//! let pool = Pool::new("api", PoolOptions::new(Algorithm::LeastConn), specs, Arc::new(StatsStore::default()));
//! let snap = pool.snapshot();
//! let busy: Vec<_> = (0..10).map(|_| snap.servers()[0].stats.begin(0)).collect();
//! for _ in 0..5 {
//!     assert_eq!(snap.pick(None, &Tried::default()).unwrap().spec.addr.port(), 8082);
//! }
//! drop(busy);
//! ```

use super::load::{InFlightPerWeight, LeastLoaded, P2c};
use super::{PickContext, Selector};
use crate::server::Server;

/// Largest candidate count picked by full scan; larger pools use power of two choices.
pub const SCAN_LIMIT: usize = 64;

/// Weighted least connections: full scan up to [`SCAN_LIMIT`] candidates, P2C above.
#[derive(Debug)]
pub enum LeastConn {
    /// Exact minimum.
    Scan(LeastLoaded<InFlightPerWeight>),
    /// Power of two choices.
    TwoChoices(P2c<InFlightPerWeight>),
}

impl LeastConn {
    /// Builds over the candidates with a positive weight.
    pub fn new(servers: &[Server], candidates: &[usize]) -> Self {
        if candidates.len() <= SCAN_LIMIT {
            LeastConn::Scan(LeastLoaded::new(InFlightPerWeight, servers, candidates))
        } else {
            LeastConn::TwoChoices(P2c::new(InFlightPerWeight, servers, candidates))
        }
    }
}

impl Selector for LeastConn {
    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        match self {
            LeastConn::Scan(s) => s.pick(ctx),
            LeastConn::TwoChoices(s) => s.pick(ctx),
        }
    }
    fn needs_clock(&self) -> bool {
        false
    }
}
