//! Slow start (`slow_start_ms`): a server that (re)enters service carries a growing share of its
//! weight, linearly from 10% to 100% over the window, as NGINX Plus's `slow_start`, HAProxy's
//! `slowstart` and Envoy's `slow_start_config` do.
//!
//! **When a ramp starts.** Every [`crate::Snapshot`] build (health change, admin change, reload,
//! DNS answer, cluster update) compares each server's availability with the one the previous
//! build saw, kept in the server's [`ServiceState`] (part of its long-lived
//! [`crate::ServerStats`], so survivors of a reload keep their state and timestamp). A server that
//! becomes available starts a ramp at the build's clock reading — the only clock read slow start
//! adds, once per build, never per pick — if it was in service before (it recovers or is
//! re-enabled), if it was added after start-up (reload, DNS, cluster), or if it was disabled or
//! drained by configuration before its first entry. The servers present at start-up enter at
//! full weight, also when their first active check passes later: every server is new then, and
//! ramping them all would only slow the whole upstream down (HAProxy does the same).
//!
//! **How picks use it.** A selector built while a server of its candidates ramps checks the
//! ramp at pick time from the request's `now` ([`crate::PickContext::now_ns`], the reading the
//! claim already takes for the in-flight count): [`Server::ramp`] gives the share of the weight,
//! and
//!
//! - `wrr` and `random` accept a drawn ramping server with that probability and draw again
//!   otherwise, so its share is that of its reduced weight (the smooth sequence of the others is
//!   kept; the ramping server's visits are thinned);
//! - `least_conn` compares in-flight requests against the reduced weight and `ewma` divides the
//!   ramping server's cost by its share (it looks proportionally more loaded); their weighted
//!   tie-breaks and draws are thinned like `wrr`'s;
//! - hashing (`consistent_hash`) is not ramped: moving keys away from a recovering server and back
//!   would break the affinity hashing exists for.
//!
//! A selector built when nothing ramps costs nothing more per pick than without slow start (one
//! predictable branch). One built during a ramp keeps checking ramps until the next snapshot
//! build after the window, which clears them; an ended ramp costs one atomic load per draw.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::select::{rng, PickContext};
use crate::server::Server;

/// A full share of a server's weight in [`Server::ramp`]'s fixed point.
pub const RAMP_ONE: u32 = 1 << 16;
/// The share a ramp starts from: 10% of the weight.
pub const RAMP_FLOOR: u32 = RAMP_ONE / 10;

/// A server's service history, as snapshot builds see it (one per [`crate::ServerStats`]).
#[derive(Debug, Default)]
pub struct ServiceState {
    /// Available in the last snapshot built.
    in_service: AtomicBool,
    /// Entering service ramps (it was in service before, or arrived after start-up, or was
    /// taken out by configuration before its first entry).
    ramps_on_entry: AtomicBool,
    /// When the current ramp started.
    start_ns: AtomicU64,
    /// When the current ramp ends; 0 = no ramp.
    end_ns: AtomicU64,
}

impl ServiceState {
    /// A server seen first after start-up: its first entry ramps too.
    pub(crate) fn arriving(late: bool) -> ServiceState {
        let s = ServiceState::default();
        s.ramps_on_entry.store(late, Ordering::Relaxed);
        s
    }

    /// Records the server's state in a new snapshot built at `now_ns` (`None`: slow start is
    /// off) and starts a ramp of `window_ns` if it enters service. `out_by_config`: disabled or
    /// drained (so its next entry ramps even if it never served). Returns true if it ramps.
    pub(crate) fn observe(
        &self,
        available: bool,
        out_by_config: bool,
        now_ns: Option<u64>,
        window_ns: u64,
    ) -> bool {
        let was = self.in_service.swap(available, Ordering::AcqRel);
        let enters = available && !was && self.ramps_on_entry.load(Ordering::Relaxed);
        if out_by_config || available {
            self.ramps_on_entry.store(true, Ordering::Relaxed);
        }
        let Some(now) = now_ns.filter(|_| window_ns > 0) else {
            self.end_ns.store(0, Ordering::Release);
            return false;
        };
        if enters {
            self.start_ns.store(now, Ordering::Relaxed);
            self.end_ns
                .store(now.saturating_add(window_ns).max(1), Ordering::Release);
        }
        let end = self.end_ns.load(Ordering::Acquire);
        if end != 0 && now >= end {
            self.end_ns.store(0, Ordering::Release);
        }
        self.is_ramping()
    }

    /// The server left the upstream (reload, DNS, cluster): if it comes back while its stats are
    /// kept, it enters service again (and ramps).
    pub(crate) fn leave(&self) {
        self.in_service.store(false, Ordering::Release);
        self.ramps_on_entry.store(true, Ordering::Relaxed);
    }

    /// True if a ramp is under way (or ended since the last snapshot build).
    #[inline]
    pub fn is_ramping(&self) -> bool {
        self.end_ns.load(Ordering::Acquire) != 0
    }

    /// The share of the weight at `now_ns`, in `RAMP_FLOOR..=RAMP_ONE`.
    #[inline]
    pub fn share(&self, now_ns: u64) -> u32 {
        let end = self.end_ns.load(Ordering::Acquire);
        if end == 0 || now_ns >= end {
            return RAMP_ONE;
        }
        let start = self.start_ns.load(Ordering::Relaxed);
        let window = u128::from(end.saturating_sub(start).max(1));
        let elapsed = u128::from(now_ns.saturating_sub(start));
        let grown = u128::from(RAMP_ONE - RAMP_FLOOR) * elapsed / window;
        RAMP_FLOOR + u32::try_from(grown).unwrap_or(RAMP_ONE - RAMP_FLOOR)
    }
}

impl Server {
    /// The share of its weight the server carries at `now_ns` (slow start), in 1/65,536ths:
    /// [`RAMP_ONE`] unless it ramps.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchyard_balance::slow_start::RAMP_ONE;
    /// use switchyard_balance::{Server, ServerSpec, ServerStats};
    /// let s = Server {
    ///     spec: ServerSpec::new("g", "127.0.0.1:80".parse().unwrap(), 1),
    ///     stats: Arc::new(ServerStats::default()),
    /// };
    /// assert_eq!(s.ramp(0), RAMP_ONE);
    /// ```
    #[inline]
    pub fn ramp(&self, now_ns: u64) -> u32 {
        self.stats.service().share(now_ns)
    }
}

/// True if a server of `candidates` ramps: the selector built over them checks ramps per pick.
pub(crate) fn any_ramping(servers: &[Server], candidates: &[usize]) -> bool {
    candidates.iter().any(|&i| {
        servers
            .get(i)
            .is_some_and(|s| s.stats.service().is_ramping())
    })
}

/// True with probability `share / RAMP_ONE` (always for a full share).
#[inline]
pub(crate) fn accepts(share: u32) -> bool {
    share >= RAMP_ONE || ((rng::next_u64() & 0xffff) as u32) < share
}

/// Draws up to this many times before settling for a ramping server the draws turned down.
const RAMP_DRAWS: usize = 16;

/// A pick thinned by ramps: draws servers with `draw` (a weighted sequence or sample) and keeps
/// the first allowed one that its ramp accepts; a ramping server turned down every time is still
/// better than none (a lone ramping server takes all the traffic). `None` from `draw` stops.
#[inline]
pub(crate) fn pick_thinned(
    ctx: &PickContext<'_>,
    mut draw: impl FnMut() -> Option<usize>,
) -> Option<usize> {
    let mut spare = None;
    for _ in 0..RAMP_DRAWS {
        let i = draw()?;
        if !ctx.allowed(i) {
            continue;
        }
        if accepts(ctx.servers.get(i)?.ramp(ctx.now_ns)) {
            return Some(i);
        }
        spare = Some(i);
    }
    spare
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ramps_linearly_from_a_tenth() {
        let s = ServiceState::arriving(true);
        assert!(s.observe(true, false, Some(1_000), 1_000));
        assert_eq!(s.share(1_000), RAMP_FLOOR);
        let half = s.share(1_500);
        assert!(half.abs_diff(RAMP_ONE * 55 / 100) <= 1, "{half}");
        assert_eq!(s.share(2_000), RAMP_ONE);
        // The next build after the window clears the ramp.
        assert!(!s.observe(true, false, Some(2_000), 1_000));
        assert!(!s.is_ramping());
    }

    #[test]
    fn start_up_servers_enter_at_full_weight() {
        let s = ServiceState::arriving(false);
        // Waiting for its first check, then passing it: no ramp.
        assert!(!s.observe(false, false, Some(0), 1_000));
        assert!(!s.observe(true, false, Some(10), 1_000));
        // Down and up again: ramps.
        assert!(!s.observe(false, false, Some(20), 1_000));
        assert!(s.observe(true, false, Some(30), 1_000));
    }

    #[test]
    fn disabled_at_start_up_ramps_when_enabled() {
        let s = ServiceState::arriving(false);
        assert!(!s.observe(false, true, Some(0), 1_000));
        assert!(s.observe(true, false, Some(10), 1_000));
    }

    #[test]
    fn off_never_ramps() {
        let s = ServiceState::arriving(true);
        assert!(!s.observe(true, false, None, 1_000));
        assert!(!s.observe(false, false, Some(5), 0));
        assert!(!s.observe(true, false, Some(6), 0));
        assert_eq!(s.share(6), RAMP_ONE);
    }
}
