//! Retry budgets (Envoy's `retry_budget`): retries in flight to an upstream may be at most
//! `retry_budget_percent` of its requests in flight, but `retry_budget_min` are always allowed —
//! so that a failing upstream is not hit by a retry storm on top of its normal load — and the
//! jittered exponential backoff between tries (`retry_backoff_ms`).
//!
//! Nothing here runs for a request that is never retried: requests in flight are the upstream's
//! servers' in-flight counts (which the selectors keep anyway), summed only when a retry is
//! considered; retries in flight are counted by [`RetryTicket`]s, which only retrying requests
//! take.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::UpstreamRuntime;

/// Retries in flight to one upstream.
#[derive(Debug, Default)]
pub struct RetryBudget {
    retrying: AtomicU32,
}

/// A request's place in its upstream's retry budget, held from its first retry to its end.
#[derive(Debug)]
pub struct RetryTicket {
    upstream: Arc<UpstreamRuntime>,
}

impl Drop for RetryTicket {
    fn drop(&mut self) {
        self.upstream
            .retry_budget
            .retrying
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The most retries in flight with `active` requests in flight: `percent`% of them, at least
/// `min`.
///
/// ```
/// use switchyard_proxy::retry_budget::allowed_retries;
/// assert_eq!(allowed_retries(100, 20, 3), 20);
/// assert_eq!(allowed_retries(5, 20, 3), 3);
/// assert_eq!(allowed_retries(1000, 0, 0), 0);
/// ```
pub fn allowed_retries(active: u64, percent: u32, min: u32) -> u64 {
    (active * u64::from(percent) / 100).max(u64::from(min))
}

impl RetryBudget {
    /// Retries in flight now.
    pub fn retrying(&self) -> u32 {
        self.retrying.load(Ordering::Relaxed)
    }
}

/// Takes a place in `upstream`'s retry budget for a request about to retry, or `None` (counted
/// in `switchyard_retry_budget_exhausted_total{upstream}`) when the budget is spent.
pub fn take(upstream: &Arc<UpstreamRuntime>) -> Option<RetryTicket> {
    let cfg = &upstream.cfg;
    let active: u64 = upstream
        .pool
        .snapshot()
        .servers()
        .iter()
        .map(|s| u64::from(s.stats.in_flight()))
        .sum();
    let limit = allowed_retries(active, cfg.retry_budget_percent, cfg.retry_budget_min);
    let budget = &upstream.retry_budget;
    let taken = budget
        .retrying
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (u64::from(n) < limit).then_some(n + 1)
        })
        .is_ok();
    if !taken {
        upstream.budget_exhausted.inc();
        if let Some(more) = upstream.refusal_log.retry_budget.admit() {
            log::warn!(
                "upstream {}: retry budget spent ({} retries in flight, {active} requests in \
                 flight, {}% / at least {}): the failure is returned{more}",
                cfg.name,
                budget.retrying(),
                cfg.retry_budget_percent,
                cfg.retry_budget_min
            );
        }
        return None;
    }
    Some(RetryTicket {
        upstream: Arc::clone(upstream),
    })
}

/// The wait before retry number `retry` (1 for the first): `ceiling × (1 + unit) / 2` with
/// `ceiling = base × 2^(retry-1)`, capped at ten times the base (Envoy's cap) — "equal jitter":
/// random in the upper half, so that retries of many clients spread out while each one still
/// backs off at least half the step (Envoy's full jitter may wait nothing at all). `unit` is a
/// random number in `[0, 1)`.
///
/// ```
/// use std::time::Duration;
/// use switchyard_proxy::retry_budget::backoff;
/// assert_eq!(backoff(100, 1, 0.0), Duration::from_millis(50));
/// assert_eq!(backoff(100, 1, 0.5), Duration::from_millis(75));
/// assert_eq!(backoff(100, 3, 0.0), Duration::from_millis(200));
/// assert_eq!(backoff(100, 9, 0.0), Duration::from_millis(500)); // capped at 10 × base
/// assert_eq!(backoff(0, 3, 0.5), Duration::ZERO);
/// ```
pub fn backoff(base_ms: u64, retry: u32, unit: f64) -> Duration {
    let factor = 1u64 << retry.saturating_sub(1).min(16);
    let ceiling_ms = base_ms
        .saturating_mul(factor)
        .min(base_ms.saturating_mul(10));
    let ms = ceiling_ms as f64 * (1.0 + unit.clamp(0.0, 1.0)) / 2.0;
    Duration::from_micros((ms * 1000.0) as u64)
}
