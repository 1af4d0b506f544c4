//! Why a request was refused before it reached an upstream, and the counter of each reason
//! (`switchyard_rejected_requests_total{listener, reason}`).

use std::sync::OnceLock;

use switchyard_metrics::prometheus::IntCounter;
use switchyard_metrics::Metrics;

/// Why a request was refused: the `reason` label of `switchyard_rejected_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The listener's `allow` / `deny` refused the client (`403`).
    Acl,
    /// The request carries this instance's `CDN-Loop` entry (`508`).
    Loop,
    /// No route matched (`404`).
    NoRoute,
    /// A route with `require_cascade` and no valid signature (`401` / `403`).
    Cascade,
    /// A path that cannot be normalised (`400`).
    BadPath,
    /// No `Host` where one is required, or one that is not `host[:port]` (`400`).
    BadHost,
    /// `TRACE` to a route that does not list it (`405`).
    Method,
    /// The request body stalled for `body_timeout_ms` (`408` or closed).
    BodyTimeout,
    /// A gRPC call routed to an upstream that speaks HTTP/1.1 (gRPC status 13, INTERNAL).
    GrpcNeedsHttp2,
    /// A request head that cannot be parsed: a malformed request line or header field (`400`).
    BadRequest,
}

/// The number of [`Reject`] reasons.
const REJECT_REASONS: usize = 10;

impl Reject {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reject::Acl => "acl",
            Reject::Loop => "loop",
            Reject::NoRoute => "no_route",
            Reject::Cascade => "cascade",
            Reject::BadPath => "bad_path",
            Reject::BadHost => "bad_host",
            Reject::Method => "method",
            Reject::BodyTimeout => "body_timeout",
            Reject::GrpcNeedsHttp2 => "grpc_needs_http2",
            Reject::BadRequest => "bad_request",
        }
    }
}

/// One listener's `switchyard_rejected_requests_total` counters, by [`Reject`] reason, each
/// resolved on its first use.
#[derive(Debug, Default)]
pub struct RejectCounters {
    counters: [OnceLock<IntCounter>; REJECT_REASONS],
}

impl RejectCounters {
    /// Counts one request of `listener` refused for `reason`.
    ///
    /// ```
    /// use switchyard_proxy::reject::{Reject, RejectCounters};
    /// let m = switchyard_metrics::Metrics::global();
    /// RejectCounters::default().count(m, "doc", Reject::NoRoute);
    /// let c = m.rejected_requests_total.with_label_values(&["doc", "no_route"]);
    /// assert_eq!(c.get(), 1);
    /// ```
    pub fn count(&self, metrics: &Metrics, listener: &str, reason: Reject) {
        self.counters[reason as usize]
            .get_or_init(|| {
                metrics
                    .rejected_requests_total
                    .with_label_values(&[listener, reason.label()])
            })
            .inc();
    }
}
