//! OpenTelemetry spans: one server span per request and one client span per upstream attempt,
//! written when the request ends (with the ids already sent in `traceparent`) as OTLP protobuf
//! straight into the [`SpanQueue`]'s bytes ([`super::span_writer`]: no record, no copy of its
//! strings, no allocation per span); the exporter's own thread ([`super::otlp_exporter`]) frames
//! them as export requests ([`super::otlp_batch`]) and POSTs them over OTLP/HTTP. The
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

use super::ip_text::IpText;
use super::otlp_batch::OtlpBatch;
use super::otlp_exporter::{Destination, ExporterThread, EXPORT_TIMEOUT};
use super::span_queue::SpanQueue;
use super::span_writer::{Kind, SpanHead, SpanWriter};
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
    /// The host, without port (the header's bytes; left out if not UTF-8).
    pub host: &'a [u8],
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
        let otlp = OtlpBatch::new(&[
            ("service.name", &cfg.service_name),
            ("service.instance.id", instance_id),
            ("service.version", env!("CARGO_PKG_VERSION")),
        ]);
        let queue = Arc::new(SpanQueue::new(otlp.header_room()));
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
        let thread = ExporterThread::start(Arc::clone(&queue), dest, otlp, move || {
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
    /// the request, on both clocks), written as protobuf straight into the export queue.
    pub fn export(&self, s: &ServerSpan<'_>, attempts: &[AttemptSpan], now: (Instant, SystemTime)) {
        let (now, wall) = now;
        let wall_nano = unix_nano(wall);
        let at = |t: Instant| {
            let ago = u64::try_from(now.saturating_duration_since(t).as_nanos()).unwrap_or(0);
            wall_nano.saturating_sub(ago)
        };
        let end = wall_nano;
        let start = end.saturating_sub(u64::try_from(s.duration.as_nanos()).unwrap_or(0));
        let client_ip = s.client_ip.map(IpText::of);
        self.queue.push(1 + attempts.len(), |out| {
            write_server(out, s, client_ip.as_ref(), (start, end));
            for (retry, a) in attempts.iter().enumerate() {
                write_attempt(out, s, retry, a, (at(a.start), at(a.end.unwrap_or(now))));
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

/// Writes the server span of a request (`times`: start and end, in Unix nanoseconds).
fn write_server(
    out: &mut Vec<u8>,
    s: &ServerSpan<'_>,
    client_ip: Option<&IpText>,
    times: (u64, u64),
) {
    let name: &[&str] = match s.route_template {
        Some(t) => &[s.method, " ", t],
        None => &[s.method],
    };
    let mut w = SpanWriter::begin(
        out,
        &SpanHead {
            trace_id: &s.trace.trace_id,
            span_id: &s.trace.span_id,
            parent_id: s.trace.parent_id.as_ref(),
            name,
            kind: Kind::Server,
            start_unix_nano: times.0,
            end_unix_nano: times.1,
        },
    );
    w.str("http.request.method", s.method);
    w.str("url.path", s.path);
    if let Some(q) = s.query {
        w.str("url.query", q);
    }
    w.str(
        "url.scheme",
        if s.scheme == "https" { "https" } else { "http" },
    );
    if s.host.is_ascii() {
        if !s.host.is_empty() {
            w.text("server.address", s.host);
        }
    } else if let Ok(host) = std::str::from_utf8(s.host) {
        w.str("server.address", host);
    }
    if let Some(t) = s.route_template {
        w.str("http.route", t);
    }
    w.int("http.response.status_code", i64::from(s.status));
    w.str("network.protocol.version", s.protocol_version);
    if let Some(ip) = client_ip {
        w.text("client.address", ip.as_bytes());
    }
    if let Some(v) = s.user_agent {
        w.str("user_agent.original", v);
    }
    if let Some(v) = s.request_id {
        w.str("switchyard.request_id", v);
    }
    if let Some(v) = s.route {
        w.str("switchyard.route", v);
    }
    if let Some(v) = s.upstream {
        w.str("switchyard.upstream", v);
    }
    let failed = s.status >= 500 || s.status == 0;
    if failed {
        match s.error {
            Some(e) => w.str("error.type", e),
            None => w.str("error.type", itoa::Buffer::new().format(s.status)),
        }
    }
    w.finish(failed, s.trace.parent_id.is_some());
}

/// Writes the client span of an attempt (the `retry`-th, from 0; `times` as for the server).
fn write_attempt(
    out: &mut Vec<u8>,
    s: &ServerSpan<'_>,
    retry: usize,
    a: &AttemptSpan,
    times: (u64, u64),
) {
    let mut w = SpanWriter::begin(
        out,
        &SpanHead {
            trace_id: &s.trace.trace_id,
            span_id: &a.span_id,
            parent_id: Some(&s.trace.span_id),
            name: &[s.method],
            kind: Kind::Client,
            start_unix_nano: times.0,
            end_unix_nano: times.1,
        },
    );
    w.str("http.request.method", s.method);
    if let Some(addr) = a.addr {
        w.text("server.address", IpText::of(addr.ip()).as_bytes());
        w.int("server.port", i64::from(addr.port()));
    }
    w.str("switchyard.server", a.server.as_str());
    let retry = i64::try_from(retry).unwrap_or(i64::MAX);
    w.int("switchyard.retry", retry);
    if retry > 0 {
        w.int("http.request.resend_count", retry);
    }
    if let Some(status) = a.status {
        w.int("http.response.status_code", i64::from(status));
    }
    let failed = a.error.is_some() || a.status.is_some_and(|s| s >= 500);
    if let Some(e) = a.error {
        w.str("error.type", e);
    } else if let Some(s) = a.status.filter(|s| *s >= 500) {
        w.str("error.type", itoa::Buffer::new().format(s));
    }
    w.finish(failed, false);
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
