//! A one-screen, human summary of a configuration (what `switchyard check` prints).

use std::fmt::Write as _;

use crate::model::{
    Config, HashRing, ListenerProtocol, ProxyProtocol, RouteConfig, Scheme, UpstreamConfig,
    WhenAllDown,
};

/// Summarises a configuration on one screen: the process settings, then a table of listeners
/// (name, protocol, address), routes (name, match, upstream) and, per upstream, its algorithm
/// and each server's identity `group/host:port` with its weight and flags.
///
/// ```
/// let cfg = switchyard_config::parse_str(r#"
/// [[listeners]]
/// name = "web"
/// listen = "127.0.0.1:8080"
/// [[routes]]
/// name = "users"
/// path = "/users/{id}"
/// upstream = "api"
/// [[upstreams]]
/// name = "api"
///   [[upstreams.groups]]
///   name = "blue"
///   servers = [{ address = "10.0.0.1", weight = 3 }, { address = "10.0.0.2", standby = true }]
/// "#).unwrap();
/// let text = switchyard_config::summary(&cfg);
/// assert!(text.contains("web"));
/// assert!(text.contains("/users/{id}"));
/// assert!(text.contains("blue/10.0.0.1:80"));
/// assert!(text.contains("standby"));
/// ```
pub fn summary(cfg: &Config) -> String {
    let mut out = String::new();
    let servers: usize = cfg.upstreams.iter().map(|u| u.servers().count()).sum();
    let enabled: usize = cfg
        .upstreams
        .iter()
        .map(UpstreamConfig::enabled_server_count)
        .sum();
    let _ = writeln!(
        out,
        "instance {} ({} thread{}): {} listener{}, {} route{}, {} upstream{}, {servers} server{} ({enabled} enabled)",
        cfg.server.instance_id,
        cfg.server.threads,
        plural(cfg.server.threads),
        cfg.listeners.len(),
        plural(cfg.listeners.len()),
        cfg.routes.len(),
        plural(cfg.routes.len()),
        cfg.upstreams.len(),
        plural(cfg.upstreams.len()),
        plural(servers),
    );
    let mut extras = Vec::new();
    if let Some(m) = &cfg.metrics {
        extras.push(format!("metrics http://{}/metrics", m.listen));
    }
    if let Some(a) = &cfg.admin {
        extras.push(format!(
            "admin http://{}/ (token from ${})",
            a.listen, a.token_env
        ));
    }
    if let Some(c) = &cfg.cascade {
        extras.push(if c.allowed_instances.is_empty() {
            "cascade on".to_string()
        } else {
            format!("cascade accepts {}", c.allowed_instances.join(", "))
        });
    }
    if let Some(l) = &cfg.access_log {
        extras.push(format!("access log {} ({:?})", l.path, l.format).to_lowercase());
    }
    if let Some(t) = &cfg.tracing {
        extras.push(format!(
            "traces to {} (sample ratio {})",
            t.otlp_endpoint, t.sample_ratio
        ));
    }
    if !extras.is_empty() {
        let _ = writeln!(out, "{}", extras.join("; "));
    }

    if !cfg.listeners.is_empty() {
        out.push('\n');
        let rows = cfg
            .listeners
            .iter()
            .map(|l| {
                let mut notes = Vec::new();
                if let Some(u) = &l.upstream {
                    notes.push(format!("-> {u}"));
                }
                if l.proxy_protocol != ProxyProtocol::Off {
                    notes.push(format!("send PROXY {}", proxy_name(l.proxy_protocol)));
                }
                if l.accept_proxy_protocol {
                    notes.push("accept PROXY".to_string());
                }
                if let Some(tls) = &l.tls {
                    notes.push(format!("cert {}", tls.cert));
                    if !tls.certificates.is_empty() {
                        notes.push(format!("+{} by SNI", tls.certificates.len()));
                    }
                    if tls.client_auth != crate::model::ClientAuth::Off {
                        let mode = match tls.client_auth {
                            crate::model::ClientAuth::Required => "required",
                            _ => "optional",
                        };
                        notes.push(format!("client certificates {mode}"));
                    }
                    if tls.min_version == crate::model::TlsVersion::Tls13 {
                        notes.push("TLS 1.3 only".to_string());
                    }
                }
                if !l.allow.is_empty() {
                    notes.push(format!("allow {}", join(&l.allow)));
                }
                if !l.deny.is_empty() {
                    notes.push(format!("deny {}", join(&l.deny)));
                }
                vec![
                    l.name.clone(),
                    protocol_name(l.protocol).to_string(),
                    l.listen.to_string(),
                    notes.join(", "),
                ]
            })
            .collect();
        table(
            &mut out,
            "",
            &["LISTENER", "PROTOCOL", "ADDRESS", "NOTES"],
            rows,
        );
    }

    if !cfg.routes.is_empty() {
        out.push('\n');
        let rows = cfg
            .routes
            .iter()
            .map(|r| {
                let listeners = if r.listeners.is_empty() {
                    "*".to_string()
                } else {
                    r.listeners.join(",")
                };
                vec![
                    r.name.clone(),
                    listeners,
                    route_match(r),
                    format!("-> {}", r.upstream),
                    route_notes(r),
                ]
            })
            .collect();
        table(
            &mut out,
            "",
            &["ROUTE", "LISTENERS", "MATCH", "UPSTREAM", "NOTES"],
            rows,
        );
    }

    for u in &cfg.upstreams {
        out.push('\n');
        let _ = writeln!(out, "upstream {}: {}", u.name, upstream_notes(u));
        let rows = u
            .servers()
            .map(|(g, s, port, weight)| {
                let mut flags = Vec::new();
                if !s.enabled {
                    flags.push("disabled");
                }
                if s.standby {
                    flags.push("standby");
                }
                if weight == 0 {
                    flags.push("drain");
                }
                vec![
                    format!("{}/{}", g.name, s.host_port(port)),
                    weight.to_string(),
                    flags.join(" "),
                ]
            })
            .collect();
        table(&mut out, "  ", &["SERVER", "WEIGHT", "FLAGS"], rows);
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn protocol_name(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Http => "http",
        ListenerProtocol::Https => "https",
        ListenerProtocol::Tcp => "tcp",
    }
}

fn proxy_name(p: ProxyProtocol) -> &'static str {
    match p {
        ProxyProtocol::Off => "off",
        ProxyProtocol::V1 => "v1",
        ProxyProtocol::V2 => "v2",
    }
}

fn route_match(r: &RouteConfig) -> String {
    let mut m = String::new();
    if !r.methods.is_empty() {
        let _ = write!(m, "{} ", r.methods.join(","));
    }
    if !r.hosts.is_empty() {
        let _ = write!(m, "{} ", r.hosts.join(","));
    }
    match (&r.path, r.effective_path_prefix()) {
        (Some(p), _) => m.push_str(p),
        (None, Some(prefix)) => {
            m.push_str(prefix);
            if !prefix.ends_with('/') {
                m.push('/');
            }
            m.push('*');
        }
        (None, None) => {}
    }
    m
}

fn route_notes(r: &RouteConfig) -> String {
    let mut notes = Vec::new();
    if let Some(bp) = &r.backend_path {
        notes.push(format!("rewrite {bp}"));
    }
    if let Some(h) = &r.host_header {
        notes.push(format!("host {h}"));
    }
    notes.push(match r.retries {
        -1 => "retries auto".to_string(),
        n => format!("retries {n}"),
    });
    if r.retry_non_idempotent {
        notes.push("non-idempotent retried".to_string());
    }
    notes.push(format!(
        "connect {}ms, timeout {}ms",
        r.connect_timeout_ms, r.timeout_ms
    ));
    if r.require_cascade {
        notes.push("cascade only".to_string());
    }
    notes.join(", ")
}

fn upstream_notes(u: &UpstreamConfig) -> String {
    let mut notes = vec![match u.effective_hash_on() {
        Some(h) => format!("{} on {h}", u.algorithm.as_str()),
        None => u.algorithm.as_str().to_string(),
    }];
    if u.hash_ring == Some(HashRing::Ketama) {
        notes.push("ketama ring (NGINX)".to_string());
    }
    notes.push(match u.scheme {
        Scheme::Http => "http".to_string(),
        Scheme::Https => "https".to_string(),
    });
    if u.when_all_down == WhenAllDown::All {
        notes.push("panic mode when all down".to_string());
    }
    if let Some(s) = &u.sticky {
        notes.push(format!("sticky cookie {}", s.cookie));
    }
    if let Some(a) = &u.health.active {
        notes.push(format!("active check every {}ms", a.interval_ms));
    }
    if u.health.passive.is_some() {
        notes.push("passive check".to_string());
    }
    if u.cascade {
        notes.push("cascade".to_string());
    }
    if u.proxy_protocol != ProxyProtocol::Off {
        notes.push(format!("send PROXY {}", proxy_name(u.proxy_protocol)));
    }
    notes.join(", ")
}

/// Appends an aligned table; the last column is not padded.
fn table(out: &mut String, indent: &str, header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
