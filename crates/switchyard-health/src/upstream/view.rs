//! Read-only views of the servers' health, for the admin API and the status page.

use super::*;

/// A server's state as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Active checks are configured and the server has not been checked yet: out of rotation.
    Pending,
    /// In rotation.
    Healthy,
    /// Failed its active checks.
    Unhealthy,
    /// Ejected by passive outlier detection.
    Ejected,
}

impl ServerState {
    /// `pending`, `healthy`, `unhealthy` or `ejected`.
    ///
    /// ```
    /// assert_eq!(switchyard_health::ServerState::Ejected.as_str(), "ejected");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Pending => "pending",
            ServerState::Healthy => "healthy",
            ServerState::Unhealthy => "unhealthy",
            ServerState::Ejected => "ejected",
        }
    }
}

/// A read-only view of one server's health, for the admin API and status page.
///
/// ```
/// # use std::sync::Arc;
/// # use switchyard_balance::{Algorithm, Pool, PoolOptions, ServerSpec, StatsStore};
/// use switchyard_health::{HealthSpec, ProbeSpec};
/// let checks = HealthSpec { active: Some(ProbeSpec::tcp()), passive: None };
/// let spec = ServerSpec::new("blue", "127.0.0.1:9".parse().unwrap(), 1);
/// let opts = PoolOptions::new(Algorithm::Wrr).initially_healthy(false);
/// let pool = Arc::new(Pool::new("api", opts, vec![spec], Arc::new(StatsStore::default())));
/// let health = switchyard_health::UpstreamHealth::new(pool, &checks).unwrap();
/// let view = &health.servers()[0];
/// assert_eq!(view.id.as_str(), "blue/127.0.0.1:9");
/// assert_eq!(view.state.as_str(), "pending"); // not checked yet: out of rotation
/// assert!(!view.healthy && view.last_check.is_none() && view.reason.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealthView {
    /// The server's identity.
    pub id: ServerId,
    /// Its state.
    pub state: ServerState,
    /// The verdict the selectors read (healthy and not ejected).
    pub healthy: bool,
    /// Consecutive passing active checks.
    pub consecutive_passes: u32,
    /// Consecutive failing active checks.
    pub consecutive_failures: u32,
    /// Consecutive passive failures (proxied responses).
    pub passive_failures: u32,
    /// How long the server has been ejected, if it is.
    pub ejected_for_ms: Option<u64>,
    /// The last active check's result.
    pub last_check: Option<CheckResult>,
    /// Wall-clock time of the last transition.
    pub last_transition: Option<SystemTime>,
    /// Milliseconds since the last transition (by the pool's clock).
    pub last_transition_ago_ms: Option<u64>,
    /// Why the last transition happened, e.g. `unhealthy: 3 consecutive failed checks (last:
    /// HTTP 503 from /health)`.
    pub reason: Option<String>,
}

impl Inner {
    pub(super) fn view(&self, entry: &Entry) -> ServerHealthView {
        let st = lock(&entry.state);
        let now = self.clock.now_nanos();
        let m = &st.machine;
        let state = if m.ejected_since().is_some() {
            ServerState::Ejected
        } else if !m.checked() {
            ServerState::Pending
        } else if m.active_healthy() {
            ServerState::Healthy
        } else {
            ServerState::Unhealthy
        };
        ServerHealthView {
            id: entry.id.clone(),
            state,
            healthy: m.verdict(),
            consecutive_passes: m.successes(),
            consecutive_failures: m.failures(),
            passive_failures: entry.passive.get(),
            ejected_for_ms: m
                .ejected_since()
                .map(|since| now.saturating_sub(since) / 1_000_000),
            last_check: st.last_check.clone(),
            last_transition: st.last_change.map(|(_, wall)| wall),
            last_transition_ago_ms: st
                .last_change
                .map(|(ns, _)| now.saturating_sub(ns) / 1_000_000),
            reason: st.reason.clone(),
        }
    }
}
