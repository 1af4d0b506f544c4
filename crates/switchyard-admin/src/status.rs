//! `GET /status`: one self-contained HTML page (inline CSS, no scripts, no external assets) that
//! shows every listener, route and upstream, and each server's health, weight, in-flight count,
//! EWMA latency, request rate and last transition. It refreshes itself with
//! `<meta http-equiv="refresh">` (`?refresh=N` seconds, `0` turns it off).
//!
//! The markup is stable for tools and tests: each upstream is a `<section class="upstream"
//! data-upstream="NAME">`, each server a `<tr class="server" data-server="ID" data-state="STATE">`.

use std::fmt::Write as _;

use switchyard_proxy::Shared;

use crate::views::{self, Rates, ServerView};

/// The default refresh interval, seconds.
pub const DEFAULT_REFRESH_S: u32 = 5;

/// HTML-escapes `s`.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1h 2m`, `3m 4s`, `5.6s`, `120ms`.
fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `YYYY-MM-DD hh:mm:ss UTC` from Unix seconds (a time out of `time`'s range shows as the
/// epoch).
pub(crate) fn utc(unix_s: u64) -> String {
    let t = i64::try_from(unix_s)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #6e7781; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 .4rem; }
.meta { color: var(--muted); margin-bottom: 1rem; }
table { border-collapse: collapse; width: 100%; margin-bottom: .5rem; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #8884; white-space: nowrap; }
th { font-weight: 600; background: #8881; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; font-weight: 600; font-size: .85em; color: #fff; }
.healthy { background: var(--ok); } .unhealthy, .ejected { background: var(--bad); } .pending { background: var(--warn); }
.off { background: var(--muted); } .summary { font-weight: 600; } .reason { color: var(--muted); white-space: normal; }
.rejected { color: var(--bad); } code { font-size: .95em; }
"#;

fn server_row(out: &mut String, s: &ServerView) {
    let state = if s.enabled { s.health } else { "disabled" };
    let badge_class = if s.enabled { s.health } else { "off" };
    let weight = match s.configured_weight {
        Some(c) if c != s.weight => {
            format!("{} <span class=\"reason\">(file: {c})</span>", s.weight)
        }
        _ => s.weight.to_string(),
    };
    let weight = if s.weight == 0 {
        format!("{weight} <span class=\"badge pending\">draining</span>")
    } else {
        weight
    };
    let flags = match (s.enabled, s.standby) {
        (false, _) => "disabled",
        (true, true) => "standby",
        (true, false) => "",
    };
    let rate = s
        .request_rate_per_s
        .map_or_else(|| "–".to_string(), |r| format!("{r:.2}"));
    let transition = match (s.last_transition_ago_ms, &s.reason) {
        (Some(ms), Some(r)) => format!("{} ago <span class=\"reason\">{}</span>", ago(ms), esc(r)),
        (Some(ms), None) => format!("{} ago", ago(ms)),
        (None, _) => "–".to_string(),
    };
    let _ = writeln!(
        out,
        "<tr class=\"server\" data-server=\"{id}\" data-state=\"{state}\" data-health=\"{health}\">\
         <td><code>{id}</code></td><td><span class=\"badge {badge_class}\">{health}</span> {flags}</td>\
         <td class=\"num\">{weight}</td><td class=\"num\">{in_flight}</td><td class=\"num\">{ewma:.2}</td>\
         <td class=\"num\">{requests}</td><td class=\"num\">{failures}</td><td class=\"num\">{rate}</td>\
         <td>{transition}</td></tr>",
        id = esc(&s.id),
        health = s.health,
        in_flight = if s.max_in_flight > 0 {
            format!("{} / {}", s.in_flight, s.max_in_flight)
        } else {
            s.in_flight.to_string()
        },
        ewma = s.ewma_ms,
        requests = s.requests,
        failures = s.failures,
    );
}

/// Renders the status page of the running gateway; `refresh_s` = 0 disables the self-refresh.
///
/// ```
/// let cfg = switchyard_config::parse_str(r#"
/// [[upstreams]]
/// name = "api"
///   [[upstreams.groups]]
///   name = "g"
///   servers = [{ address = "127.0.0.1", port = 9 }]
/// "#).unwrap();
/// let rt = switchyard_proxy::Runtime::build(std::sync::Arc::new(cfg), None).unwrap();
/// let shared = switchyard_proxy::Shared::new(rt, None);
/// let html = switchyard_admin::status::render(&shared, &Default::default(), 5);
/// assert!(html.contains("data-upstream=\"api\""));
/// assert!(html.contains("data-server=\"g/127.0.0.1:9\" data-state=\"healthy\""));
/// assert!(html.contains("http-equiv=\"refresh\" content=\"5\""));
/// ```
pub fn render(shared: &Shared, rates: &Rates, refresh_s: u32) -> String {
    let rt = shared.runtime();
    let cfg = &rt.config;
    let view = views::upstreams(shared, rates);
    let mut out = String::with_capacity(16 * 1024);
    let title = format!("Switchyard status — {}", esc(shared.instance_id()));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    );
    if refresh_s > 0 {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{refresh_s}\">");
    }
    let _ = write!(
        out,
        "<title>{title}</title><style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n"
    );
    let total: usize = view.upstreams.iter().map(|u| u.servers.len()).sum();
    let healthy: usize = view
        .upstreams
        .iter()
        .flat_map(|u| &u.servers)
        .filter(|s| s.healthy && s.enabled)
        .count();
    let _ = write!(
        out,
        "<div class=\"meta\">switchyard {} · generated {} · {} listeners, {} routes, {} upstreams, \
         <span class=\"summary\" id=\"servers-summary\">{healthy}/{total} servers in rotation</span>",
        env!("CARGO_PKG_VERSION"),
        utc(now_unix()),
        cfg.listeners.len(),
        cfg.routes.len(),
        cfg.upstreams.len(),
    );
    let last = shared.last_reload();
    match last {
        Some(r) if r.applied => {
            let _ = write!(out, " · last reload applied {}", utc(r.at_unix_s));
            if !r.needs_upgrade.is_empty() {
                let _ = write!(
                    out,
                    " <span class=\"rejected\">(needs a graceful upgrade: {})</span>",
                    esc(&r.needs_upgrade.join("; "))
                );
            }
        }
        Some(r) => {
            let _ = write!(
                out,
                " · <span class=\"rejected\" id=\"last-reload\">last reload rejected {}: {}</span>",
                utc(r.at_unix_s),
                esc(&r.errors.join("; "))
            );
        }
        None => {}
    }
    if refresh_s > 0 {
        let _ = write!(out, " · refreshes every {refresh_s}s");
    }
    out.push_str("</div>\n");

    out.push_str(
        "<h2>Listeners</h2>\n<table id=\"listeners\"><tr><th>Name</th><th>Protocol</th>\
         <th>Address</th><th>Upstream (tcp)</th><th>Allow / deny</th></tr>\n",
    );
    for l in &cfg.listeners {
        let protocol = serde_json::to_value(l.protocol)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let acl = if l.allow.is_empty() && l.deny.is_empty() {
            "all".to_string()
        } else {
            let list = |v: &[switchyard_config::Cidr]| {
                v.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("allow [{}] deny [{}]", list(&l.allow), list(&l.deny))
        };
        let _ = writeln!(
            out,
            "<tr class=\"listener\" data-listener=\"{n}\"><td>{n}</td><td>{protocol}</td>\
             <td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            l.listen,
            esc(l.upstream.as_deref().unwrap_or("–")),
            esc(&acl),
            n = esc(&l.name),
        );
    }
    out.push_str("</table>\n");
    crate::certificates::table(&rt, now_unix(), &mut out);

    out.push_str(
        "<h2>Routes</h2>\n<table id=\"routes\"><tr><th>Name</th><th>Listeners</th><th>Hosts</th>\
         <th>Path</th><th>Methods</th><th>Upstream</th></tr>\n",
    );
    for r in &cfg.routes {
        let listeners: Vec<String> = cfg.route_listeners(r).map(|l| esc(&l.name)).collect();
        let path = match (&r.path, &r.path_prefix) {
            (Some(p), _) => esc(p),
            (None, Some(p)) => format!("{}*", esc(p)),
            (None, None) => "/*".to_string(),
        };
        let or_any = |v: &[String]| {
            if v.is_empty() {
                "any".to_string()
            } else {
                esc(&v.join(", "))
            }
        };
        let _ = writeln!(
            out,
            "<tr class=\"route\" data-route=\"{n}\"><td>{n}</td><td>{}</td><td>{}</td>\
             <td><code>{path}</code></td><td>{}</td><td><a href=\"#upstream-{u}\">{u}</a></td></tr>",
            listeners.join(", "),
            or_any(&r.hosts),
            or_any(&r.methods),
            n = esc(&r.name),
            u = esc(&r.upstream),
        );
    }
    out.push_str("</table>\n");

    if let Some(fleet) = shared.fleet() {
        crate::cluster_section::render(&mut out, &fleet.view());
    }

    out.push_str("<h2>Upstreams</h2>\n");
    for u in &view.upstreams {
        let in_rotation = u.servers.iter().filter(|s| s.healthy && s.enabled).count();
        let checks = match (u.active_checks, u.passive_checks) {
            (true, true) => "active + passive checks",
            (true, false) => "active checks",
            (false, true) => "passive checks",
            (false, false) => "no health checks",
        };
        let _ = write!(
            out,
            "<section class=\"upstream\" data-upstream=\"{n}\" id=\"upstream-{n}\">\
             <h3>{n} <span class=\"meta\">{} · {checks} · {in_rotation}/{} in rotation{}</span></h3>\n\
             <table><tr><th>Server</th><th>State</th><th class=\"num\">Weight</th>\
             <th class=\"num\">In flight</th><th class=\"num\">EWMA ms</th><th class=\"num\">Requests</th>\
             <th class=\"num\">Failures</th><th class=\"num\">Req/s</th><th>Last transition</th></tr>\n",
            u.algorithm,
            u.servers.len(),
            if u.panic_mode {
                " · <span class=\"rejected\">panic mode: all servers down</span>"
            } else {
                ""
            },
            n = esc(&u.name),
        );
        for s in &u.servers {
            server_row(&mut out, s);
        }
        out.push_str("</table>\n");
        if let Some(q) = &u.queue {
            let _ = writeln!(
                out,
                "<p class=\"meta queue\" data-queue-waiting=\"{w}\">Queue: <b>{w}</b> waiting \
                 (size {size}, timeout {t} ms) · {n} waited, mean {mean:.1} ms · refused: \
                 {full} full, {timeout} timed out</p>",
                w = q.waiting,
                size = q.size,
                t = q.timeout_ms,
                n = q.waited_total,
                mean = q.mean_wait_ms,
                full = q.rejected_full,
                timeout = q.rejected_timeout,
            );
        }
        out.push_str("</section>\n");
    }
    out.push_str(
        "<p class=\"meta\">Run-time changes made through the admin API (enable, disable, drain, \
         weight) last until the next reload. JSON: <code>GET /api/upstreams</code>.</p>\n</body></html>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(ago(120), "120ms");
        assert_eq!(ago(5_600), "5.6s");
        assert_eq!(ago(184_000), "3m 4s");
        assert_eq!(ago(3_720_000), "1h 2m");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
