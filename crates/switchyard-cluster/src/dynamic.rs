//! Dynamic servers: `<prefix>/upstreams/<upstream>/servers/<group>/<host:port>` keys (JSON
//! `weight`, `standby`, `enabled`; defaults: the group's weight, false, true) join their group
//! like DNS answers do. They are added to the composed configuration, so a new server goes
//! through the same rules as one in the file (checked before traffic when active health checks
//! are on) and a removed one leaves on the next apply while its in-flight requests finish.
//!
//! A key whose upstream or group is not in the document, whose JSON is invalid or whose server
//! the document already lists is ignored and reported.

use std::collections::BTreeMap;

use serde::Deserialize;
use switchyard_config::{Config, ServerEntry};

/// The JSON value of a server key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerValue {
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    standby: bool,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// Splits `host:port` (`[v6]:port` for IPv6) into address and port.
///
/// ```
/// use switchyard_cluster::dynamic::split_host_port;
/// assert_eq!(split_host_port("127.0.0.1:80"), Some(("127.0.0.1".to_string(), 80)));
/// assert_eq!(split_host_port("[::1]:8080"), Some(("::1".to_string(), 8080)));
/// assert_eq!(split_host_port("api.local:0"), None);
/// assert_eq!(split_host_port("nope"), None);
/// ```
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// `host:port` of an address as identities spell it (IPv6 in brackets).
fn host_port_of(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// Adds the servers of `keys` ((upstream, group, host:port) → JSON) to their groups in `cfg`;
/// returns one message per key that was ignored.
pub fn merge(cfg: &mut Config, keys: &BTreeMap<(String, String, String), String>) -> Vec<String> {
    let mut problems = Vec::new();
    for ((upstream, group, host_port), json) in keys {
        let what = format!("dynamic server {upstream}/{group}/{host_port}");
        let value: ServerValue = match crate::json_value::parse(&what, json) {
            Ok(v) => v,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let Some((address, port)) = split_host_port(host_port) else {
            problems.push(format!("{what}: ignored, the key must end in host:port"));
            continue;
        };
        let Some(up) = cfg.upstreams.iter_mut().find(|u| &u.name == upstream) else {
            problems.push(format!(
                "{what}: ignored, no upstream {upstream} in the document"
            ));
            continue;
        };
        let up_port = up.port;
        let hp = host_port_of(&address, port);
        // host:port is unique within an upstream, whatever the group.
        if up.groups.iter().any(|g| {
            g.servers
                .iter()
                .any(|s| s.host_port(s.effective_port(up_port)) == hp)
        }) {
            problems.push(format!("{what}: ignored, the upstream already has {hp}"));
            continue;
        }
        let Some(g) = up.groups.iter_mut().find(|g| &g.name == group) else {
            problems.push(format!(
                "{what}: ignored, upstream {upstream} has no group {group} in the document"
            ));
            continue;
        };
        let entry = ServerEntry {
            address,
            port,
            weight: value.weight,
            standby: value.standby,
            enabled: value.enabled,
            // The upstream's `max_in_flight_per_server` applies to dynamic servers.
            max_in_flight: None,
        };
        g.servers.push(entry);
    }
    problems
}

impl crate::json_value::Weighted for ServerValue {
    fn weight(&self) -> Option<u32> {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let text =
            "[[upstreams]]\nname = \"api\"\n[[upstreams.groups]]\nname = \"g\"\nweight = 7\n\
                    servers = [{ address = \"127.0.0.1\", port = 9 }]\n";
        match switchyard_config::parse_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn key(up: &str, g: &str, hp: &str) -> (String, String, String) {
        (up.into(), g.into(), hp.into())
    }

    #[test]
    fn servers_join_their_group_with_defaults() {
        let mut c = cfg();
        let mut keys = BTreeMap::new();
        keys.insert(key("api", "g", "127.0.0.1:10"), "{}".to_string());
        keys.insert(
            key("api", "g", "[::1]:11"),
            r#"{"weight": 3, "standby": true}"#.to_string(),
        );
        assert!(merge(&mut c, &keys).is_empty());
        let s = &c.upstreams[0].groups[0].servers;
        assert_eq!(s.len(), 3);
        assert_eq!(s[2].address, "::1");
        assert_eq!(
            (s[2].weight, s[2].standby, s[2].enabled),
            (Some(3), true, true)
        );
        assert_eq!(s[1].weight, None, "the group's weight applies");
        assert!(switchyard_config::validate(&c).is_ok());
    }

    #[test]
    fn bad_keys_are_reported_and_skipped() {
        let mut c = cfg();
        let mut keys = BTreeMap::new();
        keys.insert(key("api", "nope", "127.0.0.1:10"), "{}".to_string());
        keys.insert(key("web", "g", "127.0.0.1:10"), "{}".to_string());
        keys.insert(key("api", "g", "127.0.0.1:9"), "{}".to_string());
        keys.insert(
            key("api", "g", "127.0.0.1:12"),
            "{\"weight\": -1}".to_string(),
        );
        keys.insert(
            key("api", "g", "127.0.0.1:13"),
            "{\"colour\": 1}".to_string(),
        );
        keys.insert(
            key("api", "g", "127.0.0.1:14"),
            "{\"weight\": 10001}".to_string(),
        );
        let problems = merge(&mut c, &keys);
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("has no group nope")));
        assert!(problems
            .iter()
            .any(|p| p.contains("already has 127.0.0.1:9")));
        assert_eq!(c.upstreams[0].groups[0].servers.len(), 1);
    }
}
