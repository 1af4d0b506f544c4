//! OpenTelemetry spans: one server span per request and one client span per upstream attempt,
//! built when the request ends (with the ids already sent in `traceparent`) as fixed-size
//! [`SpanRecord`]s appended to the [`SpanQueue`] (their strings copied into the batch's shared
//! text buffer: no allocation per span); the exporter's own thread ([`super::otlp_exporter`])
//! writes them as OTLP protobuf ([`super::otlp_batch`]) and POSTs them over OTLP/HTTP. The
//! request path only appends (a full queue drops spans, counted); an unreachable collector costs
//! no request.
//!
//! Why not the OpenTelemetry SDK's `BatchSpanProcessor` and `opentelemetry-otlp`'s exporter (used
//! until session 8): measured with callgrind, they cost +31.5% instructions per request at
//! `sample_ratio = 1.0` (a `SpanData` with an owned `String` per attribute on the request thread,
//! then on the exporter thread a second conversion into new proto messages, grouped by scope
//! through a SipHash map). `docs/benchmarks.md` has the figures.
//!
//! Sampling is parent-based: a request with a `traceparent` follows its sampled flag; a new
//! trace is sampled when its trace id falls under `sample_ratio` (the rule of OpenTelemetry's
//! `TraceIdRatioBased`, so every service using it agrees on a trace).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use switchyard_balance::{ServerId, ServerSpec};
use switchyard_config::TracingConfig;
use switchyard_metrics::prometheus::IntCounter;

use super::otlp_exporter::{Destination, ExporterThread, EXPORT_TIMEOUT};
use super::span_queue::SpanQueue;
use super::span_record::{Kind, SpanBatch, SpanRecord, Value};
use super::trace_context::{self, TraceContext};
use crate::error::BuildError;

/// The span exporter of a gateway with `[tracing]`.
#[derive(Debug)]
pub struct Tracer {
    queue: Arc<SpanQueue>,
    thread: Mutex<ExporterThread>,
    /// New traces whose id maps below this are sampled.
    threshold: u64,
    /// The contents of `ca_file` when the exporter started (a reload that finds them changed
    /// starts a new exporter, see [`Tracer::ca_file_changed`]).
    ca_pem: Option<Vec<u8>>,
}

/// One attempt on one server, as its client span will tell it.
#[derive(Debug, Clone)]
pub struct AttemptSpan {
    /// The span id sent upstream in `traceparent`.
    pub span_id: trace_context::SpanId,
    /// The server's identity.
    pub server: ServerId,
    /// The server's address.
    pub addr: Option<SocketAddr>,
    /// When the attempt began (the pick).
    pub start: Instant,
    /// When it ended (`None`: at the end of the request).
    pub end: Option<Instant>,
    /// The server's answer.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<&'static str>,
}

impl AttemptSpan {
    /// An attempt on `server` beginning now, with span id `span_id`.
    pub fn begin(span_id: trace_context::SpanId, server: &ServerSpec) -> AttemptSpan {
        AttemptSpan {
            span_id,
            server: server.id.clone(),
            addr: Some(server.addr),
            start: Instant::now(),
            end: None,
            status: None,
            error: None,
        }
    }
}

/// What the server span tells about a request.
#[derive(Debug)]
pub struct ServerSpan<'a> {
    /// The request's trace and span ids.
    pub trace: &'a TraceContext,
    /// When the request arrived and how long it took.
    pub start: SystemTime,
    /// From arrival to the end of the response.
    pub duration: Duration,
    /// The method.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The query, without `?`.
    pub query: Option<&'a str>,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The host, without port.
    pub host: &'a str,
    /// The route's path template (`http.route`).
    pub route_template: Option<&'a str>,
    /// The route's name.
    pub route: Option<&'a str>,
    /// The upstream's name.
    pub upstream: Option<&'a str>,
    /// The status sent to the client.
    pub status: u16,
    /// `1.1` or `2`.
    pub protocol_version: &'static str,
    /// The client's address.
    pub client_ip: Option<std::net::IpAddr>,
    /// The request id.
    pub request_id: Option<&'a str>,
    /// The user agent.
    pub user_agent: Option<&'a str>,
    /// Why the proxy refused or failed the request.
    pub error: Option<&'a str>,
}

impl Tracer {
    /// Starts the exporter's thread. Failed exports are counted in `failures`, spans dropped
    /// by a full queue in `dropped`.
    pub fn start(
        cfg: &TracingConfig,
        instance_id: &str,
        failures: IntCounter,
        dropped: IntCounter,
    ) -> Result<Tracer, BuildError> {
        let queue = Arc::new(SpanQueue::default());
        let resource = vec![
            ("service.name", cfg.service_name.clone()),
            ("service.instance.id", instance_id.to_string()),
            ("service.version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        let dest = Destination {
            endpoint: cfg.otlp_endpoint.clone(),
            failures,
            dropped,
        };
        let mut ca_pem = None;
        let ca = match &cfg.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| BuildError::Invalid {
                    key: "tracing.ca_file".to_string(),
                    reason: format!("cannot read {path}: {e}"),
                })?;
                let pem = ca_pem.insert(pem);
                let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                    BuildError::Invalid {
                        key: "tracing.ca_file".to_string(),
                        reason: format!("{path}: {e}"),
                    }
                })?;
                if certs.is_empty() {
                    return Err(BuildError::Invalid {
                        key: "tracing.ca_file".to_string(),
                        reason: format!("{path}: no PEM certificate"),
                    });
                }
                certs
            }
            None => Vec::new(),
        };
        let thread = ExporterThread::start(Arc::clone(&queue), dest, resource, move || {
            let mut client = reqwest::blocking::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .use_rustls_tls();
            for cert in ca {
                client = client.add_root_certificate(cert);
            }
            client.build().map_err(|e| e.to_string())
        })
        .map_err(|reason| BuildError::Invalid {
            key: "tracing.otlp_endpoint".to_string(),
            reason,
        })?;
        Ok(Tracer {
            queue,
            thread: Mutex::new(thread),
            threshold: ratio_threshold(cfg.sample_ratio),
            ca_pem,
        })
    }

    /// True if `path` (the configured `ca_file`) no longer holds what this exporter trusts: it
    /// was rotated, or cannot be read (then starting a new exporter reports the error).
    pub(crate) fn ca_file_changed(&self, path: &str) -> bool {
        match (&self.ca_pem, std::fs::read(path)) {
            (Some(old), Ok(now)) => *old != now,
            _ => true,
        }
    }

    /// Whether a new trace with this id is sampled.
    #[inline]
    pub fn sample(&self, trace_id: &trace_context::TraceId) -> bool {
        sampled_by_ratio(trace_id, self.threshold)
    }

    /// Queues the request's server span and one client span per attempt (`now` is the end of
    /// the request, on both clocks).
    pub fn export(&self, s: &ServerSpan<'_>, attempts: &[AttemptSpan], now: (Instant, SystemTime)) {
        let (now, wall) = now;
        let at = |t: Instant| unix_nano(wall - now.saturating_duration_since(t));
        let start = unix_nano(s.start);
        let end = unix_nano(s.start + s.duration);
        self.queue.push(1 + attempts.len(), |batch| {
            let mut server = server_record(batch, s);
            server.start_unix_nano = start;
            server.end_unix_nano = end;
            batch.spans.push(server);
            let method = method_value(batch, s.method);
            for (retry, a) in attempts.iter().enumerate() {
                let mut client = SpanRecord::new(
                    s.trace.trace_id,
                    a.span_id,
                    Some(s.trace.span_id),
                    Kind::Client,
                    method,
                );
                client.start_unix_nano = at(a.start);
                client.end_unix_nano = at(a.end.unwrap_or(now));
                attempt_attributes(batch, &mut client, method, retry, a);
                batch.spans.push(client);
            }
        });
    }

    /// Exports what is queued and stops the exporter's thread (at process exit), waiting at
    /// most a few seconds.
    pub fn close(&self) {
        self.queue.stop();
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if !thread.join(Duration::from_secs(3)) {
            log::warn!("tracing: spans still queued at exit were not all exported");
        }
    }
}

impl Drop for Tracer {
    /// A tracer replaced by a reload: its thread exports what is queued, then stops.
    fn drop(&mut self) {
        self.queue.stop();
    }
}

/// The server span of a request, its strings copied into `batch`.
fn server_record(batch: &mut SpanBatch, s: &ServerSpan<'_>) -> SpanRecord {
    let method = method_value(batch, s.method);
    let name = match s.route_template {
        Some(t) => batch.joined(&[s.method, " ", t]),
        None => method,
    };
    let mut r = SpanRecord::new(
        s.trace.trace_id,
        s.trace.span_id,
        s.trace.parent_id,
        Kind::Server,
        name,
    );
    r.remote_parent = s.trace.parent_id.is_some();
    r.attr("http.request.method", method);
    let path = batch.text(s.path);
    r.attr("url.path", path);
    if let Some(q) = s.query {
        let q = batch.text(q);
        r.attr("url.query", q);
    }
    let scheme = if s.scheme == "https" { "https" } else { "http" };
    r.attr("url.scheme", Value::Static(scheme));
    if !s.host.is_empty() {
        let host = batch.text(s.host);
        r.attr("server.address", host);
    }
    if let Some(t) = s.route_template {
        let t = batch.text(t);
        r.attr("http.route", t);
    }
    r.attr("http.response.status_code", Value::Int(i64::from(s.status)));
    r.attr(
        "network.protocol.version",
        Value::Static(s.protocol_version),
    );
    if let Some(ip) = s.client_ip {
        let ip = batch.ip(ip);
        r.attr("client.address", ip);
    }
    let optional: [(&'static str, Option<&str>); 4] = [
        ("user_agent.original", s.user_agent),
        ("switchyard.request_id", s.request_id),
        ("switchyard.route", s.route),
        ("switchyard.upstream", s.upstream),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            let v = batch.text(v);
            r.attr(key, v);
        }
    }
    r.failed = s.status >= 500 || s.status == 0;
    if let Some(e) = s.error.filter(|_| r.failed) {
        let e = batch.text(e);
        r.attr("error.type", e);
    } else if r.failed {
        r.attr("error.type", status_value(batch, s.status));
    }
    r
}

/// The attributes of an attempt's client span (the `retry`-th, from 0), and whether it failed.
fn attempt_attributes(
    batch: &mut SpanBatch,
    r: &mut SpanRecord,
    method: Value,
    retry: usize,
    a: &AttemptSpan,
) {
    r.attr("http.request.method", method);
    if let Some(addr) = a.addr {
        let ip = batch.ip(addr.ip());
        r.attr("server.address", ip);
        r.attr("server.port", Value::Int(i64::from(addr.port())));
    }
    let server = batch.text(a.server.as_str());
    r.attr("switchyard.server", server);
    let retry = i64::try_from(retry).unwrap_or(i64::MAX);
    r.attr("switchyard.retry", Value::Int(retry));
    if retry > 0 {
        r.attr("http.request.resend_count", Value::Int(retry));
    }
    if let Some(status) = a.status {
        r.attr("http.response.status_code", Value::Int(i64::from(status)));
    }
    r.failed = a.error.is_some() || a.status.is_some_and(|s| s >= 500);
    if let Some(e) = a.error {
        r.attr("error.type", Value::Static(e));
    } else if let Some(s) = a.status.filter(|s| *s >= 500) {
        r.attr("error.type", status_value(batch, s));
    }
}

/// The method as a span name or attribute value: the standard methods without copying.
fn method_value(batch: &mut SpanBatch, method: &str) -> Value {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|m| **m == method) {
        Some(m) => Value::Static(m),
        None => batch.text(method),
    }
}

/// A status code as text (`error.type` of a 5xx answer).
fn status_value(batch: &mut SpanBatch, status: u16) -> Value {
    let mut buf = itoa::Buffer::new();
    batch.text(buf.format(status))
}

/// Nanoseconds since the Unix epoch (0 before it).
fn unix_nano(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `TraceIdRatioBased`'s bound for `ratio`: trace ids whose last 8 bytes, shifted right by one,
/// fall below it are sampled.
fn ratio_threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio.max(0.0) * (1u64 << 63) as f64) as u64
    }
}

fn sampled_by_ratio(trace_id: &trace_context::TraceId, threshold: u64) -> bool {
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    (u64::from_be_bytes(low) >> 1) < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_sampling() {
        let all = ratio_threshold(1.0);
        let none = ratio_threshold(0.0);
        let half = ratio_threshold(0.5);
        let mut sampled = 0;
        for i in 0u32..1000 {
            let id = trace_context::new_trace_id();
            assert!(sampled_by_ratio(&id, all));
            assert!(!sampled_by_ratio(&id, none));
            sampled += u32::from(sampled_by_ratio(&id, half));
            let _ = i;
        }
        assert!((350..650).contains(&sampled), "{sampled} of 1000 at 0.5");
    }
}
