//! Routes at run time: compiled rewrite, ready `Host` value, retry policy, metric handles.

use std::time::Duration;

use switchyard_config::{Config, RateLimitKey, RouteConfig};
use switchyard_metrics::prometheus::IntCounter;
use switchyard_metrics::{Metrics, Resilience, RouteMetrics};

use super::BuildError;
use crate::log_throttle::LogThrottle;
use crate::rate_limit::{RateLimiter, DEFAULT_MAX_KEYS};
use crate::retry::RetryPolicy;
use crate::rewrite::Template;

/// A route's request-path view.
#[derive(Debug)]
pub struct RouteRuntime {
    /// As configured.
    pub cfg: RouteConfig,
    /// Index of its upstream in [`Runtime::upstreams`].
    pub upstream: usize,
    /// Pre-resolved metric handles.
    pub metrics: RouteMetrics,
    /// Compiled `backend_path`.
    pub rewrite: Option<Template>,
    /// `host_header` as a ready header value.
    pub host_header: Option<http::HeaderValue>,
    /// `retries`.
    pub retry: RetryPolicy,
    /// `[routes.rate_limit]`, if set.
    pub rate_limit: Option<RouteRateLimit>,
}

/// A route's rate limit at run time: its buckets, what they are keyed by, and
/// `switchyard_rate_limited_total{route}`. A reload builds new, full buckets.
#[derive(Debug)]
pub struct RouteRateLimit {
    /// The token buckets.
    pub limiter: RateLimiter,
    /// What requests are counted by.
    pub key: RateLimitKey,
    /// `switchyard_rate_limited_total{route}`.
    pub limited: IntCounter,
    /// Throttle of the "rate limited" log line (see [`crate::log_throttle`]).
    pub log: LogThrottle,
}

impl RouteRuntime {
    /// `timeout_ms`: the longest wait for each read from the server (and each write to it).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    /// `connect_timeout_ms`.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.connect_timeout_ms)
    }

    /// `tunnel_timeout_ms`: the idle limit of an upgraded (WebSocket) connection.
    pub fn tunnel_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.tunnel_timeout_ms)
    }
}

/// The routes of `cfg`, in configuration order.
pub(super) fn build(
    cfg: &Config,
    metrics: &'static Metrics,
) -> Result<Vec<RouteRuntime>, BuildError> {
    let upstream_index = |name: &str| {
        cfg.upstreams
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| BuildError::UnknownUpstream(name.to_string()))
    };
    let mut routes = Vec::with_capacity(cfg.routes.len());
    for r in &cfg.routes {
        let rewrite = r
            .backend_path
            .as_deref()
            .map(|t| Template::compile(t, &cfg.variables))
            .transpose()
            .map_err(|e| BuildError::Invalid {
                key: format!("route {}: backend_path", r.name),
                reason: e.to_string(),
            })?;
        let host_header = r
            .host_header
            .as_deref()
            .map(http::HeaderValue::from_str)
            .transpose()
            .map_err(|e| BuildError::Invalid {
                key: format!("route {}: host_header", r.name),
                reason: e.to_string(),
            })?;
        routes.push(RouteRuntime {
            cfg: r.clone(),
            upstream: upstream_index(&r.upstream)?,
            metrics: metrics.route(&r.name, &r.upstream),
            rate_limit: r.rate_limit.as_ref().map(|rl| RouteRateLimit {
                limiter: RateLimiter::new(
                    rl.requests_per_s,
                    rl.effective_burst(),
                    DEFAULT_MAX_KEYS,
                ),
                key: rl.key.clone(),
                limited: Resilience::global()
                    .rate_limited_total
                    .with_label_values(&[&r.name]),
                log: LogThrottle::default(),
            }),
            rewrite,
            host_header,
            retry: RetryPolicy::from_config(r.retries),
        });
    }
    Ok(routes)
}
