//! Peak EWMA (`ewma`): latency estimate × (in-flight + 1), power of two choices.
//!
//! This is the measure of tower and Linkerd ("Beyond Round Robin"): it reacts to a slow server
//! within one request (a sample above the estimate replaces it — the *peak*), forgets slowly
//! (decay time constant [`crate::stats::EWMA_DECAY_NS`], read from the pool's injectable
//! [`crate::Clock`]), and counts queueing through the in-flight factor. Two weighted random
//! candidates are compared ([`P2c`]); comparing all would send every pick to the same momentary
//! minimum.
//!
//! **Failures are penalised**, unlike tower's: [`crate::ServerStats`] charges a failed request at
//! least [`crate::stats::FAILURE_PENALTY_NS`] (1 s), so a server answering fast 503s looks like a
//! 1 s server and loses against a healthy 50 ms one. As the estimate decays without traffic, a
//! failed server is tried again after tens of seconds and recovers if it answers well.
//!
//! A pick reads **no clock**: from any moment on, two servers' estimates decay by the same
//! factor, so comparing them only needs the older one decayed to the newer one's last update
//! ([`PeakEwma`]'s [`crate::select::Load::less`]). Time still drives the decay: every estimate is
//! stamped with the pool's clock when a request finishes.
//!
//! A server with no estimate yet is compared with its rival by requests in flight alone: new
//! servers are tried as soon as they are less busy, but never take more than an even share before
//! their first answer. Use [`Ewma::with_load`] (through [`crate::PoolOptions::with_selector`]) to
//! change the measure.
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_balance::{Algorithm, ManualClock, Outcome, Pool, PoolOptions, ServerSpec, StatsStore, Tried};
//!
//! let clock = Arc::new(ManualClock::default());
//! let specs = vec![
//!     ServerSpec::new("g", "127.0.0.1:8081".parse().unwrap(), 1),
//!     ServerSpec::new("g", "127.0.0.1:8082".parse().unwrap(), 1),
//! ];
//! let opts = PoolOptions::new(Algorithm::Ewma).clock(clock.clone());
//! let pool = Pool::new("api", opts, specs, Arc::new(StatsStore::default()));
//! let snap = pool.snapshot();
//! // 8081 answers fast errors, 8082 answers well in 50 ms.
//! let (bad, good) = (&snap.servers()[0].stats, &snap.servers()[1].stats);
//! let g = bad.begin(snap.now_nanos());
//! clock.advance_ms(1);
//! g.finish(Outcome::Failure, snap.now_nanos());
//! let g = good.begin(snap.now_nanos());
//! clock.advance_ms(50);
//! g.finish(Outcome::Success, snap.now_nanos());
//! assert_eq!(snap.pick(None, &Tried::default()).unwrap().spec.addr.port(), 8082);
//! ```

use super::load::{P2c, PeakEwma};
use super::{PickContext, Selector};
use crate::server::Server;

/// Peak EWMA with power of two choices.
#[derive(Debug)]
pub struct Ewma(P2c<PeakEwma>);

impl Ewma {
    /// Builds over the candidates with a positive weight, with the default [`PeakEwma`].
    pub fn new(servers: &[Server], candidates: &[usize]) -> Self {
        Self::with_load(PeakEwma::default(), servers, candidates)
    }
    /// Builds with a tuned measure (e.g. another default latency for unprobed servers).
    pub fn with_load(load: PeakEwma, servers: &[Server], candidates: &[usize]) -> Self {
        Ewma(P2c::new(load, servers, candidates))
    }
}

impl Selector for Ewma {
    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        self.0.pick(ctx)
    }
    fn needs_clock(&self) -> bool {
        self.0.needs_clock()
    }
}
