//! Cross-field validation: everything serde cannot check on its own (names, references, ranges,
//! patterns). Every rule adds to one list, so a user sees all mistakes at once.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use crate::error::{ConfigError, ConfigErrors};
use crate::model::{
    ActiveHealthConfig, Algorithm, Config, HashOn, ListenerConfig, ListenerProtocol,
    PassiveHealthConfig, ProxyProtocol, RouteConfig, UpstreamConfig,
};
use crate::path_pattern::PathPattern;

/// Highest weight a group or server may have.
pub const MAX_WEIGHT: u32 = 10_000;
/// Highest `retries` a route may have.
pub const MAX_RETRIES: i32 = 10;
/// Most entries `[cascade].allowed_instances` may have.
pub const MAX_ALLOWED_INSTANCES: usize = 5;

/// Checks everything serde cannot: names, references, ranges. Errors carry key paths only; the
/// parser adds lines (see [`ConfigErrors::locate`]).
///
/// ```
/// let mut cfg = switchyard_config::Config::default();
/// cfg.server.threads = 0;
/// let errs = switchyard_config::validate(&cfg).unwrap_err();
/// assert_eq!(errs.errors[0].path, "server.threads");
/// ```
pub fn validate(cfg: &Config) -> Result<(), ConfigErrors> {
    let mut v = Validator::default();
    v.server(cfg);
    v.variables(cfg);
    v.admin_metrics(cfg);
    v.limits(cfg);
    v.listeners(cfg);
    v.routes(cfg);
    v.upstreams(cfg);
    v.cascade(cfg);
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors { errors: v.errors })
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn positive(&mut self, path: impl Into<String>, value: u64) {
        if value == 0 {
            self.err(path, "must be greater than 0");
        }
    }

    fn non_empty(&mut self, path: impl Into<String>, value: &str) {
        if value.trim().is_empty() {
            self.err(path, "must not be empty");
        }
    }

    /// Checks a name's characters and that it is unique among `seen`.
    fn name(&mut self, kind: &str, path: String, name: &str, seen: &mut HashMap<String, String>) {
        if let Err(msg) = check_name(name) {
            self.err(path.clone(), format!("{kind} name {msg}"));
            return;
        }
        if let Some(first) = seen.get(name) {
            self.err(
                path,
                format!("duplicate {kind} name `{name}` (first defined at {first})"),
            );
        } else {
            seen.insert(name.to_string(), path);
        }
    }

    fn server(&mut self, cfg: &Config) {
        let s = &cfg.server;
        if let Err(msg) = check_instance_id(&s.instance_id) {
            self.err("server.instance_id", msg);
        }
        if s.threads == 0 {
            self.err("server.threads", "must be at least 1");
        }
        self.non_empty("server.pid_file", &s.pid_file);
        self.non_empty("server.upgrade_sock", &s.upgrade_sock);
        for (i, r) in s.resolvers.iter().enumerate() {
            match crate::model::parse_resolver(r) {
                Ok(a) if a.port() == 0 => self.err(
                    format!("server.resolvers[{i}]"),
                    format!("`{r}`: port must be between 1 and 65535"),
                ),
                Ok(_) => {}
                Err(msg) => self.err(format!("server.resolvers[{i}]"), msg),
            }
        }
    }

    fn variables(&mut self, cfg: &Config) {
        for name in cfg.variables.keys() {
            if name.is_empty() || name.contains('#') || name.chars().any(char::is_whitespace) {
                self.err(
                    format!("variables.{}", crate::error::key_segment(name)),
                    "a variable name must be non-empty, without `#` or spaces",
                );
            }
        }
    }

    fn admin_metrics(&mut self, cfg: &Config) {
        if let Some(admin) = &cfg.admin {
            self.non_empty("admin.token_env", &admin.token_env);
        }
    }

    fn limits(&mut self, cfg: &Config) {
        self.positive("limits.header_timeout_ms", cfg.limits.header_timeout_ms);
        self.positive("limits.body_timeout_ms", cfg.limits.body_timeout_ms);
        if let Some(n) = cfg.limits.read_buffer_bytes {
            if n > crate::model::MAX_READ_BUFFER_BYTES {
                self.err(
                    "limits.read_buffer_bytes",
                    format!(
                        "must be at most {} (1 MiB)",
                        crate::model::MAX_READ_BUFFER_BYTES
                    ),
                );
            }
        }
    }

    fn listeners(&mut self, cfg: &Config) {
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
                Some(tls) => {
                    self.non_empty(format!("{p}.tls.cert"), &tls.cert);
                    self.non_empty(format!("{p}.tls.key"), &tls.key);
                }
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

    fn routes(&mut self, cfg: &Config) {
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

    fn upstreams(&mut self, cfg: &Config) {
        let mut names = HashMap::new();
        for (i, u) in cfg.upstreams.iter().enumerate() {
            let p = format!("upstreams[{i}]");
            self.name("upstream", format!("{p}.name"), &u.name, &mut names);
            self.upstream(cfg, &p, u);
        }
    }

    fn upstream(&mut self, cfg: &Config, p: &str, u: &UpstreamConfig) {
        if u.hash_on.is_some() && u.algorithm != Algorithm::ConsistentHash {
            self.err(
                format!("{p}.hash_on"),
                format!(
                    "`hash_on` is only used with algorithm = \"consistent_hash\" (this upstream uses \"{}\")",
                    u.algorithm.as_str()
                ),
            );
        }
        if u.hash_ring.is_some() && !u.algorithm.is_hashing() {
            self.err(
                format!("{p}.hash_ring"),
                format!(
                    "`hash_ring` is only used by the hashing algorithms (consistent_hash, \
                     source_ip_hash, uri_hash); this upstream uses \"{}\"",
                    u.algorithm.as_str()
                ),
            );
        }
        if let Some(tls) = &u.tls {
            match (&tls.client_cert, &tls.client_key) {
                (Some(_), None) => self.err(
                    format!("{p}.tls.client_key"),
                    "`client_cert` needs `client_key` (two-way TLS needs both)",
                ),
                (None, Some(_)) => self.err(
                    format!("{p}.tls.client_cert"),
                    "`client_key` needs `client_cert` (two-way TLS needs both)",
                ),
                _ => {}
            }
            for (key, val) in [
                ("ca", &tls.ca),
                ("client_cert", &tls.client_cert),
                ("client_key", &tls.client_key),
            ] {
                if let Some(v) = val {
                    self.non_empty(format!("{p}.tls.{key}"), v);
                }
            }
            if let Some(sni) = &tls.sni {
                if let Err(msg) = check_dns_name(sni) {
                    self.err(format!("{p}.tls.sni"), msg);
                }
            }
        }
        if u.cascade && cfg.cascade.is_none() {
            self.err(
                format!("{p}.cascade"),
                "`cascade = true` needs a [cascade] table (key_env holds the shared secret)",
            );
        }
        self.positive(format!("{p}.resolve_interval_ms"), u.resolve_interval_ms);
        if let Some(sticky) = &u.sticky {
            if sticky.cookie.is_empty() || !sticky.cookie.bytes().all(is_tchar) {
                self.err(
                    format!("{p}.sticky.cookie"),
                    format!("`{}` is not a valid cookie name", sticky.cookie),
                );
            }
            self.non_empty(format!("{p}.sticky.key_env"), &sticky.key_env);
            if let Err(msg) = check_cookie_path(&sticky.path) {
                self.err(format!("{p}.sticky.path"), msg);
            }
            if !sticky.domain.is_empty() {
                let bare = sticky.domain.strip_prefix('.').unwrap_or(&sticky.domain);
                if check_dns_name(bare).is_err() || bare.ends_with('.') {
                    self.err(
                        format!("{p}.sticky.domain"),
                        format!(
                            "`{}` is not a domain name (write it like \"example.com\", or \"\" for no Domain attribute)",
                            sticky.domain
                        ),
                    );
                }
            }
        }

        // Groups and servers.
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

        if let Some(a) = &u.health.active {
            self.active(&format!("{p}.health.active"), a);
        }
        if let Some(ps) = &u.health.passive {
            self.passive(&format!("{p}.health.passive"), ps);
        }
    }

    fn active(&mut self, p: &str, a: &ActiveHealthConfig) {
        if !a.path.starts_with('/') {
            self.err(format!("{p}.path"), "must start with `/`");
        }
        if let Some(h) = &a.host {
            if let Err(msg) = check_host_header(h) {
                self.err(format!("{p}.host"), msg);
            }
        }
        if a.healthy_threshold == 0 {
            self.err(format!("{p}.healthy_threshold"), "must be at least 1");
        }
        if a.unhealthy_threshold == 0 {
            self.err(format!("{p}.unhealthy_threshold"), "must be at least 1");
        }
        self.positive(format!("{p}.timeout_ms"), a.timeout_ms);
        self.positive(format!("{p}.interval_ms"), a.interval_ms);
        if a.status_codes.is_empty() {
            self.err(
                format!("{p}.status_codes"),
                "must list at least one status or range",
            );
        }
    }

    fn passive(&mut self, p: &str, ps: &PassiveHealthConfig) {
        for (k, s) in ps.unhealthy_statuses.iter().enumerate() {
            if !(100..=599).contains(s) {
                self.err(
                    format!("{p}.unhealthy_statuses[{k}]"),
                    format!("status {s} is outside 100..=599"),
                );
            }
        }
        if ps.unhealthy_threshold == 0 {
            self.err(format!("{p}.unhealthy_threshold"), "must be at least 1");
        }
        self.positive(format!("{p}.ejection_ms"), ps.ejection_ms);
        if ps.max_ejection_percent > 100 {
            self.err(
                format!("{p}.max_ejection_percent"),
                format!("must be between 0 and 100, got {}", ps.max_ejection_percent),
            );
        }
    }

    fn cascade(&mut self, cfg: &Config) {
        let Some(c) = &cfg.cascade else { return };
        self.non_empty("cascade.key_env", &c.key_env);
        if c.allowed_instances.len() > MAX_ALLOWED_INSTANCES {
            self.err(
                "cascade.allowed_instances",
                format!(
                    "at most {MAX_ALLOWED_INSTANCES} instances may be allowed, got {}",
                    c.allowed_instances.len()
                ),
            );
        }
        for (k, id) in c.allowed_instances.iter().enumerate() {
            if let Err(msg) = check_instance_id(id) {
                self.err(format!("cascade.allowed_instances[{k}]"), msg);
            }
        }
    }
}

/// ", known: a, b" for an unknown-reference message.
fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        " (none are defined)".to_string()
    } else {
        format!(" (defined: {})", list.join(", "))
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

/// Names of listeners, routes, upstreams and groups: letters, digits, `-`, `_`, `.`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{name}` contains `{c}`; use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// An instance id goes into `CDN-Loop` and `Switchyard-Cascade` headers: an HTTP token.
fn check_instance_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii() || !is_tchar(*c as u8)) {
        return Err(format!(
            "`{id}` contains {}; an instance id is letters, digits and !#$%&'*+-.^_`|~ \
             (no spaces or commas)",
            if c == ' ' {
                "a space".to_string()
            } else {
                format!("`{c}`")
            }
        ));
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_` (not at a label's ends), at
/// most 63 characters each and 253 in all; one trailing dot is allowed.
pub(crate) fn check_dns_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("must not be empty".to_string());
    }
    if bare.len() > 253 {
        return Err(format!("`{name}` is longer than 253 characters"));
    }
    for label in bare.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "`{name}` is not a valid host name (labels of letters, digits and `-`, separated by dots)"
            ));
        }
    }
    Ok(())
}

/// A sticky cookie's `path`: starts with `/`, printable ASCII without `;` (RFC 6265 §4.1.1
/// `path-value`, limited to what a header value carries as is).
fn check_cookie_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with `/`"));
    }
    if let Some(c) = path
        .chars()
        .find(|&c| c == ';' || !(' '..='~').contains(&c))
    {
        return Err(format!(
            "`{path}` contains {c:?}; a cookie path is printable ASCII without `;`"
        ));
    }
    Ok(())
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

/// A Host header value: a host name or IP, with an optional port.
fn check_host_header(h: &str) -> Result<(), String> {
    if h.parse::<IpAddr>().is_ok() || h.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let host = match h.rsplit_once(':') {
        Some((host, port)) => {
            if port.parse::<u16>().is_err() {
                return Err(format!("`{h}` has an invalid port"));
            }
            host
        }
        None => h,
    };
    check_dns_name(host)
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

/// Checks a `backend_path` template; returns every problem found.
fn check_backend_path(
    bp: &str,
    variables: &std::collections::BTreeMap<String, String>,
    captures: &[String],
    has_path: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut expanded = String::new();
    let mut rest = bp;
    while let Some(pos) = rest.find(['#', '{', '}']) {
        expanded.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix('#') {
            let Some(end) = after.find('#') else {
                errors.push(format!(
                    "unmatched `#` in `{bp}`; variables are written `#name#`"
                ));
                return errors;
            };
            let name = &after[..end];
            match variables.get(name) {
                Some(v) => expanded.push_str(v),
                None if name.is_empty() => errors.push("empty variable `##`".to_string()),
                None => errors.push(format!(
                    "unknown variable `#{name}#`; define it in [variables]{}",
                    if variables.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (defined: {})",
                            variables.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    }
                )),
            }
            rest = &after[end + 1..];
        } else if let Some(after) = tail.strip_prefix('{') {
            let Some(end) = after.find('}') else {
                errors.push(format!("unmatched `{{` in `{bp}`"));
                return errors;
            };
            let name = &after[..end];
            if !captures.iter().any(|c| c == name) {
                errors.push(if has_path {
                    format!("`{{{name}}}` is not captured by the route's `path`")
                } else {
                    format!(
                        "`{{{name}}}` is not captured: only a route `path` (not `path_prefix`) captures parameters"
                    )
                });
            }
            expanded.push('x');
            rest = &after[end + 1..];
        } else {
            errors.push(format!("unmatched `}}` in `{bp}`"));
            return errors;
        }
    }
    expanded.push_str(rest);
    if errors.is_empty() && !expanded.starts_with('/') {
        errors.push(format!(
            "must start with `/` (after substituting variables): `{bp}`"
        ));
    }
    errors
}
