//! The servers already tried by one request.

use std::sync::Arc;

use crate::stats::ServerStats;

/// Maximum number of servers remembered; Pingora caps retries at 16 anyway.
pub const MAX_TRIED: usize = 16;

/// Servers one request has already tried, identified by their [`ServerStats`] (stable across
/// snapshot rebuilds). Inline, no allocation.
///
/// ```
/// use std::sync::Arc;
/// use switchyard_balance::{ServerStats, Tried};
/// let s = Arc::new(ServerStats::default());
/// let mut t = Tried::default();
/// assert!(!t.contains(&s));
/// t.insert(&s);
/// assert!(t.contains(&s));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Tried {
    ids: [usize; MAX_TRIED],
    len: usize,
}

impl Tried {
    /// Records a server.
    pub fn insert(&mut self, stats: &Arc<ServerStats>) {
        let key = Arc::as_ptr(stats) as usize;
        if !self.ids[..self.len].contains(&key) && self.len < MAX_TRIED {
            self.ids[self.len] = key;
            self.len += 1;
        }
    }
    /// True if the server was tried.
    pub fn contains(&self, stats: &Arc<ServerStats>) -> bool {
        let key = Arc::as_ptr(stats) as usize;
        self.ids[..self.len].contains(&key)
    }
    /// Number of servers tried.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True if nothing was tried yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
