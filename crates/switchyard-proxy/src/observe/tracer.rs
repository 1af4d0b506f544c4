//! OpenTelemetry spans: one server span per request and one client span per upstream attempt,
//! built when the request ends (with the ids already sent in `traceparent`) and handed to the
//! SDK's batch span processor, whose own thread exports them over OTLP/HTTP (protobuf, the
//! `opentelemetry-otlp` exporter). The request path only enqueues (a full queue drops spans); an
//! unreachable collector costs no request. [`Tracer::end_span`] is the one place a span is
//! built, for server and client spans alike.
//!
//! Sampling is parent-based: a request with a `traceparent` follows its sampled flag; a new
//! trace is sampled when its trace id falls under `sample_ratio` (the rule of OpenTelemetry's
//! `TraceIdRatioBased`, so every service using it agrees on a trace).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use switchyard_balance::{ServerId, ServerSpec};
use switchyard_config::TracingConfig;
use switchyard_metrics::prometheus::IntCounter;

use super::counting_exporter::CountingExporter;
use super::trace_context::{self, TraceContext};
use crate::error::BuildError;

/// Spans waiting for export; more are dropped.
const QUEUE_SPANS: usize = 8192;
/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The span exporter of a gateway with `[tracing]`.
#[derive(Debug)]
pub struct Tracer {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
    /// New traces whose id maps below this are sampled.
    threshold: u64,
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
    /// Builds the OTLP/HTTP exporter and starts the batch processor's thread. Export failures
    /// are counted in `failures`.
    pub fn start(
        cfg: &TracingConfig,
        instance_id: &str,
        failures: IntCounter,
    ) -> Result<Tracer, BuildError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(cfg.otlp_endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| BuildError::Invalid {
                key: "tracing.otlp_endpoint".to_string(),
                reason: e.to_string(),
            })?;
        let exporter = CountingExporter {
            inner: exporter,
            failures,
            endpoint: cfg.otlp_endpoint.clone(),
            failing: Default::default(),
        };
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE_SPANS)
            .with_scheduled_delay(Duration::from_secs(1))
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build();
        processor.set_resource(
            &Resource::builder_empty()
                .with_service_name(cfg.service_name.clone())
                .with_attributes([
                    KeyValue::new("service.instance.id", instance_id.to_string()),
                    KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                ])
                .build(),
        );
        Ok(Tracer {
            processor,
            scope: InstrumentationScope::builder("switchyard")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            threshold: ratio_threshold(cfg.sample_ratio),
        })
    }

    /// Whether a new trace with this id is sampled.
    #[inline]
    pub fn sample(&self, trace_id: &trace_context::TraceId) -> bool {
        sampled_by_ratio(trace_id, self.threshold)
    }

    /// Queues the request's server span and one client span per attempt (`now` is the end of
    /// the request, on both clocks).
    pub fn export(&self, s: &ServerSpan<'_>, attempts: &[AttemptSpan], now: (Instant, SystemTime)) {
        let trace_id = TraceId::from_bytes(s.trace.trace_id);
        let server_span = SpanId::from_bytes(s.trace.span_id);
        let name = match s.route_template {
            Some(t) => {
                let mut name = String::with_capacity(s.method.len() + 1 + t.len());
                name.push_str(s.method);
                name.push(' ');
                name.push_str(t);
                Cow::Owned(name)
            }
            None => method_name(s.method),
        };
        let mut attrs = Vec::with_capacity(16);
        attrs.push(KeyValue::new("http.request.method", method_name(s.method)));
        attrs.push(KeyValue::new("url.path", s.path.to_string()));
        if let Some(q) = s.query {
            attrs.push(KeyValue::new("url.query", q.to_string()));
        }
        let scheme = if s.scheme == "https" { "https" } else { "http" };
        attrs.push(KeyValue::new("url.scheme", scheme));
        if !s.host.is_empty() {
            attrs.push(KeyValue::new("server.address", s.host.to_string()));
        }
        if let Some(t) = s.route_template {
            attrs.push(KeyValue::new("http.route", t.to_string()));
        }
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(s.status),
        ));
        attrs.push(KeyValue::new(
            "network.protocol.version",
            s.protocol_version,
        ));
        if let Some(ip) = s.client_ip {
            attrs.push(KeyValue::new("client.address", ip_text(ip)));
        }
        if let Some(ua) = s.user_agent {
            attrs.push(KeyValue::new("user_agent.original", ua.to_string()));
        }
        if let Some(id) = s.request_id {
            attrs.push(KeyValue::new("switchyard.request_id", id.to_string()));
        }
        if let Some(r) = s.route {
            attrs.push(KeyValue::new("switchyard.route", r.to_string()));
        }
        if let Some(u) = s.upstream {
            attrs.push(KeyValue::new("switchyard.upstream", u.to_string()));
        }
        let failed = s.status >= 500 || s.status == 0;
        if let Some(e) = s.error.filter(|_| failed) {
            attrs.push(KeyValue::new("error.type", e.to_string()));
        } else if failed {
            attrs.push(KeyValue::new("error.type", s.status.to_string()));
        }
        self.end_span(Span {
            context: span_context(trace_id, server_span),
            parent: s
                .trace
                .parent_id
                .map_or(SpanId::INVALID, SpanId::from_bytes),
            remote_parent: s.trace.parent_id.is_some(),
            kind: SpanKind::Server,
            name,
            start: s.start,
            end: s.start + s.duration,
            attributes: attrs,
            failed,
        });
        let (now, wall) = now;
        let at = |t: Instant| wall - now.saturating_duration_since(t);
        for (retry, a) in attempts.iter().enumerate() {
            let (attributes, failed) = attempt_attributes(s.method, retry, a);
            self.end_span(Span {
                context: span_context(trace_id, SpanId::from_bytes(a.span_id)),
                parent: server_span,
                remote_parent: false,
                kind: SpanKind::Client,
                name: method_name(s.method),
                start: at(a.start),
                end: at(a.end.unwrap_or(now)),
                attributes,
                failed,
            });
        }
    }

    /// Hands one finished span to the batch processor.
    fn end_span(&self, span: Span) {
        self.processor.on_end(SpanData {
            span_context: span.context,
            parent_span_id: span.parent,
            parent_span_is_remote: span.remote_parent,
            span_kind: span.kind,
            name: span.name,
            start_time: span.start,
            end_time: span.end,
            attributes: span.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if span.failed {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// Exports what is queued and stops the exporter's thread (at process exit), waiting at
    /// most a few seconds.
    pub fn close(&self) {
        if let Err(e) = self.processor.shutdown_with_timeout(Duration::from_secs(3)) {
            log::warn!("tracing: spans lost at exit: {e}");
        }
    }
}

/// A finished span, as [`Tracer::end_span`] hands it to the SDK.
struct Span {
    context: SpanContext,
    parent: SpanId,
    remote_parent: bool,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
    failed: bool,
}

/// The attributes of an attempt's client span (the `retry`-th, from 0), and whether it failed.
fn attempt_attributes(method: &str, retry: usize, a: &AttemptSpan) -> (Vec<KeyValue>, bool) {
    let mut attrs = Vec::with_capacity(8);
    attrs.push(KeyValue::new("http.request.method", method_name(method)));
    if let Some(addr) = a.addr {
        attrs.push(KeyValue::new("server.address", ip_text(addr.ip())));
        attrs.push(KeyValue::new("server.port", i64::from(addr.port())));
    }
    attrs.push(KeyValue::new(
        "switchyard.server",
        a.server.as_str().to_string(),
    ));
    let retry = i64::try_from(retry).unwrap_or(i64::MAX);
    attrs.push(KeyValue::new("switchyard.retry", retry));
    if retry > 0 {
        attrs.push(KeyValue::new("http.request.resend_count", retry));
    }
    if let Some(status) = a.status {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    let failed = a.error.is_some() || a.status.is_some_and(|s| s >= 500);
    if let Some(e) = a.error {
        attrs.push(KeyValue::new("error.type", e));
    } else if let Some(s) = a.status.filter(|s| *s >= 500) {
        attrs.push(KeyValue::new("error.type", s.to_string()));
    }
    (attrs, failed)
}

/// The method as a span name or attribute value: the standard methods without allocating.
fn method_name(method: &str) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|m| **m == method) {
        Some(m) => Cow::Borrowed(m),
        None => Cow::Owned(method.to_string()),
    }
}

/// An address as its text, without the formatting machinery.
fn ip_text(ip: std::net::IpAddr) -> String {
    let mut text = Vec::with_capacity(15);
    super::line_text::push_ip(&mut text, ip);
    String::from_utf8(text).unwrap_or_default()
}

fn span_context(trace_id: TraceId, span_id: SpanId) -> SpanContext {
    SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
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
