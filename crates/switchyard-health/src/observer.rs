//! What the health layer reports to its embedder: check results, transitions and ejections.

use std::fmt;

use switchyard_balance::ServerId;

/// The result of one active check.
///
/// ```
/// use switchyard_health::CheckResult;
/// let r = CheckResult::Status(503);
/// assert!(!r.is_pass());
/// assert_eq!(r.label(), "status");
/// assert_eq!(r.to_string(), "HTTP 503");
/// assert!(CheckResult::Pass { status: Some(200) }.is_pass());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// The check passed; `status` is the HTTP status (`None` for a TCP check).
    Pass {
        /// The HTTP status, if the check was HTTP(S).
        status: Option<u16>,
    },
    /// The server answered with a status outside `status_codes`.
    Status(u16),
    /// A gRPC health check answered, but not `SERVING` (the status name, e.g. `NOT_SERVING`).
    NotServing(String),
    /// The TCP connection failed (refused, unreachable, reset).
    Connect(String),
    /// The TLS handshake failed (certificate, SNI, client certificate).
    Tls(String),
    /// The server broke the HTTP protocol or closed the connection early.
    Protocol(String),
    /// The whole check took longer than `timeout_ms`.
    Timeout {
        /// The timeout that expired.
        after_ms: u64,
    },
}

impl CheckResult {
    /// True if the check passed.
    pub fn is_pass(&self) -> bool {
        matches!(self, CheckResult::Pass { .. })
    }
    /// A short, fixed label for metrics: `pass`, `status`, `connect`, `tls`, `protocol` or
    /// `timeout`.
    pub fn label(&self) -> &'static str {
        match self {
            CheckResult::Pass { .. } => "pass",
            CheckResult::Status(_) | CheckResult::NotServing(_) => "status",
            CheckResult::Connect(_) => "connect",
            CheckResult::Tls(_) => "tls",
            CheckResult::Protocol(_) => "protocol",
            CheckResult::Timeout { .. } => "timeout",
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Pass { status: Some(s) } => write!(f, "HTTP {s}"),
            CheckResult::Pass { status: None } => f.write_str("connected"),
            CheckResult::Status(s) => write!(f, "HTTP {s}"),
            CheckResult::NotServing(s) => write!(f, "gRPC health {s}"),
            CheckResult::Connect(e) => f.write_str(e),
            CheckResult::Tls(e) => write!(f, "TLS: {e}"),
            CheckResult::Protocol(e) => write!(f, "protocol: {e}"),
            CheckResult::Timeout { after_ms } => write!(f, "timeout after {after_ms} ms"),
        }
    }
}

/// Receives health events, e.g. to feed Prometheus. Every method has a no-op default; all are
/// called synchronously from the checker tasks or from [`crate::UpstreamHealth::report`], so keep
/// them cheap (increment a counter, set a gauge) and never block.
///
/// - `on_check`: every active check (`switchyard_health_checks_total{upstream,server,result}`
///   with `result = CheckResult::label()`).
/// - `on_transition`: every change of the verdict the selectors read, and once after a server's
///   first active check, which sets its initial state (`switchyard_backend_healthy`).
/// - `on_ejection`: every passive ejection (`switchyard_backend_ejections_total`).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use switchyard_balance::ServerId;
/// use switchyard_health::{CheckResult, HealthObserver};
///
/// #[derive(Default)]
/// struct Counts { checks: AtomicU64 }
/// impl HealthObserver for Counts {
///     fn on_check(&self, _upstream: &str, _server: &ServerId, _result: &CheckResult) {
///         self.checks.fetch_add(1, Ordering::Relaxed);
///     }
/// }
/// let c = Counts::default();
/// c.on_check("api", &ServerId::new("blue", "127.0.0.1:80"), &CheckResult::Status(503));
/// c.on_ejection("api", &ServerId::new("blue", "127.0.0.1:80")); // default: nothing
/// assert_eq!(c.checks.load(Ordering::Relaxed), 1);
/// ```
pub trait HealthObserver: Send + Sync + 'static {
    /// One active check finished.
    fn on_check(&self, upstream: &str, server: &ServerId, result: &CheckResult) {
        let _ = (upstream, server, result);
    }
    /// The server's verdict is now `healthy`, for `reason`.
    fn on_transition(&self, upstream: &str, server: &ServerId, healthy: bool, reason: &str) {
        let _ = (upstream, server, healthy, reason);
    }
    /// Passive outlier detection ejected the server.
    fn on_ejection(&self, upstream: &str, server: &ServerId) {
        let _ = (upstream, server);
    }
}

/// An observer that does nothing (the default).
///
/// ```
/// use switchyard_health::{HealthObserver, NoopObserver};
/// let o: &dyn HealthObserver = &NoopObserver;
/// o.on_ejection("api", &switchyard_balance::ServerId::new("g", "127.0.0.1:1"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl HealthObserver for NoopObserver {}
