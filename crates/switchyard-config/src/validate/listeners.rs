//! Rules of `[[listeners]]`: names, bound addresses, and what each protocol allows.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{known, Validator};
use crate::model::{
    Algorithm, ClientAuth, Config, HashOn, ListenerConfig, ListenerProtocol, ListenerTls,
    ProxyProtocol,
};

impl Validator {
    pub(super) fn listeners(&mut self, cfg: &Config) {
        let mut names = HashMap::new();
        // Every bound address with the key that binds it, for the conflict check.
        let mut bound: Vec<(SocketAddr, String)> = Vec::new();
        if let Some(m) = &cfg.metrics {
            bound.push((m.listen, "metrics.listen".to_string()));
        }
        if let Some(a) = &cfg.admin {
            let path = "admin.listen".to_string();
            if let Some((_, first)) = bound.iter().find(|(b, _)| addr_conflict(*b, a.listen)) {
                self.err(
                    path.clone(),
                    format!("address {} conflicts with {first}", a.listen),
                );
            }
            bound.push((a.listen, path));
        }
        for (i, l) in cfg.listeners.iter().enumerate() {
            let p = format!("listeners[{i}]");
            self.name("listener", format!("{p}.name"), &l.name, &mut names);
            let path = format!("{p}.listen");
            if let Some((_, first)) = bound.iter().find(|(b, _)| addr_conflict(*b, l.listen)) {
                self.err(
                    path.clone(),
                    format!("address {} conflicts with {first}", l.listen),
                );
            }
            bound.push((l.listen, path));
            self.listener(cfg, &p, l);
        }
    }

    fn listener(&mut self, cfg: &Config, p: &str, l: &ListenerConfig) {
        match l.protocol {
            ListenerProtocol::Https => match &l.tls {
                None => self.err(
                    format!("{p}.tls"),
                    "an https listener needs `tls = { cert = \"...\", key = \"...\" }`",
                ),
                Some(tls) => self.listener_tls(&format!("{p}.tls"), tls),
            },
            _ => {
                if l.tls.is_some() {
                    self.err(
                        format!("{p}.tls"),
                        "`tls` is only allowed on listeners with protocol = \"https\"",
                    );
                }
            }
        }
        if l.protocol == ListenerProtocol::Tcp {
            match &l.upstream {
                None => self.err(
                    format!("{p}.upstream"),
                    "a tcp listener needs `upstream` (the upstream to proxy to)",
                ),
                Some(u) if cfg.upstream(u).is_none() => self.err(
                    format!("{p}.upstream"),
                    format!(
                        "unknown upstream `{u}`{}",
                        known(cfg.upstreams.iter().map(|u| &u.name))
                    ),
                ),
                Some(u) => {
                    // A TCP connection has no URI, Host, header, cookie or query: only the
                    // client address can be hashed.
                    let up = cfg.upstream(u);
                    let hashes_other = up.is_some_and(|up| match up.algorithm {
                        Algorithm::UriHash => true,
                        Algorithm::ConsistentHash => {
                            up.hash_on.as_ref().is_some_and(|h| *h != HashOn::SourceIp)
                        }
                        _ => false,
                    });
                    if hashes_other {
                        self.err(
                            format!("{p}.upstream"),
                            format!(
                                "upstream `{u}` hashes on something a TCP connection does not \
                                 have; for tcp listeners use source_ip_hash or \
                                 consistent_hash with hash_on = \"source_ip\""
                            ),
                        );
                    }
                }
            }
        } else {
            if l.upstream.is_some() {
                self.err(
                    format!("{p}.upstream"),
                    "`upstream` is only allowed on tcp listeners; http listeners use [[routes]]",
                );
            }
            if l.proxy_protocol != ProxyProtocol::Off {
                self.err(
                    format!("{p}.proxy_protocol"),
                    "`proxy_protocol` on a listener is only for tcp listeners; \
                     for HTTP set it on the upstream (`upstreams[].proxy_protocol`)",
                );
            }
        }
        if !l.accept_proxy_protocol_from.is_empty() && !l.accept_proxy_protocol {
            self.err(
                format!("{p}.accept_proxy_protocol_from"),
                "`accept_proxy_protocol_from` lists the peers expected to send a PROXY header; \
                 it needs `accept_proxy_protocol = true`",
            );
        }
        self.positive(format!("{p}.connect_timeout_ms"), l.connect_timeout_ms);
        self.positive(format!("{p}.idle_timeout_ms"), l.idle_timeout_ms);
    }
}

impl Validator {
    /// `tls` of an `https` listener at `p`: every file named, and client auth with its CA.
    fn listener_tls(&mut self, p: &str, tls: &ListenerTls) {
        for (entry, cert, key) in tls.pairs() {
            let at = if entry.is_empty() {
                p.to_string()
            } else {
                format!("{p}.{entry}")
            };
            self.non_empty(format!("{at}.cert"), cert);
            self.non_empty(format!("{at}.key"), key);
        }
        match (&tls.client_ca, tls.client_auth) {
            (None, ClientAuth::Optional | ClientAuth::Required) => self.err(
                format!("{p}.client_auth"),
                "client_auth = \"optional\" or \"required\" needs `client_ca` (the CAs client \
                 certificates must chain to)",
            ),
            (Some(ca), _) => self.non_empty(format!("{p}.client_ca"), ca),
            (None, ClientAuth::Off) => {}
        }
    }
}

/// Two listen addresses conflict when they are equal, or share a port and family and one of them
/// is the wildcard address (`0.0.0.0` / `::`). Port 0 (an ephemeral port) never conflicts.
fn addr_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || b.port() == 0 || a.port() != b.port() {
        return false;
    }
    if a.is_ipv4() != b.is_ipv4() {
        return false;
    }
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}
