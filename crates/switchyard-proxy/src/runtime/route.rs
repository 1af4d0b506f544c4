//! Routes at run time: compiled rewrite, ready `Host` value, retry policy, metric handles.

use std::time::Duration;

use switchyard_config::{Config, RouteConfig};
use switchyard_metrics::{Metrics, RouteMetrics};

use super::BuildError;
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
            rewrite,
            host_header,
            retry: RetryPolicy::from_config(r.retries),
        });
    }
    Ok(routes)
}
