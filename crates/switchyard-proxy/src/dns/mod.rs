//! DNS-named servers.
//!
//! A server whose `address` is a domain name becomes one server per resolved address, with the
//! identity `group/name:port#ip` (so an address that stays in the answer keeps its health,
//! in-flight count and latency estimate). Names are resolved with hickory through
//! `[server].resolvers` (like NGINX's `resolver`), or through the system's `/etc/resolv.conf` (and
//! hosts file) when that list is empty:
//!
//! - when a runtime is built, before any listener opens: at start-up a name that does not resolve
//!   is an error naming it; on reload a name that does not resolve keeps the addresses the running
//!   configuration had for it (and is an error only if it had none);
//! - then every `resolve_interval_ms` by one task per upstream with named servers, on the
//!   background runtime. A changed answer updates the pool (`Pool::update`) and the health
//!   checkers (`UpstreamHealth::sync_servers`): new addresses are new servers (with active checks
//!   they wait for their first passing check), vanished ones are removed. A failed or empty answer
//!   keeps that name's last good addresses. Every lookup is counted in
//!   `switchyard_dns_resolutions_total{upstream,result}` (`success` / `failure`); a name that starts
//!   or stops failing, and an answer that changes, is logged once.
//!
//! Answers are not cached between rounds: the interval, not the record TTL, sets how fresh the
//! set is (like NGINX's `resolver ... valid=`).
//!
//! The tasks stop when their runtime is replaced by a reload or when the server shuts down; a
//! reload holds [`DnsControl::pause`] while it builds, so an old task never applies a stale answer
//! over the new configuration.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | named servers, their identities, and the server specs built from answers |
//! | `resolve.rs` | the hickory resolver and one-off blocking resolution (start-up, reload) |
//! | `refresh.rs` | the per-upstream re-resolution tasks and their control |

mod refresh;
mod resolve;

pub use refresh::{count, start, DnsControl, Reresolve};
pub use resolve::{resolve_blocking, DnsError, DnsResolver};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use switchyard_balance::{ServerId, ServerSpec};
use switchyard_config::UpstreamConfig;

/// True if a server `address` is a domain name rather than an IP address.
pub fn is_name(address: &str) -> bool {
    address.parse::<IpAddr>().is_err()
}

/// One DNS-named server entry of an upstream: `group`, `name` as written, effective `port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedServer {
    /// The group it belongs to.
    pub group: String,
    /// The configured `address`.
    pub name: String,
    /// The effective port.
    pub port: u16,
}

impl NamedServer {
    /// The identity of the server at `ip`: `group/name:port#ip`.
    ///
    /// ```
    /// use switchyard_proxy::dns::NamedServer;
    /// let n = NamedServer { group: "blue".into(), name: "api.test".into(), port: 8080 };
    /// assert_eq!(n.id("127.0.0.3".parse().unwrap()).as_str(), "blue/api.test:8080#127.0.0.3");
    /// ```
    pub fn id(&self, ip: IpAddr) -> ServerId {
        ServerId::new(&self.group, &format!("{}:{}#{ip}", self.name, self.port))
    }

    /// True if `id` is one of this entry's resolved servers.
    pub fn owns(&self, id: &ServerId) -> bool {
        id.group() == self.group
            && id.as_str().contains('#')
            && id.host_port() == format!("{}:{}", self.name, self.port)
    }
}

/// Addresses by named server.
pub type Resolved = BTreeMap<NamedServer, Vec<IpAddr>>;

/// The named servers of an upstream, in configuration order.
pub fn named_servers(up: &UpstreamConfig) -> Vec<NamedServer> {
    let mut out = Vec::new();
    for group in &up.groups {
        for s in group.servers.iter().filter(|s| is_name(&s.address)) {
            let n = NamedServer {
                group: group.name.clone(),
                name: s.address.clone(),
                port: s.effective_port(up.port),
            };
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The addresses each named server of `up` has in `current` (the last good answers).
///
/// ```
/// # use switchyard_balance::ServerSpec;
/// use switchyard_proxy::dns::{last_good, named_servers};
/// let up: switchyard_config::UpstreamConfig = toml::from_str(
///     "name = \"api\"\nport = 80\n[[groups]]\nname = \"g\"\nservers = [{ address = \"a.test\" }]",
/// ).unwrap();
/// let n = &named_servers(&up)[0];
/// let ip = "10.0.0.1".parse().unwrap();
/// let spec = ServerSpec { id: n.id(ip), ..ServerSpec::new("g", "10.0.0.1:80".parse().unwrap(), 1) };
/// assert_eq!(last_good(&up, &[spec])[n], vec![ip]);
/// ```
pub fn last_good(up: &UpstreamConfig, current: &[ServerSpec]) -> Resolved {
    let mut out = Resolved::new();
    for n in named_servers(up) {
        let ips: Vec<IpAddr> = current
            .iter()
            .filter(|s| n.owns(&s.id))
            .map(|s| s.addr.ip())
            .collect();
        if !ips.is_empty() {
            out.insert(n, ips);
        }
    }
    out
}

/// The server specs of `up`: one per IP server, one per resolved address of a named server (in
/// the order of `resolved`; a named server without an entry has no servers).
///
/// A spec whose identity is in `keep` is taken from there unchanged, so run-time changes (admin
/// API weight, drain, disable) survive a re-resolution; pass `&[]` to build from the file alone.
pub fn build_specs(
    up: &UpstreamConfig,
    resolved: &Resolved,
    keep: &[ServerSpec],
) -> Vec<ServerSpec> {
    let kept: HashMap<&ServerId, &ServerSpec> = keep.iter().map(|s| (&s.id, s)).collect();
    let mut specs = Vec::new();
    let mut seen = BTreeSet::new();
    for group in &up.groups {
        for s in &group.servers {
            let port = s.effective_port(up.port);
            let weight = s.effective_weight(group.weight);
            let addrs: Vec<(ServerId, SocketAddr)> = match s.address.parse::<IpAddr>() {
                Ok(ip) => {
                    let addr = SocketAddr::new(ip, port);
                    vec![(ServerId::new(&group.name, &addr.to_string()), addr)]
                }
                Err(_) => {
                    let n = NamedServer {
                        group: group.name.clone(),
                        name: s.address.clone(),
                        port,
                    };
                    resolved
                        .get(&n)
                        .map(|ips| {
                            ips.iter()
                                .map(|ip| (n.id(*ip), SocketAddr::new(*ip, port)))
                                .collect()
                        })
                        .unwrap_or_default()
                }
            };
            for (id, addr) in addrs {
                if !seen.insert(id.clone()) {
                    continue;
                }
                let spec = match kept.get(&id) {
                    Some(k) if k.addr == addr => (*k).clone(),
                    _ => ServerSpec {
                        id,
                        addr,
                        weight,
                        standby: s.standby,
                        enabled: s.enabled,
                        max_in_flight: s.effective_max_in_flight(up.max_in_flight_per_server),
                    },
                };
                specs.push(spec);
            }
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(text: &str) -> UpstreamConfig {
        toml::from_str(text).unwrap()
    }

    const UP: &str = r#"
name = "api"
port = 8080
[[groups]]
name = "blue"
weight = 5
servers = [{ address = "10.0.0.1" }, { address = "api.test" }, { address = "api.test", port = 9090, standby = true }]
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ids(specs: &[ServerSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn named_servers_and_identities() {
        let up = upstream(UP);
        let named = named_servers(&up);
        assert_eq!(named.len(), 2);
        assert_eq!(named[0].port, 8080);
        assert_eq!(named[1].port, 9090);
        let id = named[0].id(ip("127.0.0.2"));
        assert!(named[0].owns(&id));
        assert!(!named[1].owns(&id));
        assert!(!named[0].owns(&ServerId::new("blue", "api.test:8080")));
        assert!(!named[0].owns(&ServerId::new("green", "api.test:8080#127.0.0.2")));
    }

    #[test]
    fn specs_from_resolved_sets() {
        let up = upstream(UP);
        let named = named_servers(&up);
        let mut resolved = Resolved::new();
        resolved.insert(named[0].clone(), vec![ip("127.0.0.2"), ip("::1")]);
        let specs = build_specs(&up, &resolved, &[]);
        assert_eq!(
            ids(&specs),
            [
                "blue/10.0.0.1:8080",
                "blue/api.test:8080#127.0.0.2",
                "blue/api.test:8080#::1"
            ]
        );
        assert_eq!(specs[2].addr.to_string(), "[::1]:8080");
        assert_eq!(specs[1].weight, 5);
        resolved.insert(named[1].clone(), vec![ip("127.0.0.2")]);
        let specs = build_specs(&up, &resolved, &[]);
        assert_eq!(specs[3].id.as_str(), "blue/api.test:9090#127.0.0.2");
        assert!(specs[3].standby);
    }

    #[test]
    fn changed_answer_keeps_unchanged_servers_and_their_runtime_changes() {
        let up = upstream(UP);
        let named = named_servers(&up);
        let mut resolved = Resolved::new();
        resolved.insert(named[0].clone(), vec![ip("127.0.0.2"), ip("127.0.0.3")]);
        let mut current = build_specs(&up, &resolved, &[]);
        // An operator drained .3 and re-weighted the IP server at run time.
        current[2].weight = 0;
        current[0].weight = 7;
        // Same answer: nothing changes.
        assert_eq!(build_specs(&up, &resolved, &current), current);
        // .2 leaves, .4 joins: .3 keeps its run-time weight, .4 gets the file's.
        resolved.insert(named[0].clone(), vec![ip("127.0.0.3"), ip("127.0.0.4")]);
        let next = build_specs(&up, &resolved, &current);
        assert_eq!(
            ids(&next),
            [
                "blue/10.0.0.1:8080",
                "blue/api.test:8080#127.0.0.3",
                "blue/api.test:8080#127.0.0.4"
            ]
        );
        assert_eq!((next[0].weight, next[1].weight, next[2].weight), (7, 0, 5));
    }

    #[test]
    fn failed_lookup_keeps_the_last_good_set() {
        let up = upstream(UP);
        let named = named_servers(&up);
        let mut resolved = Resolved::new();
        resolved.insert(named[0].clone(), vec![ip("127.0.0.2")]);
        resolved.insert(named[1].clone(), vec![ip("127.0.0.5")]);
        let current = build_specs(&up, &resolved, &[]);
        // Round: named[0] fails (no entry), named[1] answers .6.
        let mut round = last_good(&up, &current);
        assert_eq!(round, resolved);
        round.insert(named[1].clone(), vec![ip("127.0.0.6")]);
        let next = build_specs(&up, &round, &current);
        assert_eq!(
            ids(&next),
            [
                "blue/10.0.0.1:8080",
                "blue/api.test:8080#127.0.0.2",
                "blue/api.test:9090#127.0.0.6"
            ]
        );
    }
}
