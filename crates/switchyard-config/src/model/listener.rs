//! `[[listeners]]`: the sockets Switchyard accepts on, and their protocol.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::cidr::Cidr;
use super::defaults::default_connect_timeout_ms;
use super::listener_tls::ListenerTls;
use super::proxy_protocol::ProxyProtocol;

/// A listener's protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// Plain HTTP/1.1 (and h2c prior knowledge).
    #[default]
    Http,
    /// HTTPS: TLS termination with `tls = { cert, key }`.
    Https,
    /// Byte-for-byte TCP proxying to `upstream`.
    Tcp,
}

/// `[[listeners]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `name`: unique; routes refer to it.
    pub name: String,
    /// `protocol`: `http` | `https` | `tcp`. Default `http`.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// `listen`: the socket address to bind.
    pub listen: SocketAddr,
    /// `tls`: certificate and key (PEM), required for `https`.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// `upstream`: for `tcp` listeners, the upstream to proxy to.
    #[serde(default)]
    pub upstream: Option<String>,
    /// `proxy_protocol`: PROXY header sent to backends of a `tcp` listener. Default `off`.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// `accept_proxy_protocol`: expect a PROXY header (v1 or v2) from a load balancer in front.
    #[serde(default)]
    pub accept_proxy_protocol: bool,
    /// `accept_proxy_protocol_from`: with `accept_proxy_protocol`, the peers (load balancers)
    /// expected to send the header; other peers are served as direct clients, and a PROXY header
    /// from them is not believed. Empty = every peer must send one. Default empty.
    #[serde(default)]
    pub accept_proxy_protocol_from: Vec<Cidr>,
    /// `allow`: client CIDRs allowed; empty = all.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// `deny`: client CIDRs denied; deny wins over allow.
    #[serde(default)]
    pub deny: Vec<Cidr>,
    /// `connect_timeout_ms`: for `tcp` listeners, the backend connect timeout. Default 1000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// `idle_timeout_ms`: for `tcp` listeners, close a connection idle in both directions this long.
    /// Default 600000 (10 minutes).
    #[serde(default = "default_tcp_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

impl ListenerConfig {
    /// True if a connection from `peer` must start with a PROXY header: `accept_proxy_protocol`
    /// is on and `peer` is in `accept_proxy_protocol_from` (or that list is empty). A peer whose
    /// address is unknown is expected to send one only when the list is empty.
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[listeners]]
    /// name = "web"
    /// listen = "0.0.0.0:8080"
    /// accept_proxy_protocol = true
    /// accept_proxy_protocol_from = ["10.0.0.0/8"]
    /// "#).unwrap();
    /// let web = &cfg.listeners[0];
    /// assert!(web.expects_proxy_header_from(Some("10.1.2.3".parse().unwrap())));
    /// assert!(!web.expects_proxy_header_from(Some("192.0.2.7".parse().unwrap())));
    /// assert!(!web.expects_proxy_header_from(None));
    /// ```
    pub fn expects_proxy_header_from(&self, peer: Option<IpAddr>) -> bool {
        self.accept_proxy_protocol
            && (self.accept_proxy_protocol_from.is_empty()
                || peer.is_some_and(|ip| {
                    self.accept_proxy_protocol_from
                        .iter()
                        .any(|c| c.contains(ip))
                }))
    }
}

fn default_tcp_idle_timeout_ms() -> u64 {
    600_000
}
