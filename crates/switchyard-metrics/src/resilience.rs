//! The resilience families: the upstream queue (requests refused by it, its length, the time
//! requests waited in it), retry budgets and rate limits.
//!
//! Registered in the default registry on first use of [`Resilience::global`], beside
//! [`crate::Metrics`]; the request path holds per-upstream handles ([`QueueMetrics`]) resolved
//! when the configuration is built.
//!
//! ```
//! let m = switchyard_metrics::Resilience::global();
//! let q = m.queue("api");
//! q.rejected_timeout.inc();
//! assert_eq!(m.queue_rejected_total.with_label_values(&["api", "timeout"]).get(), 1);
//! ```

use std::sync::OnceLock;

use prometheus::{
    exponential_buckets, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

/// The resilience metric families.
#[derive(Debug)]
pub struct Resilience {
    /// `switchyard_queue_rejected_total{upstream,reason}`: requests refused because every
    /// server was at its `max_in_flight`; `reason` is `full` (no queue, or the queue held
    /// `queue_size` already), `timeout` (waited `queue_timeout_ms`) or `deadline` (the route's
    /// `deadline_ms` passed while queued).
    pub queue_rejected_total: IntCounterVec,
    /// `switchyard_queue_length{upstream}`: requests waiting for a free server now.
    pub queue_length: IntGaugeVec,
    /// `switchyard_queue_wait_seconds{upstream}`: how long queued requests waited (served or
    /// not).
    pub queue_wait_seconds: HistogramVec,
    /// `switchyard_retry_budget_exhausted_total{upstream}`: retries denied by the upstream's
    /// retry budget (the request got the failure it would have retried).
    pub retry_budget_exhausted_total: IntCounterVec,
    /// `switchyard_rate_limited_total{route}`: requests answered 429 by the route's
    /// `[routes.rate_limit]` (never sent upstream).
    pub rate_limited_total: IntCounterVec,
}

/// One upstream's queue handles.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    /// `reason="full"`.
    pub rejected_full: IntCounter,
    /// `reason="timeout"`.
    pub rejected_timeout: IntCounter,
    /// `reason="deadline"`.
    pub rejected_deadline: IntCounter,
    /// `switchyard_queue_length{upstream}`.
    pub length: IntGauge,
    /// `switchyard_queue_wait_seconds{upstream}`.
    pub wait: Histogram,
}

const REJECTED: (&str, &str) = (
    "switchyard_queue_rejected_total",
    "Requests refused because every server was at its max_in_flight, by reason \
     (full, timeout, deadline)",
);
const LENGTH: (&str, &str) = (
    "switchyard_queue_length",
    "Requests waiting for a free server",
);
const WAIT: (&str, &str) = (
    "switchyard_queue_wait_seconds",
    "Time requests waited in an upstream's queue",
);

const BUDGET: (&str, &str) = (
    "switchyard_retry_budget_exhausted_total",
    "Retries denied by the upstream's retry budget",
);

const LIMITED: (&str, &str) = (
    "switchyard_rate_limited_total",
    "Requests answered 429 by the route's rate limit",
);

fn wait_opts() -> HistogramOpts {
    // 1 ms .. ~33 s.
    HistogramOpts::new(WAIT.0, WAIT.1).buckets(
        exponential_buckets(0.001, 2.0, 16).unwrap_or_else(|_| prometheus::DEFAULT_BUCKETS.into()),
    )
}

fn build() -> prometheus::Result<Resilience> {
    Ok(Resilience {
        queue_rejected_total: register_int_counter_vec!(
            REJECTED.0,
            REJECTED.1,
            &["upstream", "reason"]
        )?,
        queue_length: register_int_gauge_vec!(LENGTH.0, LENGTH.1, &["upstream"])?,
        queue_wait_seconds: register_histogram_vec!(wait_opts(), &["upstream"])?,
        retry_budget_exhausted_total: register_int_counter_vec!(BUDGET.0, BUDGET.1, &["upstream"])?,
        rate_limited_total: register_int_counter_vec!(LIMITED.0, LIMITED.1, &["route"])?,
    })
}

#[allow(clippy::expect_used)]
fn unregistered() -> Resilience {
    // Only reached when the names were already taken; the options are constant and valid.
    Resilience {
        queue_rejected_total: IntCounterVec::new(
            Opts::new(REJECTED.0, REJECTED.1),
            &["upstream", "reason"],
        )
        .expect("valid opts"),
        queue_length: IntGaugeVec::new(Opts::new(LENGTH.0, LENGTH.1), &["upstream"])
            .expect("valid opts"),
        queue_wait_seconds: HistogramVec::new(wait_opts(), &["upstream"]).expect("valid opts"),
        retry_budget_exhausted_total: IntCounterVec::new(
            Opts::new(BUDGET.0, BUDGET.1),
            &["upstream"],
        )
        .expect("valid opts"),
        rate_limited_total: IntCounterVec::new(Opts::new(LIMITED.0, LIMITED.1), &["route"])
            .expect("valid opts"),
    }
}

static GLOBAL: OnceLock<Resilience> = OnceLock::new();

impl Resilience {
    /// The process-wide families, registered on first use (created unregistered if the names
    /// were taken, rather than panicking).
    pub fn global() -> &'static Resilience {
        GLOBAL.get_or_init(|| build().unwrap_or_else(|_| unregistered()))
    }

    /// The queue handles of `upstream`.
    pub fn queue(&self, upstream: &str) -> QueueMetrics {
        let rejected = |r: &str| self.queue_rejected_total.with_label_values(&[upstream, r]);
        QueueMetrics {
            rejected_full: rejected("full"),
            rejected_timeout: rejected("timeout"),
            rejected_deadline: rejected("deadline"),
            length: self.queue_length.with_label_values(&[upstream]),
            wait: self.queue_wait_seconds.with_label_values(&[upstream]),
        }
    }
}
