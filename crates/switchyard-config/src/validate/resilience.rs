//! Rules of the resilience keys: queue size and timeout, retry budget (`[[upstreams]]`), and
//! `retry_on_statuses` (`[[routes]]`).

use super::Validator;
use crate::model::{Config, UpstreamConfig};

/// The largest `queue_size`: a queued request holds its client connection and a little memory;
/// a million is far beyond anything one instance should hold waiting.
const MAX_QUEUE_SIZE: u32 = 1_000_000;

/// The longest `slow_start_ms`: one hour (longer ramps are more likely a unit mistake, such as
/// seconds written as milliseconds times a thousand, than a plan).
pub(crate) const MAX_SLOW_START_MS: u64 = 3_600_000;

impl Validator {
    pub(super) fn resilience(&mut self, cfg: &Config) {
        for (i, u) in cfg.upstreams.iter().enumerate() {
            self.upstream_resilience(&format!("upstreams[{i}]"), u);
        }
        for (i, r) in cfg.routes.iter().enumerate() {
            if let Some(rl) = &r.rate_limit {
                let p = format!("routes[{i}].rate_limit");
                if !(rl.requests_per_s.is_finite() && rl.requests_per_s > 0.0) {
                    self.err(
                        format!("{p}.requests_per_s"),
                        format!("must be greater than 0, got {}", rl.requests_per_s),
                    );
                }
                if rl.burst == Some(0) {
                    self.err(format!("{p}.burst"), "must be at least 1");
                }
            }
            for (j, status) in r.retry_on_statuses.iter().enumerate() {
                if !(400..=599).contains(status) {
                    self.err(
                        format!("routes[{i}].retry_on_statuses[{j}]"),
                        format!("must be an error status, 400..=599, got {status}"),
                    );
                }
            }
        }
    }

    fn upstream_resilience(&mut self, p: &str, u: &UpstreamConfig) {
        if u.queue_size > MAX_QUEUE_SIZE {
            self.err(
                format!("{p}.queue_size"),
                format!("must be at most {MAX_QUEUE_SIZE}, got {}", u.queue_size),
            );
        }
        self.positive(format!("{p}.queue_timeout_ms"), u.queue_timeout_ms);
        if u.slow_start_ms > MAX_SLOW_START_MS {
            self.err(
                format!("{p}.slow_start_ms"),
                format!(
                    "must be at most {MAX_SLOW_START_MS} (one hour), got {}",
                    u.slow_start_ms
                ),
            );
        }
        if u.retry_budget_percent > 100 {
            self.err(
                format!("{p}.retry_budget_percent"),
                format!("must be 0..=100, got {}", u.retry_budget_percent),
            );
        }
        if u.queue_size > 0
            && !u
                .servers()
                .any(|(_, s, _, _)| s.effective_max_in_flight(u.max_in_flight_per_server) > 0)
        {
            self.err(
                format!("{p}.queue_size"),
                "a queue needs a limit to wait for: set `max_in_flight_per_server` (or a \
                 server's `max_in_flight`)",
            );
        }
    }
}
