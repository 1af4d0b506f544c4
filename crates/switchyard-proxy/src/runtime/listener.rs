//! Listeners at run time: their configuration and the router of the routes they serve.

use std::net::IpAddr;
use std::sync::Arc;

use switchyard_config::{Cidr, Config, ListenerConfig, ListenerProtocol};

use crate::listener_tls::ListenerTlsRuntime;
use crate::router::{RouteSpec, Router};

/// A listener's request-path view.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// As configured.
    pub cfg: ListenerConfig,
    /// Routes served on this listener.
    pub router: Router,
    /// `https` listeners: certificates, client verification and versions, read from their files
    /// when this runtime was built.
    pub tls: Option<Arc<ListenerTlsRuntime>>,
}

impl ListenerRuntime {
    /// True if the client may use this listener (deny wins over allow; empty allow = all).
    pub fn admits(&self, ip: IpAddr) -> bool {
        admits(&self.cfg.allow, &self.cfg.deny, ip)
    }
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub fn scheme(&self) -> &'static str {
        match self.cfg.protocol {
            ListenerProtocol::Https => "https",
            _ => "http",
        }
    }
}

/// Security-group check shared by HTTP and TCP listeners.
pub fn admits(allow: &[Cidr], deny: &[Cidr], ip: IpAddr) -> bool {
    if deny.iter().any(|c| c.contains(ip)) {
        return false;
    }
    allow.is_empty() || allow.iter().any(|c| c.contains(ip))
}

/// The listeners of `cfg`, each with a router over the routes it serves (a route without
/// `listeners` is served by every HTTP listener).
pub(super) fn build(cfg: &Config) -> Vec<ListenerRuntime> {
    cfg.listeners
        .iter()
        .map(|l| {
            let specs = cfg
                .routes
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    if r.listeners.is_empty() {
                        l.protocol != ListenerProtocol::Tcp
                    } else {
                        r.listeners.iter().any(|n| n == &l.name)
                    }
                })
                .map(|(i, r)| RouteSpec {
                    hosts: r.hosts.clone(),
                    path: r.path.clone(),
                    path_prefix: r.path_prefix.clone(),
                    methods: r.methods.clone(),
                    payload: i,
                })
                .collect();
            ListenerRuntime {
                cfg: l.clone(),
                router: Router::new(specs),
                tls: None,
            }
        })
        .collect()
}
