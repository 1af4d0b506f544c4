//! Rules of the resilience keys of `[[upstreams]]`: queue size and timeout.

use super::Validator;
use crate::model::{Config, UpstreamConfig};

/// The largest `queue_size`: a queued request holds its client connection and a little memory;
/// a million is far beyond anything one instance should hold waiting.
const MAX_QUEUE_SIZE: u32 = 1_000_000;

impl Validator {
    pub(super) fn resilience(&mut self, cfg: &Config) {
        for (i, u) in cfg.upstreams.iter().enumerate() {
            self.upstream_resilience(&format!("upstreams[{i}]"), u);
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
