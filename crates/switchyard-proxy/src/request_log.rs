//! The end of an HTTP request, as the access log and the tracer record it: the record is built
//! from the session and the [`RequestCtx`] in the `logging` hook, only when an access log or
//! `[tracing]` is configured.

use std::time::{Instant, SystemTime};

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Error;
use switchyard_config::AccessLogFormat;

use crate::headers::{request_host, strip_port};
use crate::observe::http_record::HttpRecord;
use crate::observe::tracer::ServerSpan;
use crate::observe::Telemetry;
use crate::request_ctx::RequestCtx;

/// Writes the request's access-log line and queues its spans (when sampled).
pub(crate) fn record(
    telemetry: &Telemetry,
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
    listener: &str,
    status: u16,
) {
    let now = Instant::now();
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
    let host = strip_port(request_host(req));
    let user_agent = req.headers.get(http::header::USER_AGENT);
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
            referer: req.headers.get(http::header::REFERER).map(|v| v.as_bytes()),
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
