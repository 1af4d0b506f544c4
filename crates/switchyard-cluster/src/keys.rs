//! The fleet's key layout under `[cluster].prefix` (see `docs/fleet.md`):
//!
//! ```text
//! <prefix>/config                                          the shared TOML document
//! <prefix>/members/<instance_id>                           one live instance (leased)
//! <prefix>/overrides/<upstream>/<server>                   an admin change, JSON
//! <prefix>/upstreams/<upstream>/servers/<group>/<host:port> a dynamic server, JSON
//! ```

/// What one key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyKind {
    /// `<prefix>/config`.
    Config,
    /// `<prefix>/members/<instance_id>`.
    Member(String),
    /// `<prefix>/overrides/<upstream>/<server>`; `server` is `host:port` or `group/host:port`.
    Override {
        /// The upstream's name.
        upstream: String,
        /// The server it addresses.
        server: String,
    },
    /// `<prefix>/upstreams/<upstream>/servers/<group>/<host:port>`.
    Server {
        /// The upstream's name.
        upstream: String,
        /// The group the server joins.
        group: String,
        /// `host:port` (IPv6 in brackets).
        host_port: String,
    },
    /// Anything else under the prefix (ignored).
    Other,
}

/// Builds and reads the keys of one fleet.
///
/// ```
/// use switchyard_cluster::keys::{KeyKind, Keys};
/// let k = Keys::new("/sy/prod");
/// assert_eq!(k.config(), "/sy/prod/config");
/// assert_eq!(k.classify("/sy/prod/members/gw-1"), Some(KeyKind::Member("gw-1".into())));
/// assert_eq!(
///     k.classify("/sy/prod/upstreams/api/servers/blue/127.0.0.1:8080"),
///     Some(KeyKind::Server { upstream: "api".into(), group: "blue".into(), host_port: "127.0.0.1:8080".into() })
/// );
/// assert_eq!(k.classify("/sy/prodx/config"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys under `prefix` (`/switchyard/prod`; a trailing `/` is dropped).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// `<prefix>/`: every key of the fleet.
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// `<prefix>/config`.
    pub fn config(&self) -> String {
        format!("{}/config", self.prefix)
    }

    /// `<prefix>/members/<instance_id>`.
    pub fn member(&self, instance_id: &str) -> String {
        format!("{}/members/{instance_id}", self.prefix)
    }

    /// `<prefix>/overrides/<upstream>/<server>`.
    pub fn override_key(&self, upstream: &str, server: &str) -> String {
        format!("{}/overrides/{upstream}/{server}", self.prefix)
    }

    /// `<prefix>/upstreams/<upstream>/servers/<group>/<host:port>`.
    pub fn server(&self, upstream: &str, group: &str, host_port: &str) -> String {
        format!(
            "{}/upstreams/{upstream}/servers/{group}/{host_port}",
            self.prefix
        )
    }

    /// What `key` is, or `None` if it is not under the prefix.
    pub fn classify(&self, key: &str) -> Option<KeyKind> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let kind = if rest == "config" {
            KeyKind::Config
        } else if let Some(id) = rest.strip_prefix("members/") {
            KeyKind::Member(id.to_string())
        } else if let Some(o) = rest.strip_prefix("overrides/") {
            match o.split_once('/') {
                Some((up, server)) if !up.is_empty() && !server.is_empty() => KeyKind::Override {
                    upstream: up.to_string(),
                    server: server.to_string(),
                },
                _ => KeyKind::Other,
            }
        } else if let Some(u) = rest.strip_prefix("upstreams/") {
            let parts: Vec<&str> = u.splitn(4, '/').collect();
            match parts.as_slice() {
                [up, "servers", group, hp] if !hp.is_empty() && !hp.contains('/') => {
                    KeyKind::Server {
                        upstream: (*up).to_string(),
                        group: (*group).to_string(),
                        host_port: (*hp).to_string(),
                    }
                }
                _ => KeyKind::Other,
            }
        } else {
            KeyKind::Other
        };
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_keep_a_group_in_the_server() {
        let k = Keys::new("/p/");
        assert_eq!(
            k.override_key("api", "g/10.0.0.1:80"),
            "/p/overrides/api/g/10.0.0.1:80"
        );
        assert_eq!(
            k.classify("/p/overrides/api/g/10.0.0.1:80"),
            Some(KeyKind::Override {
                upstream: "api".into(),
                server: "g/10.0.0.1:80".into()
            })
        );
        assert_eq!(k.classify("/p/overrides/api"), Some(KeyKind::Other));
        assert_eq!(
            k.classify("/p/upstreams/api/servers/g"),
            Some(KeyKind::Other)
        );
        assert_eq!(
            k.classify("/p/upstreams/api/servers/g/a/b"),
            Some(KeyKind::Other)
        );
    }
}
