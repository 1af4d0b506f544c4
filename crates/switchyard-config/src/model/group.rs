//! `[[upstreams.groups]]` and their `[[upstreams.groups.servers]]`.

use serde::{Deserialize, Deserializer, Serialize};

use super::defaults::default_true;

/// `[[upstreams.groups]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// `name`: unique within the upstream; part of each server's identity.
    pub name: String,
    /// `weight`: default weight of its servers, 0..=10000. Default 1.
    #[serde(default = "default_weight", deserialize_with = "de_weight")]
    pub weight: u32,
    /// `[[upstreams.groups.servers]]`.
    #[serde(default)]
    pub servers: Vec<ServerEntry>,
}

fn default_weight() -> u32 {
    1
}

/// A weight: a non-negative integer (the upper bound, 10000, is checked by validation so that
/// it is reported together with every other error).
fn de_weight<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v).map_err(|_| {
        serde::de::Error::custom(format!("weight must be between 0 and 10000, got {v}"))
    })
}

fn de_opt_weight<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    de_weight(d).map(Some)
}

/// `[[upstreams.groups.servers]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// `address`: an IP address or a domain name.
    pub address: String,
    /// `port`: 0 = the upstream's port. Default 0.
    #[serde(default)]
    pub port: u16,
    /// `weight`: overrides the group's weight, 0..=10000; 0 = drain.
    #[serde(default, deserialize_with = "de_opt_weight")]
    pub weight: Option<u32>,
    /// `standby`: used only when no non-standby server is available. Default false.
    #[serde(default)]
    pub standby: bool,
    /// `enabled`: false = receives nothing. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `max_in_flight`: this server's limit of requests in flight, replacing the upstream's
    /// `max_in_flight_per_server` (higher or lower); 0 = unlimited.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
}

impl ServerEntry {
    /// The server's effective port given its upstream's default port.
    pub fn effective_port(&self, upstream_port: u16) -> u16 {
        if self.port == 0 {
            upstream_port
        } else {
            self.port
        }
    }

    /// The server's effective weight given its group's weight.
    pub fn effective_weight(&self, group_weight: u32) -> u32 {
        self.weight.unwrap_or(group_weight)
    }

    /// The server's in-flight limit given its upstream's `max_in_flight_per_server` (0 =
    /// unlimited).
    pub fn effective_max_in_flight(&self, upstream_default: u32) -> u32 {
        self.max_in_flight.unwrap_or(upstream_default)
    }

    /// `host:port` as used in the server's identity (`group/host:port`) and in the admin API;
    /// IPv6 addresses are bracketed.
    ///
    /// ```
    /// # let cfg = switchyard_config::parse_str(r#"
    /// # [[upstreams]]
    /// # name = "api"
    /// #   [[upstreams.groups]]
    /// #   name = "blue"
    /// #   servers = [{ address = "::1" }, { address = "10.0.0.1", port = 81 }]
    /// # "#).unwrap();
    /// let up = &cfg.upstreams[0];
    /// let s = &up.groups[0].servers;
    /// assert_eq!(s[0].host_port(s[0].effective_port(up.port)), "[::1]:80");
    /// assert_eq!(s[1].host_port(s[1].effective_port(up.port)), "10.0.0.1:81");
    /// ```
    pub fn host_port(&self, port: u16) -> String {
        if self.address.contains(':') {
            format!("[{}]:{port}", self.address)
        } else {
            format!("{}:{port}", self.address)
        }
    }
}
