//! Rules of `[[upstreams.groups]]` and their servers: names, weights, addresses and unique
//! `host:port` identities.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::syntax::check_dns_name;
use super::{Validator, MAX_WEIGHT};
use crate::model::UpstreamConfig;

impl Validator {
    /// The groups and servers of the upstream `u` at path `p` (`upstreams[i]`).
    pub(super) fn groups(&mut self, p: &str, u: &UpstreamConfig) {
        let mut groups = HashMap::new();
        let mut identities: HashMap<(String, u16), String> = HashMap::new();
        let mut servers = 0usize;
        for (g, group) in u.groups.iter().enumerate() {
            let gp = format!("{p}.groups[{g}]");
            self.name("group", format!("{gp}.name"), &group.name, &mut groups);
            if group.weight > MAX_WEIGHT {
                self.err(
                    format!("{gp}.weight"),
                    format!("must be between 0 and {MAX_WEIGHT}, got {}", group.weight),
                );
            }
            for (s, server) in group.servers.iter().enumerate() {
                servers += 1;
                let sp = format!("{gp}.servers[{s}]");
                if let Some(w) = server.weight {
                    if w > MAX_WEIGHT {
                        self.err(
                            format!("{sp}.weight"),
                            format!("must be between 0 and {MAX_WEIGHT}, got {w}"),
                        );
                    }
                }
                let host = match check_server_address(&server.address) {
                    Ok(h) => h,
                    Err(msg) => {
                        self.err(format!("{sp}.address"), msg);
                        continue;
                    }
                };
                let port = server.effective_port(u.port);
                if port == 0 {
                    self.err(
                        format!("{sp}.port"),
                        format!(
                            "no port: set `port` here or a default `port` on upstream `{}`",
                            u.name
                        ),
                    );
                    continue;
                }
                if let Some(first) = identities.get(&(host.clone(), port)) {
                    self.err(
                        format!("{sp}.address"),
                        format!(
                            "duplicate server {}: also at {first}; host:port must be unique within an upstream",
                            server.host_port(port)
                        ),
                    );
                } else {
                    identities.insert((host, port), sp);
                }
            }
        }
        if servers == 0 {
            self.err(
                format!("{p}.groups"),
                format!(
                    "upstream `{}` has no servers; add [[upstreams.groups]] with [[upstreams.groups.servers]]",
                    u.name
                ),
            );
        }
    }
}

/// A server address: an IP (no brackets, no port) or a DNS name. Returns the normalised host
/// used for the uniqueness check.
fn check_server_address(a: &str) -> Result<String, String> {
    if let Ok(ip) = a.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if a.parse::<SocketAddr>().is_ok()
        || a.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok() && !a.contains("::"))
    {
        return Err(format!(
            "`{a}` includes a port; put the host in `address` and the port in `port`"
        ));
    }
    if a.starts_with('[') {
        return Err(format!(
            "`{a}`: write IPv6 addresses without brackets, like \"::1\""
        ));
    }
    check_dns_name(a)
        .map_err(|_| format!("`{a}` is neither an IP address nor a valid DNS name"))?;
    Ok(a.trim_end_matches('.').to_ascii_lowercase())
}
