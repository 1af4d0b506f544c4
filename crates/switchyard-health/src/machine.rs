//! The pure per-server health state machine: no sockets, no sleeping, time is a parameter.
//!
//! A server's verdict is `active healthy AND NOT ejected`:
//!
//! - **Active state** ([`Machine::on_check`]): the first check of a server decides its state
//!   outright (the start-up rule); after that it moves only after `healthy_threshold` consecutive
//!   passes or `unhealthy_threshold` consecutive failures. Without active checks the active state
//!   is always healthy.
//! - **Ejection** ([`Machine::eject`]): set by passive outlier detection once
//!   [`PassiveCounter`] reaches its threshold and the upstream's [`EjectionBudget`] allows it.
//!   With active checks the server returns after `healthy_threshold` consecutive passes counted
//!   from the ejection; without them it returns once `ejection_ms` have elapsed
//!   ([`Machine::poll_ejection`]).
//!
//! ```
//! use switchyard_health::machine::{Machine, Thresholds};
//! let mut m = Machine::new(Some(Thresholds::new(2, 2)), false);
//! assert!(!m.verdict());
//! m.on_check(true); // start-up rule: the first pass makes it healthy
//! assert!(m.verdict());
//! m.on_check(false);
//! assert!(m.verdict()); // one failure is below the threshold
//! m.on_check(false);
//! assert!(!m.verdict());
//! ```

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Consecutive results needed before the active state moves. Zero is treated as one.
///
/// ```
/// let t = switchyard_health::machine::Thresholds::new(0, 3);
/// assert_eq!((t.healthy, t.unhealthy), (1, 3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive passes that make an unhealthy server healthy (and return an ejected one).
    pub healthy: u32,
    /// Consecutive failures that make a healthy server unhealthy.
    pub unhealthy: u32,
}

impl Thresholds {
    /// Builds thresholds; zeros become one.
    pub fn new(healthy: u32, unhealthy: u32) -> Self {
        Thresholds {
            healthy: healthy.max(1),
            unhealthy: unhealthy.max(1),
        }
    }
}

/// What one event changed.
///
/// ```
/// use switchyard_health::machine::{Machine, Step, Thresholds};
/// let mut m = Machine::new(Some(Thresholds::new(1, 1)), true);
/// assert_eq!(m.on_check(false), Step { active: Some(false), first: false, returned: false });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// `Some(h)`: the active state became `h` (healthy or not), or the first check set it.
    pub active: Option<bool>,
    /// This was the server's first active check (the start-up rule applied).
    pub first: bool,
    /// An ejected server returned.
    pub returned: bool,
}

/// The health state of one server.
///
/// ```
/// use switchyard_health::machine::Machine;
/// // Passive-only: healthy until ejected, back after the ejection time.
/// let mut m = Machine::new(None, true);
/// assert!(m.eject(1_000));
/// assert!(!m.verdict());
/// assert!(!m.poll_ejection(2_000, 5_000));
/// assert!(m.poll_ejection(6_000, 5_000));
/// assert!(m.verdict());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    active: Option<Thresholds>,
    active_healthy: bool,
    checked: bool,
    successes: u32,
    failures: u32,
    ejected_since: Option<u64>,
    passes_since_ejection: u32,
}

impl Machine {
    /// A server's state. With active checks (`Some(thresholds)`), `initially_healthy` is the state
    /// before its first check: `false` for a new server, or the verdict adopted from an earlier
    /// health instance (then thresholds apply from the start). Without active checks the active
    /// state is always healthy.
    pub fn new(active: Option<Thresholds>, initially_healthy: bool) -> Self {
        let (active_healthy, checked) = match active {
            Some(_) => (initially_healthy, initially_healthy),
            None => (true, true),
        };
        Machine {
            active,
            active_healthy,
            checked,
            successes: 0,
            failures: 0,
            ejected_since: None,
            passes_since_ejection: 0,
        }
    }

    /// The verdict the selectors read: active healthy and not ejected.
    pub fn verdict(&self) -> bool {
        self.active_healthy && self.ejected_since.is_none()
    }
    /// The active state alone.
    pub fn active_healthy(&self) -> bool {
        self.active_healthy
    }
    /// True once the server has had an active check (or adopted a healthy verdict).
    pub fn checked(&self) -> bool {
        self.checked
    }
    /// Consecutive active passes.
    pub fn successes(&self) -> u32 {
        self.successes
    }
    /// Consecutive active failures.
    pub fn failures(&self) -> u32 {
        self.failures
    }
    /// When the server was ejected, if it is.
    pub fn ejected_since(&self) -> Option<u64> {
        self.ejected_since
    }
    /// Consecutive active passes since the ejection.
    pub fn passes_since_ejection(&self) -> u32 {
        self.passes_since_ejection
    }

    /// Applies one active check result. Without active checks this does nothing.
    pub fn on_check(&mut self, pass: bool) -> Step {
        let Some(t) = self.active else {
            return Step::default();
        };
        let mut step = Step::default();
        if pass {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        if !self.checked {
            // Start-up rule: the first check decides, whatever the thresholds.
            self.checked = true;
            step.first = true;
            self.active_healthy = pass;
            step.active = Some(pass);
        } else if pass && !self.active_healthy && self.successes >= t.healthy {
            self.active_healthy = true;
            step.active = Some(true);
        } else if !pass && self.active_healthy && self.failures >= t.unhealthy {
            self.active_healthy = false;
            step.active = Some(false);
        }
        if self.ejected_since.is_some() {
            if pass {
                self.passes_since_ejection = self.passes_since_ejection.saturating_add(1);
                if self.passes_since_ejection >= t.healthy {
                    self.ejected_since = None;
                    self.passes_since_ejection = 0;
                    step.returned = true;
                }
            } else {
                self.passes_since_ejection = 0;
            }
        }
        step
    }

    /// Ejects the server at `now_ns`; false if it already was.
    pub fn eject(&mut self, now_ns: u64) -> bool {
        if self.ejected_since.is_some() {
            return false;
        }
        self.ejected_since = Some(now_ns);
        self.passes_since_ejection = 0;
        true
    }

    /// When an ejection ends by time: `Some(deadline)` only without active checks.
    pub fn ejection_deadline(&self, ejection_ns: u64) -> Option<u64> {
        match (self.active, self.ejected_since) {
            (None, Some(since)) => Some(since.saturating_add(ejection_ns)),
            _ => None,
        }
    }

    /// Without active checks, returns an ejected server once `ejection_ns` have elapsed since its
    /// ejection; true if it returned now. With active checks this does nothing (they decide).
    pub fn poll_ejection(&mut self, now_ns: u64, ejection_ns: u64) -> bool {
        match self.ejection_deadline(ejection_ns) {
            Some(deadline) if now_ns >= deadline => {
                self.ejected_since = None;
                self.passes_since_ejection = 0;
                true
            }
            _ => false,
        }
    }

    /// Ends an ejection regardless of how (the server is being removed).
    pub fn clear_ejection(&mut self) -> bool {
        self.passes_since_ejection = 0;
        self.ejected_since.take().is_some()
    }
}

/// A proxied response as passive outlier detection sees it.
///
/// ```
/// use switchyard_health::{PassiveEvent, StatusSet};
/// let bad = StatusSet::new(&[500, 503]);
/// assert!(PassiveEvent::Status(503).is_failure(&bad));
/// assert!(!PassiveEvent::Status(404).is_failure(&bad));
/// assert!(PassiveEvent::ConnectError.is_failure(&bad));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveEvent {
    /// The server answered with this status.
    Status(u16),
    /// The connection to the server failed (refused, reset before a response, TLS failure).
    ConnectError,
    /// The server did not answer in time.
    Timeout,
    /// A gRPC server answered a call with `grpc-status` 14 (UNAVAILABLE): a failure, like a 502.
    GrpcUnavailable,
}

impl PassiveEvent {
    /// True if the event counts as a failure given the unhealthy statuses.
    pub fn is_failure(self, unhealthy: &StatusSet) -> bool {
        match self {
            PassiveEvent::Status(s) => unhealthy.contains(s),
            PassiveEvent::ConnectError | PassiveEvent::Timeout | PassiveEvent::GrpcUnavailable => {
                true
            }
        }
    }

    pub(crate) fn encode(self) -> u32 {
        match self {
            PassiveEvent::Status(s) => u32::from(s),
            PassiveEvent::ConnectError => 1,
            PassiveEvent::Timeout => 2,
            PassiveEvent::GrpcUnavailable => 3,
        }
    }

    pub(crate) fn describe_code(code: u32) -> String {
        match code {
            0 => "unknown".to_string(),
            1 => "connect error".to_string(),
            2 => "timeout".to_string(),
            3 => "gRPC UNAVAILABLE".to_string(),
            s => format!("HTTP {s}"),
        }
    }
}

/// A set of HTTP statuses (0..=1023) as a bitmap: membership is one shift and one mask.
///
/// ```
/// let s = switchyard_health::StatusSet::new(&[502, 504]);
/// assert!(s.contains(502) && !s.contains(503));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusSet([u64; 16]);

impl StatusSet {
    /// The set of `statuses` (values above 1023 are ignored).
    pub fn new(statuses: &[u16]) -> Self {
        let mut bits = [0u64; 16];
        for &s in statuses {
            let i = usize::from(s / 64);
            if let Some(word) = bits.get_mut(i) {
                *word |= 1u64 << (s % 64);
            }
        }
        StatusSet(bits)
    }
    /// True if `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.0
            .get(usize::from(status / 64))
            .is_some_and(|w| w & (1u64 << (status % 64)) != 0)
    }
}

/// Consecutive passive failures of one server: one atomic, no lock.
///
/// ```
/// use switchyard_health::machine::PassiveCounter;
/// let c = PassiveCounter::default();
/// assert!(!c.record(true, 2));
/// assert!(c.record(true, 2)); // threshold reached
/// assert!(!c.record(false, 2)); // any other response resets
/// assert_eq!(c.get(), 0);
/// ```
#[derive(Debug, Default)]
pub struct PassiveCounter(AtomicU32);

impl PassiveCounter {
    /// Records one response; true if the consecutive failures now reach `threshold`.
    pub fn record(&self, failure: bool, threshold: u32) -> bool {
        if failure {
            let n = self.0.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            n >= threshold.max(1)
        } else {
            // Read first so that the common healthy path does not write the cache line.
            if self.0.load(Ordering::Relaxed) != 0 {
                self.0.store(0, Ordering::Relaxed);
            }
            false
        }
    }
    /// The current count.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
    /// Resets the count (after an ejection or a return).
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// How many of `total` servers may be ejected at once with `max_ejection_percent = percent`.
///
/// Like Envoy, at least one ejection is always allowed when `percent > 0`, even if the share
/// rounds down to zero (a one-server upstream can lose its server; `when_all_down` then decides).
/// `percent = 0` disables ejection. Values above 100 count as 100.
///
/// ```
/// use switchyard_health::machine::max_ejections;
/// assert_eq!(max_ejections(2, 50), 1);
/// assert_eq!(max_ejections(10, 50), 5);
/// assert_eq!(max_ejections(1, 50), 1);
/// assert_eq!(max_ejections(3, 10), 1);
/// assert_eq!(max_ejections(4, 0), 0);
/// assert_eq!(max_ejections(4, 250), 4);
/// ```
pub fn max_ejections(total: usize, percent: u32) -> usize {
    if percent == 0 || total == 0 {
        return 0;
    }
    let pct = usize::try_from(percent.min(100)).unwrap_or(100);
    (total.saturating_mul(pct) / 100).max(1)
}

/// The number of ejected servers of one upstream, enforcing `max_ejection_percent`.
///
/// ```
/// use switchyard_health::machine::EjectionBudget;
/// let b = EjectionBudget::default();
/// assert!(b.try_take(2, 50));
/// assert!(!b.try_take(2, 50)); // one of two is the cap at 50%
/// b.release();
/// assert!(b.try_take(2, 50));
/// ```
#[derive(Debug, Default)]
pub struct EjectionBudget(AtomicUsize);

impl EjectionBudget {
    /// Takes one ejection if fewer than [`max_ejections`] are ejected; false if at the cap.
    pub fn try_take(&self, total: usize, percent: u32) -> bool {
        let max = max_ejections(total, percent);
        // Bounded compare-and-swap: contention here means other servers are being ejected at the
        // same moment; giving up is safe (the next failure tries again).
        for _ in 0..64 {
            let cur = self.0.load(Ordering::Acquire);
            if cur >= max {
                return false;
            }
            if self
                .0
                .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
        false
    }
    /// Gives one ejection back (a server returned or was removed).
    pub fn release(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
    }
    /// Servers ejected now.
    pub fn ejected(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(h: u32, u: u32) -> Machine {
        Machine::new(Some(Thresholds::new(h, u)), false)
    }

    #[test]
    fn new_server_with_active_checks_starts_unhealthy() {
        let m = active(3, 3);
        assert!(!m.verdict());
        assert!(!m.checked());
    }

    #[test]
    fn first_pass_makes_healthy_despite_threshold() {
        let mut m = active(3, 3);
        let s = m.on_check(true);
        assert_eq!(
            s,
            Step {
                active: Some(true),
                first: true,
                returned: false
            }
        );
        assert!(m.verdict());
    }

    #[test]
    fn first_failure_keeps_unhealthy_then_threshold_applies() {
        let mut m = active(3, 3);
        let s = m.on_check(false);
        assert_eq!(s.active, Some(false));
        assert!(s.first);
        assert!(!m.verdict());
        assert_eq!(m.on_check(true).active, None);
        assert_eq!(m.on_check(true).active, None);
        assert!(!m.verdict());
        assert_eq!(m.on_check(true).active, Some(true));
        assert!(m.verdict());
    }

    #[test]
    fn healthy_to_unhealthy_after_threshold() {
        let mut m = active(3, 3);
        m.on_check(true);
        assert_eq!(m.on_check(false).active, None);
        assert_eq!(m.on_check(false).active, None);
        assert!(m.verdict());
        assert_eq!(m.failures(), 2);
        assert_eq!(m.on_check(false).active, Some(false));
        assert!(!m.verdict());
        // Further failures change nothing.
        assert_eq!(m.on_check(false).active, None);
    }

    #[test]
    fn a_pass_resets_the_failure_count() {
        let mut m = active(2, 3);
        m.on_check(true);
        m.on_check(false);
        m.on_check(false);
        m.on_check(true);
        assert_eq!(m.failures(), 0);
        m.on_check(false);
        m.on_check(false);
        assert!(m.verdict());
        m.on_check(false);
        assert!(!m.verdict());
    }

    #[test]
    fn a_failure_resets_the_pass_count() {
        let mut m = active(2, 1);
        m.on_check(false); // first: unhealthy
        m.on_check(true);
        m.on_check(false);
        m.on_check(true);
        assert!(!m.verdict());
        assert_eq!(m.on_check(true).active, Some(true));
    }

    #[test]
    fn adopted_healthy_applies_thresholds_from_the_start() {
        let mut m = Machine::new(Some(Thresholds::new(2, 2)), true);
        assert!(m.verdict() && m.checked());
        assert_eq!(m.on_check(false), Step::default());
        assert!(m.verdict());
        assert_eq!(m.on_check(false).active, Some(false));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut m = Machine::new(Some(Thresholds::new(0, 0)), true);
        assert_eq!(m.on_check(false).active, Some(false));
        assert_eq!(m.on_check(true).active, Some(true));
    }

    #[test]
    fn without_active_checks_always_active_healthy() {
        let mut m = Machine::new(None, false);
        assert!(m.verdict());
        assert_eq!(m.on_check(false), Step::default());
        assert!(m.verdict());
    }

    #[test]
    fn ejection_without_active_returns_after_time() {
        let mut m = Machine::new(None, true);
        assert!(m.eject(100));
        assert!(!m.eject(150), "already ejected");
        assert!(!m.verdict());
        assert_eq!(m.ejection_deadline(1_000), Some(1_100));
        assert!(!m.poll_ejection(1_099, 1_000));
        assert!(m.poll_ejection(1_100, 1_000));
        assert!(m.verdict());
        assert!(!m.poll_ejection(5_000, 1_000), "returns once");
    }

    #[test]
    fn ejection_with_active_returns_after_healthy_threshold_of_passes() {
        let mut m = active(3, 3);
        m.on_check(true);
        assert!(m.eject(0));
        assert!(!m.verdict());
        // Time alone does not return it.
        assert!(!m.poll_ejection(u64::MAX, 1));
        assert_eq!(m.ejection_deadline(1), None);
        assert!(!m.on_check(true).returned);
        assert!(!m.on_check(false).returned); // resets the passes since ejection
        assert_eq!(m.passes_since_ejection(), 0);
        assert!(!m.on_check(true).returned);
        assert!(!m.on_check(true).returned);
        assert!(!m.verdict());
        let s = m.on_check(true);
        assert!(s.returned);
        assert_eq!(s.active, None);
        assert!(m.verdict());
    }

    #[test]
    fn ejected_and_active_unhealthy_needs_both() {
        let mut m = active(2, 1);
        m.on_check(true);
        m.eject(0);
        let s = m.on_check(false);
        assert_eq!(s.active, Some(false));
        m.on_check(true);
        let s = m.on_check(true);
        assert_eq!(s.active, Some(true));
        assert!(s.returned);
        assert!(m.verdict());
    }

    #[test]
    fn clear_ejection() {
        let mut m = Machine::new(None, true);
        assert!(!m.clear_ejection());
        m.eject(5);
        assert!(m.clear_ejection());
        assert!(m.verdict());
    }

    #[test]
    fn passive_counter_counts_consecutive_failures() {
        let c = PassiveCounter::default();
        assert!(!c.record(true, 3));
        assert!(!c.record(true, 3));
        assert!(!c.record(false, 3));
        assert!(!c.record(true, 3));
        assert!(!c.record(true, 3));
        assert!(c.record(true, 3));
        assert!(c.record(true, 3), "stays at or above the threshold");
        c.reset();
        assert_eq!(c.get(), 0);
        assert!(c.record(true, 0), "a zero threshold acts as one");
    }

    #[test]
    fn passive_events_classify() {
        let set = StatusSet::new(&[500, 502, 503, 504]);
        for s in [500, 502, 503, 504] {
            assert!(PassiveEvent::Status(s).is_failure(&set));
        }
        for s in [200, 301, 404, 501, 599, 0, 1023, u16::MAX] {
            assert!(!PassiveEvent::Status(s).is_failure(&set));
        }
        assert!(PassiveEvent::Timeout.is_failure(&set));
        assert!(PassiveEvent::ConnectError.is_failure(&set));
        assert_eq!(
            PassiveEvent::describe_code(PassiveEvent::Timeout.encode()),
            "timeout"
        );
        assert_eq!(
            PassiveEvent::describe_code(PassiveEvent::Status(503).encode()),
            "HTTP 503"
        );
        assert!(PassiveEvent::GrpcUnavailable.is_failure(&StatusSet::new(&[])));
        assert_eq!(
            PassiveEvent::describe_code(PassiveEvent::GrpcUnavailable.encode()),
            "gRPC UNAVAILABLE"
        );
        assert_eq!(
            PassiveEvent::describe_code(PassiveEvent::ConnectError.encode()),
            "connect error"
        );
    }

    #[test]
    fn ejection_budget_caps_and_releases() {
        let b = EjectionBudget::default();
        assert!(b.try_take(4, 50));
        assert!(b.try_take(4, 50));
        assert!(!b.try_take(4, 50));
        assert_eq!(b.ejected(), 2);
        b.release();
        b.release();
        b.release(); // never below zero
        assert_eq!(b.ejected(), 0);
        assert!(!b.try_take(4, 0), "0% disables ejection");
        assert!(b.try_take(1, 10), "at least one is always allowed");
        assert!(!b.try_take(1, 10));
    }
}
