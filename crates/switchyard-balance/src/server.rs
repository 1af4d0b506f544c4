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
