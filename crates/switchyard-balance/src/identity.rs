//! Backend identity and specification.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// A backend's stable identity: `group/host:port` (or `group/name:port#ip` for a DNS-resolved
/// server). Weight, standby and enabled flags are *not* part of it, so changing them keeps the
/// server's health, in-flight count and latency estimate.
///
/// ```
/// use switchyard_balance::ServerId;
/// let id = ServerId::new("blue", "10.0.0.1:80");
/// assert_eq!(id.as_str(), "blue/10.0.0.1:80");
/// assert_eq!(id.host_port(), "10.0.0.1:80");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(Arc<str>);

impl ServerId {
    /// Builds `group/host_port`.
    pub fn new(group: &str, host_port: &str) -> Self {
        ServerId(Arc::from(format!("{group}/{host_port}")))
    }
    /// Wraps an identity string as is.
    pub fn from_raw(raw: &str) -> Self {
        ServerId(Arc::from(raw))
    }
    /// The whole identity.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The group part.
    pub fn group(&self) -> &str {
        self.0.split_once('/').map(|(g, _)| g).unwrap_or("")
    }
    /// The `host:port` part (with any `#ip` suffix removed).
    pub fn host_port(&self) -> &str {
        let rest = self.0.split_once('/').map(|(_, r)| r).unwrap_or(&self.0);
        rest.split_once('#').map(|(hp, _)| hp).unwrap_or(rest)
    }
}

impl fmt::Debug for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One server as configured: identity, address and scheduling flags.
///
/// ```
/// use switchyard_balance::ServerSpec;
/// let s = ServerSpec::new("blue", "127.0.0.1:80".parse().unwrap(), 10).standby(true);
/// assert!(s.standby && s.enabled);
/// assert_eq!(s.id.as_str(), "blue/127.0.0.1:80");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Stable identity.
    pub id: ServerId,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Effective weight, 0..=10000; 0 = drain (no new requests).
    pub weight: u32,
    /// Used only when no non-standby server is available.
    pub standby: bool,
    /// False = receives nothing.
    pub enabled: bool,
    /// Most requests (or TCP connections) in flight at once; 0 = unlimited. A server at its
    /// limit is skipped by every selector like an unavailable one.
    pub max_in_flight: u32,
}

impl ServerSpec {
    /// A server of `group` at `addr` with `weight`, enabled and not standby.
    pub fn new(group: &str, addr: SocketAddr, weight: u32) -> Self {
        ServerSpec {
            id: ServerId::new(group, &addr.to_string()),
            addr,
            weight,
            standby: false,
            enabled: true,
            max_in_flight: 0,
        }
    }
    /// Sets the in-flight limit (0 = unlimited).
    pub fn max_in_flight(mut self, limit: u32) -> Self {
        self.max_in_flight = limit;
        self
    }
    /// Sets the standby flag.
    pub fn standby(mut self, standby: bool) -> Self {
        self.standby = standby;
        self
    }
    /// Sets the enabled flag.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
    /// Replaces the identity (e.g. `group/name:port#ip` for DNS-resolved servers).
    pub fn with_id(mut self, id: ServerId) -> Self {
        self.id = id;
        self
    }
}
