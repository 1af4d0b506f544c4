//! A server as snapshots and selectors see it: its spec and its long-lived stats.

use std::sync::Arc;

use crate::identity::ServerSpec;
use crate::stats::ServerStats;

/// A server in a snapshot: its spec and its long-lived stats.
#[derive(Debug, Clone)]
pub struct Server {
    /// As configured (possibly changed at run time).
    pub spec: ServerSpec,
    /// Shared with every other snapshot of the same identity.
    pub stats: Arc<ServerStats>,
}

impl Server {
    /// True if the server may take new requests in normal operation.
    pub fn is_available(&self) -> bool {
        self.spec.enabled && self.spec.weight > 0 && self.stats.is_healthy()
    }
}

impl Server {
    /// True if the server is below its `max_in_flight` (always, when it has none).
    #[inline]
    pub fn has_room(&self) -> bool {
        let limit = self.spec.max_in_flight;
        limit == 0 || self.stats.in_flight() < limit
    }
}
