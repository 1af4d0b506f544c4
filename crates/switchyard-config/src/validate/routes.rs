//! Rules of `[[routes]]`: listeners, hosts, the `path` pattern, methods, the upstream, retries and
//! the rewrite.

use std::collections::{BTreeSet, HashMap};

use super::backend_path::check_backend_path;
use super::syntax::{check_dns_name, check_host_header, is_tchar};
use super::{known, Validator, MAX_RETRIES};
use crate::model::{Config, ListenerProtocol, RouteConfig};
use crate::path_pattern::PathPattern;

impl Validator {
    pub(super) fn routes(&mut self, cfg: &Config) {
        let mut names = HashMap::new();
        for (i, r) in cfg.routes.iter().enumerate() {
            let p = format!("routes[{i}]");
            self.name("route", format!("{p}.name"), &r.name, &mut names);
            self.route(cfg, &p, r);
        }
    }

    fn route(&mut self, cfg: &Config, p: &str, r: &RouteConfig) {
        let mut seen = BTreeSet::new();
        for (k, name) in r.listeners.iter().enumerate() {
            let path = format!("{p}.listeners[{k}]");
            if !seen.insert(name.as_str()) {
                self.err(path, format!("listener `{name}` is listed twice"));
                continue;
            }
            match cfg.listeners.iter().find(|l| &l.name == name) {
                None => self.err(
                    path,
                    format!(
                        "unknown listener `{name}`{}",
                        known(cfg.listeners.iter().map(|l| &l.name))
                    ),
                ),
                Some(l) if l.protocol == ListenerProtocol::Tcp => self.err(
                    path,
                    format!(
                        "listener `{name}` is a tcp listener; routes apply only to http/https listeners"
                    ),
                ),
                Some(_) => {}
            }
        }

        for (k, h) in r.hosts.iter().enumerate() {
            if let Err(msg) = check_host_pattern(h) {
                self.err(format!("{p}.hosts[{k}]"), msg);
            }
        }

        let mut captures = Vec::new();
        match (&r.path, &r.path_prefix) {
            (Some(_), Some(_)) => self.err(
                format!("{p}.path_prefix"),
                "`path` and `path_prefix` are mutually exclusive; set one of them",
            ),
            (Some(path), None) => match PathPattern::parse(path) {
                Ok(pattern) => captures = pattern.param_names().map(String::from).collect(),
                Err(e) => self.err(format!("{p}.path"), e.to_string()),
            },
            (None, Some(prefix)) => {
                if !prefix.starts_with('/') {
                    self.err(format!("{p}.path_prefix"), "must start with `/`");
                } else if prefix.contains(['{', '}']) {
                    self.err(
                        format!("{p}.path_prefix"),
                        "a prefix cannot capture `{params}`; use `path` for that",
                    );
                }
            }
            (None, None) => {}
        }

        let mut methods = BTreeSet::new();
        for (k, m) in r.methods.iter().enumerate() {
            let path = format!("{p}.methods[{k}]");
            if m.is_empty() || !m.bytes().all(is_tchar) || m.bytes().any(|b| b.is_ascii_lowercase())
            {
                self.err(
                    path,
                    format!(
                        "`{m}` is not an HTTP method; write methods in upper case, like \"GET\""
                    ),
                );
            } else if !methods.insert(m.as_str()) {
                self.err(path, format!("method `{m}` is listed twice"));
            }
        }

        let upstream = cfg.upstream(&r.upstream);
        if upstream.is_none() {
            self.err(
                format!("{p}.upstream"),
                format!(
                    "unknown upstream `{}`{}",
                    r.upstream,
                    known(cfg.upstreams.iter().map(|u| &u.name))
                ),
            );
        }

        if !(-1..=MAX_RETRIES).contains(&r.retries) {
            self.err(
                format!("{p}.retries"),
                format!("must be between -1 and {MAX_RETRIES}, got {}", r.retries),
            );
        } else if r.retries > 0 {
            if let Some(u) = upstream {
                let enabled = u.enabled_server_count();
                if r.retries as usize >= enabled {
                    self.err(
                        format!("{p}.retries"),
                        format!(
                            "{} retries need at least {} enabled servers in upstream `{}`, which has {enabled} \
                             (a retry never reuses a server already tried)",
                            r.retries,
                            r.retries + 1,
                            u.name
                        ),
                    );
                }
            }
        }
        self.positive(format!("{p}.timeout_ms"), r.timeout_ms);
        self.positive(format!("{p}.connect_timeout_ms"), r.connect_timeout_ms);
        self.positive(format!("{p}.tunnel_timeout_ms"), r.tunnel_timeout_ms);

        if let Some(bp) = &r.backend_path {
            for msg in check_backend_path(bp, &cfg.variables, &captures, r.path.is_some()) {
                self.err(format!("{p}.backend_path"), msg);
            }
        }
        if let Some(h) = &r.host_header {
            if let Err(msg) = check_host_header(h) {
                self.err(format!("{p}.host_header"), msg);
            }
        }
        if r.require_cascade && cfg.cascade.is_none() {
            self.err(
                format!("{p}.require_cascade"),
                "`require_cascade = true` needs a [cascade] table (key_env, allowed_instances)",
            );
        }
    }
}

/// `hosts` entries: a host name (no port) or `*.suffix`.
fn check_host_pattern(h: &str) -> Result<(), String> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    if name.contains('*') {
        return Err(format!(
            "`{h}`: a wildcard is only allowed as a leading `*.` (like \"*.example.com\")"
        ));
    }
    if name.contains(':') {
        return Err(format!(
            "`{h}`: write host names without a port (the port of the Host header is ignored)"
        ));
    }
    check_dns_name(name)
}
