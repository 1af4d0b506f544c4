//! Switchyard's Prometheus metric families.
//!
//! Every family is registered once in the process's default registry (the one
//! `pingora-prometheus` serves) by [`Metrics::global`]. Hot paths never look labels up per
//! request: they hold handles resolved when the configuration is built ([`RouteMetrics`],
//! [`ServerMetrics`]), and status-code series are resolved once per code and cached.
//!
//! ```
//! let m = switchyard_metrics::Metrics::global();
//! let route = m.route("users", "api");
//! route.observe(200, 0.003);
//! assert_eq!(m.requests_total.with_label_values(&["users", "api", "200"]).get(), 1);
//! ```

use std::sync::OnceLock;

use prometheus::{
    exponential_buckets, register_gauge_vec, register_histogram_vec, register_int_counter,
    register_int_counter_vec, register_int_gauge_vec, Gauge, GaugeVec, Histogram, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

pub use prometheus;

pub mod resilience;
pub use resilience::{QueueMetrics, Resilience};
pub mod build_info;

/// Every Switchyard metric family.
#[derive(Debug)]
pub struct Metrics {
    /// `switchyard_requests_total{route,upstream,code}`: responses sent to clients.
    pub requests_total: IntCounterVec,
    /// `switchyard_grpc_requests_total{route,upstream,grpc_status}`: gRPC calls answered, by the
    /// `grpc-status` they ended with (the server's, or the one the proxy answered with); a call
    /// is also counted in `switchyard_requests_total`, under its HTTP status (200).
    pub grpc_requests_total: IntCounterVec,
    /// `switchyard_request_duration_seconds{route}`: time from request to the end of the response.
    pub request_duration_seconds: HistogramVec,
    /// `switchyard_upstream_requests_total{upstream,server,outcome}`: attempts sent to each server;
    /// outcome is `success`, `http_5xx`, `connect_error`, `timeout`, `error` or
    /// `stale_connection` (a reused keep-alive connection the server had closed; retried on a
    /// fresh connection and not counted against the server's health).
    pub upstream_requests_total: IntCounterVec,
    /// `switchyard_retries_total{route}`: attempts beyond the first.
    pub retries_total: IntCounterVec,
    /// `switchyard_no_server_total{upstream}`: requests answered 503 because no server was
    /// available.
    pub no_server_total: IntCounterVec,
    /// `switchyard_rejected_requests_total{listener,reason}`: requests refused before routing
    /// (`acl`, `loop`, `no_route`, `cascade`).
    pub rejected_requests_total: IntCounterVec,
    /// `switchyard_backend_healthy{upstream,server}`: 1 healthy, 0 not.
    pub backend_healthy: IntGaugeVec,
    /// `switchyard_health_checks_total{upstream,server,result}`: active checks (`pass`/`fail`).
    pub health_checks_total: IntCounterVec,
    /// `switchyard_backend_ejections_total{upstream,server}`: passive ejections.
    pub backend_ejections_total: IntCounterVec,
    /// `switchyard_backend_in_flight{upstream,server}`: requests in flight per server.
    pub backend_in_flight: IntGaugeVec,
    /// `switchyard_backend_ewma_seconds{upstream,server}`: the peak-EWMA latency estimate the
    /// `ewma` selector reads, copied from the server's statistics at each scrape.
    pub backend_ewma_seconds: GaugeVec,
    /// `switchyard_config_reloads_total{result}`: reloads (`success`/`failure`).
    pub config_reloads_total: IntCounterVec,
    /// `switchyard_tcp_connections_total{listener,upstream,outcome}`: TCP proxy connections.
    pub tcp_connections_total: IntCounterVec,
    /// `switchyard_tcp_active_connections{listener}`: open TCP proxy connections.
    pub tcp_active_connections: IntGaugeVec,
    /// `switchyard_tcp_bytes_total{listener,direction}`: bytes proxied (`in` from clients, `out`
    /// to clients).
    pub tcp_bytes_total: IntCounterVec,
    /// `switchyard_proxy_protocol_errors_total{listener}`: connections closed for a bad or
    /// missing PROXY header.
    pub proxy_protocol_errors_total: IntCounterVec,
    /// `switchyard_dns_resolutions_total{upstream,result}`: server-name resolutions.
    pub dns_resolutions_total: IntCounterVec,
    /// `switchyard_tls_certificate_expiry_seconds{listener,name}`: the expiry (`notAfter`, Unix
    /// seconds) of the certificate an `https` listener serves for each of its names.
    pub tls_certificate_expiry_seconds: IntGaugeVec,
    /// `switchyard_access_log_dropped_total`: access-log lines dropped because the writer's
    /// queue was full (the log never blocks a request); present whether or not a log is
    /// configured.
    pub access_log_dropped_total: IntCounter,
    /// `switchyard_span_export_failures_total`: span batches the OTLP exporter failed to send
    /// (collector unreachable or refusing).
    pub span_export_failures_total: IntCounter,
    /// `switchyard_spans_dropped_total`: finished spans dropped because the exporter's queue was
    /// full (tracing never blocks a request).
    pub spans_dropped_total: IntCounter,
    /// `switchyard_requests_total{route="",upstream="",code}` series, resolved once per code.
    unrouted: CodeCounters,
}

fn build() -> Result<Metrics, prometheus::Error> {
    Ok(Metrics {
        requests_total: register_int_counter_vec!(
            "switchyard_requests_total",
            "Responses sent to clients, by route, upstream and status code.",
            &["route", "upstream", "code"]
        )?,
        grpc_requests_total: register_int_counter_vec!(
            "switchyard_grpc_requests_total",
            "gRPC calls answered, by route, upstream and grpc-status.",
            &["route", "upstream", "grpc_status"]
        )?,
        request_duration_seconds: register_histogram_vec!(
            "switchyard_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route.",
            &["route"],
            exponential_buckets(0.0005, 2.0, 16)?
        )?,
        upstream_requests_total: register_int_counter_vec!(
            "switchyard_upstream_requests_total",
            "Attempts sent to each upstream server, by outcome.",
            &["upstream", "server", "outcome"]
        )?,
        retries_total: register_int_counter_vec!(
            "switchyard_retries_total",
            "Retried attempts (beyond the first), by route.",
            &["route"]
        )?,
        no_server_total: register_int_counter_vec!(
            "switchyard_no_server_total",
            "Requests answered 503 because no server of the upstream was available.",
            &["upstream"]
        )?,
        rejected_requests_total: register_int_counter_vec!(
            "switchyard_rejected_requests_total",
            "Requests refused before reaching an upstream, by listener and reason.",
            &["listener", "reason"]
        )?,
        backend_healthy: register_int_gauge_vec!(
            "switchyard_backend_healthy",
            "1 if the server is healthy (active and passive checks), else 0.",
            &["upstream", "server"]
        )?,
        health_checks_total: register_int_counter_vec!(
            "switchyard_health_checks_total",
            "Active health checks, by result (pass or fail).",
            &["upstream", "server", "result"]
        )?,
        backend_ejections_total: register_int_counter_vec!(
            "switchyard_backend_ejections_total",
            "Passive (outlier) ejections of a server.",
            &["upstream", "server"]
        )?,
        backend_in_flight: register_int_gauge_vec!(
            "switchyard_backend_in_flight",
            "Requests in flight to each server.",
            &["upstream", "server"]
        )?,
        backend_ewma_seconds: register_gauge_vec!(
            "switchyard_backend_ewma_seconds",
            "Peak-EWMA latency estimate of each server, in seconds (decays without traffic).",
            &["upstream", "server"]
        )?,
        config_reloads_total: register_int_counter_vec!(
            "switchyard_config_reloads_total",
            "Configuration reloads, by result.",
            &["result"]
        )?,
        tcp_connections_total: register_int_counter_vec!(
            "switchyard_tcp_connections_total",
            "TCP proxy connections, by listener, upstream and outcome.",
            &["listener", "upstream", "outcome"]
        )?,
        tcp_active_connections: register_int_gauge_vec!(
            "switchyard_tcp_active_connections",
            "Open TCP proxy connections, by listener.",
            &["listener"]
        )?,
        tcp_bytes_total: register_int_counter_vec!(
            "switchyard_tcp_bytes_total",
            "Bytes proxied by TCP listeners; direction `in` is client to server.",
            &["listener", "direction"]
        )?,
        proxy_protocol_errors_total: register_int_counter_vec!(
            "switchyard_proxy_protocol_errors_total",
            "Connections closed because of a malformed or missing PROXY protocol header.",
            &["listener"]
        )?,
        dns_resolutions_total: register_int_counter_vec!(
            "switchyard_dns_resolutions_total",
            "Resolutions of server domain names, by result.",
            &["upstream", "result"]
        )?,
        tls_certificate_expiry_seconds: register_int_gauge_vec!(
            "switchyard_tls_certificate_expiry_seconds",
            "Expiry (notAfter, Unix seconds) of the certificate a TLS listener serves for a name.",
            &["listener", "name"]
        )?,
        access_log_dropped_total: register_int_counter!(
            "switchyard_access_log_dropped_total",
            "Access-log lines dropped because the writer's queue was full."
        )?,
        span_export_failures_total: register_int_counter!(
            "switchyard_span_export_failures_total",
            "Span batches the OTLP exporter failed to send."
        )?,
        spans_dropped_total: register_int_counter!(
            "switchyard_spans_dropped_total",
            "Finished spans dropped because the exporter's queue was full."
        )?,
        unrouted: CodeCounters::new("", ""),
    })
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

impl Metrics {
    /// The process-wide families, registered on first use in the default registry.
    ///
    /// Registration can only fail if another library registered the same names; the families
    /// are then created unregistered (still usable, just not exported) rather than panicking.
    pub fn global() -> &'static Metrics {
        GLOBAL.get_or_init(|| match build() {
            Ok(m) => m,
            Err(_) => unregistered(),
        })
    }

    /// Handles for one route and its upstream.
    pub fn route(&'static self, route: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics {
            duration: self.request_duration_seconds.with_label_values(&[route]),
            retries: self.retries_total.with_label_values(&[route]),
            codes: CodeCounters::new(route, upstream),
            grpc: GrpcCounters::new(route, upstream),
            metrics: self,
        }
    }

    /// Counts one response to a request that was not routed (`route` and `upstream` empty in
    /// `switchyard_requests_total`), without looking its series up each time.
    ///
    /// ```
    /// let m = switchyard_metrics::Metrics::global();
    /// m.count_unrouted(404);
    /// assert_eq!(m.requests_total.with_label_values(&["", "", "404"]).get(), 1);
    /// ```
    pub fn count_unrouted(&self, code: u16) {
        self.unrouted.inc(&self.requests_total, code);
    }

    /// Handles for one server of an upstream.
    pub fn server(&'static self, upstream: &str, server: &str) -> ServerMetrics {
        let outcome = |o: &str| {
            self.upstream_requests_total
                .with_label_values(&[upstream, server, o])
        };
        ServerMetrics {
            success: outcome("success"),
            http_5xx: outcome("http_5xx"),
            connect_error: outcome("connect_error"),
            timeout: outcome("timeout"),
            error: outcome("error"),
            stale_connection: outcome("stale_connection"),
            healthy: self.backend_healthy.with_label_values(&[upstream, server]),
            in_flight: self
                .backend_in_flight
                .with_label_values(&[upstream, server]),
            ewma_seconds: self
                .backend_ewma_seconds
                .with_label_values(&[upstream, server]),
        }
    }
}

#[allow(clippy::expect_used)]
fn unregistered() -> Metrics {
    // Only reached when the names were already taken in the default registry; every
    // constructor below is given constant, valid options, so `expect` cannot fire.
    let opts = |n: &str, h: &str| prometheus::Opts::new(n, h);
    let cv = |n: &str, l: &[&str]| IntCounterVec::new(opts(n, n), l).expect("valid opts");
    let gv = |n: &str, l: &[&str]| IntGaugeVec::new(opts(n, n), l).expect("valid opts");
    Metrics {
        requests_total: cv("switchyard_requests_total", &["route", "upstream", "code"]),
        grpc_requests_total: cv(
            "switchyard_grpc_requests_total",
            &["route", "upstream", "grpc_status"],
        ),
        request_duration_seconds: HistogramVec::new(
            prometheus::HistogramOpts::new(
                "switchyard_request_duration_seconds",
                "switchyard_request_duration_seconds",
            ),
            &["route"],
        )
        .expect("valid opts"),
        upstream_requests_total: cv(
            "switchyard_upstream_requests_total",
            &["upstream", "server", "outcome"],
        ),
        retries_total: cv("switchyard_retries_total", &["route"]),
        no_server_total: cv("switchyard_no_server_total", &["upstream"]),
        rejected_requests_total: cv(
            "switchyard_rejected_requests_total",
            &["listener", "reason"],
        ),
        backend_healthy: gv("switchyard_backend_healthy", &["upstream", "server"]),
        health_checks_total: cv(
            "switchyard_health_checks_total",
            &["upstream", "server", "result"],
        ),
        backend_ejections_total: cv(
            "switchyard_backend_ejections_total",
            &["upstream", "server"],
        ),
        backend_in_flight: gv("switchyard_backend_in_flight", &["upstream", "server"]),
        backend_ewma_seconds: GaugeVec::new(
            opts(
                "switchyard_backend_ewma_seconds",
                "switchyard_backend_ewma_seconds",
            ),
            &["upstream", "server"],
        )
        .expect("valid opts"),
        config_reloads_total: cv("switchyard_config_reloads_total", &["result"]),
        tcp_connections_total: cv(
            "switchyard_tcp_connections_total",
            &["listener", "upstream", "outcome"],
        ),
        tcp_active_connections: gv("switchyard_tcp_active_connections", &["listener"]),
        tcp_bytes_total: cv("switchyard_tcp_bytes_total", &["listener", "direction"]),
        proxy_protocol_errors_total: cv("switchyard_proxy_protocol_errors_total", &["listener"]),
        dns_resolutions_total: cv("switchyard_dns_resolutions_total", &["upstream", "result"]),
        tls_certificate_expiry_seconds: gv(
            "switchyard_tls_certificate_expiry_seconds",
            &["listener", "name"],
        ),
        access_log_dropped_total: IntCounter::new(
            "switchyard_access_log_dropped_total",
            "switchyard_access_log_dropped_total",
        )
        .expect("valid opts"),
        span_export_failures_total: IntCounter::new(
            "switchyard_span_export_failures_total",
            "switchyard_span_export_failures_total",
        )
        .expect("valid opts"),
        spans_dropped_total: IntCounter::new(
            "switchyard_spans_dropped_total",
            "switchyard_spans_dropped_total",
        )
        .expect("valid opts"),
        unrouted: CodeCounters::new("", ""),
    }
}

/// Cached status-code series: 100..=599, then 0 (no response was sent).
const CODE_SLOTS: usize = 501;

/// The cache slot of `code`; codes outside 100..=599 other than 0 are not cached.
fn code_slot(code: u16) -> Option<usize> {
    match code {
        100..=599 => Some(usize::from(code - 100)),
        0 => Some(CODE_SLOTS - 1),
        _ => None,
    }
}

/// The `switchyard_requests_total` series of one route/upstream pair, one lazily resolved
/// counter per status code, so a response costs no label hashing.
#[derive(Debug)]
struct CodeCounters {
    route: String,
    upstream: String,
    slots: Box<[OnceLock<IntCounter>]>,
}

impl CodeCounters {
    fn new(route: &str, upstream: &str) -> Self {
        CodeCounters {
            route: route.to_string(),
            upstream: upstream.to_string(),
            slots: (0..CODE_SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }

    fn inc(&self, family: &IntCounterVec, code: u16) {
        let resolve =
            || family.with_label_values(&[&self.route, &self.upstream, &code.to_string()]);
        match code_slot(code).and_then(|i| self.slots.get(i)) {
            Some(slot) => slot.get_or_init(resolve).inc(),
            None => resolve().inc(),
        }
    }
}

/// The `switchyard_grpc_requests_total` series of one route/upstream pair: one lazily resolved
/// counter per gRPC status code (0..=16), a bounded label set.
#[derive(Debug)]
struct GrpcCounters {
    route: String,
    upstream: String,
    slots: [OnceLock<IntCounter>; 17],
}

impl GrpcCounters {
    fn new(route: &str, upstream: &str) -> Self {
        GrpcCounters {
            route: route.to_string(),
            upstream: upstream.to_string(),
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn inc(&self, family: &IntCounterVec, status: u8) {
        let status = if status <= 16 { status } else { 2 };
        if let Some(slot) = self.slots.get(usize::from(status)) {
            slot.get_or_init(|| {
                family.with_label_values(&[&self.route, &self.upstream, &status.to_string()])
            })
            .inc();
        }
    }
}

/// Per-route handles: the duration histogram, the retry counter and one lazily resolved counter
/// per status code, so a request costs no label hashing.
#[derive(Debug)]
pub struct RouteMetrics {
    duration: Histogram,
    retries: IntCounter,
    codes: CodeCounters,
    grpc: GrpcCounters,
    metrics: &'static Metrics,
}

impl RouteMetrics {
    /// Records one response with `code` that took `seconds`.
    pub fn observe(&self, code: u16, seconds: f64) {
        self.duration.observe(seconds);
        self.codes.inc(&self.metrics.requests_total, code);
    }

    /// Records how one gRPC call ended (`grpc-status` 0..=16; other values are counted as 2,
    /// UNKNOWN, as gRPC clients read them).
    ///
    /// ```
    /// let m = switchyard_metrics::Metrics::global();
    /// m.route("rpc", "echo").observe_grpc(14);
    /// assert_eq!(m.grpc_requests_total.with_label_values(&["rpc", "echo", "14"]).get(), 1);
    /// ```
    pub fn observe_grpc(&self, grpc_status: u8) {
        self.grpc
            .inc(&self.metrics.grpc_requests_total, grpc_status);
    }

    /// Counts one retry.
    pub fn retried(&self) {
        self.retries.inc();
    }
}

/// Per-server handles.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    /// Attempts answered with a status not counted as a failure.
    pub success: IntCounter,
    /// Attempts answered with a 5xx.
    pub http_5xx: IntCounter,
    /// Attempts that could not connect.
    pub connect_error: IntCounter,
    /// Attempts that timed out.
    pub timeout: IntCounter,
    /// Attempts that failed otherwise (reset, protocol error).
    pub error: IntCounter,
    /// Attempts that failed on a reused keep-alive connection the server had already closed.
    pub stale_connection: IntCounter,
    /// The health gauge.
    pub healthy: IntGauge,
    /// The in-flight gauge.
    pub in_flight: IntGauge,
    /// The peak-EWMA latency gauge, in seconds.
    pub ewma_seconds: Gauge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_outside_the_usual_range_keep_their_own_series() {
        let m = Metrics::global();
        let r = m.route("codes-test", "up");
        for code in [0, 100, 0, 599, 600, 999, 100] {
            r.observe(code, 0.001);
        }
        let get = |c: &str| {
            m.requests_total
                .with_label_values(&["codes-test", "up", c])
                .get()
        };
        assert_eq!(
            [get("0"), get("100"), get("599"), get("600"), get("999")],
            [2, 2, 1, 1, 1]
        );
    }
}
