//! The end of an HTTP request, as the access log and the tracer record it: the record is built
//! from the session and the [`RequestCtx`] in the `logging` hook, only when an access log or
//! `[tracing]` is configured.

use std::time::{Instant, SystemTime};

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Error;
use switchyard_config::AccessLogFormat;

use crate::headers::request_authority;
use crate::observe::http_record::HttpRecord;
use crate::observe::tracer::ServerSpan;
use crate::observe::Telemetry;
use crate::request_ctx::RequestCtx;

/// Writes the request's access-log line and queues its spans (when sampled); `now` is the end
/// of the request (the clock read the logging hook shares with the metrics).
pub(crate) fn record(
    telemetry: &Telemetry,
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
    listener: &str,
    status: u16,
    now: Instant,
) {
    let wall = SystemTime::now();
    let duration = now.saturating_duration_since(ctx.start);
    let start = wall.checked_sub(duration).unwrap_or(wall);
    let req = session.req_header();
    let route = ctx
        .rt
        .as_ref()
        .zip(ctx.route)
        .map(|(rt, r)| (&rt.routes[r], rt));
    let upstream = route.map(|(r, rt)| rt.upstreams[r.upstream].cfg.name.as_str());
    let error = ctx.error.or_else(|| {
        // A response the proxy made after failed attempts, or a request that ended early.
        if ctx.upstream_status.is_some() {
            None
        } else {
            ctx.last_failure
                .map(|k| k.as_str())
                .or(e.map(|_| "client_closed"))
        }
    });
    let trace_hex = ctx.trace.map(|t| t.trace_id_hex()).unwrap_or([b'0'; 32]);
    let heads = Heads::of(req);
    let host = strip_port(
        heads
            .host
            .or_else(|| request_authority(req))
            .unwrap_or_default(),
    );
    let user_agent = heads.user_agent;
    let body_bytes_sent = session.body_bytes_sent() as u64;
    if let Some(log) = telemetry.access_log() {
        let rec = HttpRecord {
            start,
            request_id: ctx.request_id.as_ref().map(|v| v.as_bytes()),
            client_ip: ctx.client_ip,
            listener,
            method: req.method.as_str(),
            host,
            path: req.uri.path(),
            query: req.uri.query(),
            protocol: protocol(req.version),
            status,
            bytes_sent: body_bytes_sent + session.response_written().map_or(0, head_len),
            body_bytes_sent,
            duration,
            route: route.map(|(r, _)| r.cfg.name.as_str()),
            upstream,
            server: ctx.server.as_ref().map(|s| s.as_str()),
            upstream_status: ctx.upstream_status,
            attempts: ctx.attempts,
            user_agent: user_agent.map(|v| v.as_bytes()),
            referer: heads.referer.map(|v| v.as_bytes()),
            trace_id: &trace_hex,
            grpc: ctx.grpc.as_ref().map(|c| c.status),
            error,
        };
        log.write(|out| match log.format() {
            AccessLogFormat::Json => rec.write_json(out),
            AccessLogFormat::Combined => rec.write_combined(out),
        });
    }
    let (Some(tracer), Some(trace)) = (telemetry.tracer(), &ctx.trace) else {
        return;
    };
    if !trace.sampled {
        return;
    }
    let scheme = ctx
        .rt
        .as_ref()
        .and_then(|rt| rt.listeners.get(ctx.listener))
        .map_or("http", |l| l.scheme());
    let span = ServerSpan {
        trace,
        start,
        duration,
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        scheme,
        host,
        route_template: route
            .and_then(|(r, _)| r.cfg.path.as_deref().or(r.cfg.path_prefix.as_deref())),
        route: route.map(|(r, _)| r.cfg.name.as_str()),
        upstream,
        status,
        protocol_version: match req.version {
            http::Version::HTTP_2 => "2",
            http::Version::HTTP_10 => "1.0",
            _ => "1.1",
        },
        client_ip: ctx.client_ip,
        request_id: ctx.request_id.as_ref().and_then(|v| v.to_str().ok()),
        user_agent: user_agent.and_then(|v| v.to_str().ok()),
        error,
    };
    tracer.export(&span, &ctx.spans, (now, wall));
}

/// The request headers a record reads, found in one pass over the headers (a request has few:
/// cheaper than hashing three names for three lookups).
struct Heads<'a> {
    host: Option<&'a [u8]>,
    user_agent: Option<&'a http::HeaderValue>,
    referer: Option<&'a http::HeaderValue>,
}

impl<'a> Heads<'a> {
    fn of(req: &'a pingora::http::RequestHeader) -> Heads<'a> {
        let mut h = Heads {
            host: None,
            user_agent: None,
            referer: None,
        };
        // The first value of each, as `HeaderMap::get` gives.
        for (name, value) in req.headers.iter() {
            if *name == http::header::HOST {
                h.host.get_or_insert(value.as_bytes());
            } else if *name == http::header::USER_AGENT {
                h.user_agent.get_or_insert(value);
            } else if *name == http::header::REFERER {
                h.referer.get_or_insert(value);
            }
        }
        h
    }
}

/// `host` without its port, as `headers::strip_port` does it for text: `[::1]:80` → `[::1]`,
/// `example.com:80` → `example.com`.
fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(i) if host[i + 1..].iter().all(u8::is_ascii_digit) => &host[..i],
        _ => host,
    }
}

/// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The response head's length as HTTP/1.1 writes it: status line, `name: value\r\n` per
/// header, and the blank line (HTTP/2 compresses it; the figure stays comparable).
pub(crate) fn head_len(resp: &ResponseHeader) -> u64 {
    let reason = resp.status.canonical_reason().map_or(0, str::len);
    // "HTTP/1.1 200 " + reason + "\r\n" ... "\r\n"
    let mut n = 13 + reason + 2 + 2;
    for (name, value) in resp.headers.iter() {
        n += name.as_str().len() + 2 + value.len() + 2;
    }
    n as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same answers as `headers::strip_port` on text.
    #[test]
    fn strip_port_as_for_text() {
        for h in [
            "[::1]:8080",
            "[::1]",
            "example.com",
            "example.com:80",
            "a:b",
            "[::1",
            ":",
            "",
        ] {
            assert_eq!(
                strip_port(h.as_bytes()),
                crate::headers::strip_port(h).as_bytes(),
                "{h}"
            );
        }
    }

    /// One pass finds the first value of each header, as `HeaderMap::get` does.
    #[test]
    fn heads_are_the_first_values() {
        let mut req = pingora::http::RequestHeader::build("GET", b"/", None)
            .unwrap_or_else(|e| panic!("{e}"));
        for (n, v) in [
            ("user-agent", "ua1"),
            ("x-other", "x"),
            ("Host", "h:1"),
            ("user-agent", "ua2"),
            ("referer", "r"),
        ] {
            req.append_header(n, v).unwrap_or_else(|e| panic!("{e}"));
        }
        let h = Heads::of(&req);
        assert_eq!(h.host, Some(&b"h:1"[..]));
        assert_eq!(h.user_agent.map(|v| v.as_bytes()), Some(&b"ua1"[..]));
        assert_eq!(h.referer.map(|v| v.as_bytes()), Some(&b"r"[..]));
        let empty = pingora::http::RequestHeader::build("GET", b"/", None)
            .unwrap_or_else(|e| panic!("{e}"));
        let h = Heads::of(&empty);
        assert!(h.host.is_none() && h.user_agent.is_none() && h.referer.is_none());
    }
}
