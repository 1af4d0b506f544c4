//! Log lines for refusals under overload, at most one per interval and kind.
//!
//! Every refused request (a full queue, a queue timeout, a deadline passed in the queue, a
//! spent retry budget, a rate limit, a TCP connection closed for want of a slot) is counted in
//! its metric. Logging each one as well would write thousands of identical lines a second just
//! when the machine is busiest, so the log gets the first refusal of a kind at once, then at
//! most one line per [`INTERVAL`] carrying how many more there were since the previous line
//! (HAProxy and NGINX log every refusal; NGINX lets `limit_req_log_level` demote them — here
//! the count keeps the information and the metrics keep the exact totals). Refusals that
//! stop within an interval are not summarised afterwards: the metric has them.
//!
//! A [`LogThrottle`] is two atomics; the refusal path reads the clock once, only when it
//! refuses.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchyard_balance::{Clock, MonotonicClock};

/// The shortest time between two log lines of one kind.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Decides which occurrences of one kind of refusal are logged.
///
/// ```
/// use switchyard_proxy::log_throttle::LogThrottle;
/// let t = LogThrottle::default();
/// assert_eq!(t.admit_at(1).map(|r| r.count()), Some(0)); // the first is logged
/// assert!(t.admit_at(2).is_none()); // within the interval: counted only
/// assert!(t.admit_at(3).is_none());
/// let ten_s = 10_000_000_000;
/// assert_eq!(t.admit_at(1 + ten_s).map(|r| r.count()), Some(2)); // ...and summarised
/// ```
#[derive(Debug, Default)]
pub struct LogThrottle {
    /// The earliest time the next line may be written (nanoseconds of the monotonic clock).
    next_ns: AtomicU64,
    /// Occurrences not logged since the last line.
    suppressed: AtomicU64,
}

/// The occurrences left out since the previous line: `Display`s as nothing, or as
/// ` (N more since the last such line)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeats(u64);

impl Repeats {
    /// How many occurrences were not logged since the previous line.
    pub fn count(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Repeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(
                f,
                " ({n} more since the last such line; lines of this kind are written at most \
                 every {} s)",
                INTERVAL.as_secs()
            ),
        }
    }
}

impl LogThrottle {
    /// An occurrence now: `Some` if it is to be logged (with the ones left out since the last
    /// line), `None` if it is only counted.
    pub fn admit(&self) -> Option<Repeats> {
        self.admit_at(MonotonicClock.now_nanos())
    }

    /// [`LogThrottle::admit`] at `now_ns`.
    pub fn admit_at(&self, now_ns: u64) -> Option<Repeats> {
        let next = self.next_ns.load(Ordering::Relaxed);
        let interval = u64::try_from(INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        let logs = now_ns >= next
            && self
                .next_ns
                .compare_exchange(
                    next,
                    now_ns.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if logs {
            Some(Repeats(self.suppressed.swap(0, Ordering::Relaxed)))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The throttles of one upstream's refusals, one per kind.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// Every server full and the queue full (or no queue).
    pub queue_full: LogThrottle,
    /// `queue_timeout_ms` passed in the queue.
    pub queue_timeout: LogThrottle,
    /// The route's `deadline_ms` passed in the queue.
    pub queue_deadline: LogThrottle,
    /// A retry denied by the retry budget.
    pub retry_budget: LogThrottle,
    /// A TCP connection closed because every server is at its limit.
    pub tcp_full: LogThrottle,
    /// A TCP connection closed because no server is available (none in service).
    pub tcp_no_server: LogThrottle,
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_others() {
        let t = LogThrottle::default();
        let logged: Vec<(u64, u64)> = (0..=25 * 100)
            .map(|i| 1 + i * S / 100) // 100 a second for 25 s
            .filter_map(|now| t.admit_at(now).map(|r| (now, r.count())))
            .collect();
        assert_eq!(logged.len(), 3, "{logged:?}");
        assert_eq!(logged[0], (1, 0));
        assert_eq!(
            logged[1].1, 999,
            "ten seconds of 100/s, less the logged one"
        );
        assert_eq!(logged[2].1, 999);
        assert_eq!(Repeats(0).to_string(), "");
        assert!(Repeats(5).to_string().starts_with(" (5 more"));
    }
}
