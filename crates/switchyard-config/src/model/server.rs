//! `[server]`: process-wide settings, and the syntax of a `resolvers` entry.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `instance_id`: names this instance in `CDN-Loop`, cascading and metrics. Default `"switchyard"`.
    pub instance_id: String,
    /// `threads`: worker threads per service. Default 1.
    pub threads: usize,
    /// `grace_period_s`: how long SIGTERM waits for in-flight requests. Default 30.
    pub grace_period_s: u64,
    /// `work_stealing`: let idle worker threads steal tasks. Default `false` (measured faster).
    pub work_stealing: bool,
    /// `pid_file`: where the process writes its PID. Default `/tmp/switchyard.pid`.
    pub pid_file: String,
    /// `upgrade_sock`: the socket used to hand listeners to a new process on graceful upgrade.
    /// Default `/tmp/switchyard_upgrade.sock`.
    pub upgrade_sock: String,
    /// `resolvers`: DNS servers that resolve server names, each `"ip:port"` or `"ip"` (port 53),
    /// like NGINX's `resolver` directive. Empty (the default) = the system's `/etc/resolv.conf`.
    pub resolvers: Vec<String>,
}

impl ServerConfig {
    /// The configured `resolvers` as socket addresses (`"ip"` means port 53); entries that do
    /// not parse are skipped (validation rejects them).
    ///
    /// ```
    /// let mut s = switchyard_config::ServerConfig::default();
    /// s.resolvers = vec!["127.0.0.1:5353".into(), "::1".into()];
    /// let addrs = s.resolver_addrs();
    /// assert_eq!(addrs[0].to_string(), "127.0.0.1:5353");
    /// assert_eq!(addrs[1].to_string(), "[::1]:53");
    /// ```
    pub fn resolver_addrs(&self) -> Vec<SocketAddr> {
        self.resolvers
            .iter()
            .filter_map(|r| parse_resolver(r).ok())
            .collect()
    }
}

/// Parses one `[server].resolvers` entry: `"ip:port"`, `"[v6]:port"` or a bare IP (port 53).
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "`{s}` is not a resolver address; write \"ip:port\" (e.g. \"127.0.0.1:53\", \"[::1]:53\") or a bare IP for port 53"
    ))
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            instance_id: "switchyard".to_string(),
            threads: 1,
            grace_period_s: 30,
            work_stealing: false,
            pid_file: "/tmp/switchyard.pid".to_string(),
            upgrade_sock: "/tmp/switchyard_upgrade.sock".to_string(),
            resolvers: Vec::new(),
        }
    }
}
