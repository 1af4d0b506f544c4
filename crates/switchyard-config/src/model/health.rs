//! `[upstreams.health]`: active checks and passive outlier detection.

use serde::{Deserialize, Serialize};

use super::defaults::default_timeout_ms;
use super::proxy_protocol::ProxyProtocol;
use super::status_range::StatusRange;

/// `[upstreams.health]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `[upstreams.health.active]`: absent = no active checks.
    #[serde(default)]
    pub active: Option<ActiveHealthConfig>,
    /// `[upstreams.health.passive]`: absent = no passive checks.
    #[serde(default)]
    pub passive: Option<PassiveHealthConfig>,
}

/// Active check protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckProtocol {
    /// A TCP connect.
    Tcp,
    /// An HTTP request.
    #[default]
    Http,
    /// An HTTP request over TLS, using the upstream's `tls` table.
    Https,
    /// `grpc.health.v1.Health/Check` over the upstream's HTTP/2 (h2c, or h2 with its `tls`).
    Grpc,
}

/// Active check method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckMethod {
    /// `GET`.
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// `HEAD`.
    #[serde(rename = "HEAD")]
    Head,
}

/// `[upstreams.health.active]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthConfig {
    /// `protocol`: `tcp` | `http` | `https` | `grpc`. Default `http`.
    #[serde(default)]
    pub protocol: CheckProtocol,
    /// `path`: request path of `http`/`https` checks; `None` when not set (so that it can be
    /// refused beside `grpc`): [`ActiveHealthConfig::path()`] gives the default, `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `method`: `GET` | `HEAD`; [`ActiveHealthConfig::method()`] gives the default, `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<CheckMethod>,
    /// `grpc_service`: the service name a `grpc` check asks about (`""`: the whole server).
    /// Default `""`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_service: Option<String>,
    /// `port`: 0 = the server's own port. Default 0.
    #[serde(default)]
    pub port: u16,
    /// `host`: the Host header; default: the server's address.
    #[serde(default)]
    pub host: Option<String>,
    /// `healthy_threshold`: consecutive successes to become healthy. Default 3.
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
    /// `unhealthy_threshold`: consecutive failures to become unhealthy. Default 3.
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
    /// `timeout_ms`: per-check timeout. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `interval_ms`: time between checks of one server (jittered ±10%). Default 3000.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// `status_codes`: healthy statuses: integers or `"200-399"` ranges;
    /// [`ActiveHealthConfig::status_codes()`] gives the default, `["200-399"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_codes: Option<Vec<StatusRange>>,
    /// `proxy_protocol`: PROXY header each check sends first: `off` | `v1` (`PROXY UNKNOWN`) |
    /// `v2` (`LOCAL`). Absent: the version the upstream's traffic carries, unless `port` sends the
    /// checks elsewhere (see
    /// [`UpstreamConfig::check_proxy_protocol`](super::UpstreamConfig::check_proxy_protocol)).
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// The default status ranges of HTTP checks: 200–399.
const DEFAULT_STATUS_CODES: &[StatusRange] = &[StatusRange { lo: 200, hi: 399 }];

impl ActiveHealthConfig {
    /// The request path of HTTP checks (`path`, default `/`).
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[upstreams]]
    /// name = "u"
    /// groups = [{ name = "g", servers = [{ address = "127.0.0.1" }] }]
    /// [upstreams.health.active]
    /// protocol = "http"
    /// "#).unwrap();
    /// let a = cfg.upstreams[0].health.active.as_ref().unwrap();
    /// assert_eq!((a.path(), a.method(), a.status_codes()[0].hi), ("/", switchyard_config::CheckMethod::Get, 399));
    /// ```
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }

    /// The method of HTTP checks (`method`, default `GET`).
    pub fn method(&self) -> CheckMethod {
        self.method.unwrap_or_default()
    }

    /// The statuses that pass an HTTP check (`status_codes`, default 200–399).
    pub fn status_codes(&self) -> &[StatusRange] {
        self.status_codes.as_deref().unwrap_or(DEFAULT_STATUS_CODES)
    }

    /// The service a gRPC check asks about (`grpc_service`, default `""`: the whole server).
    pub fn grpc_service(&self) -> &str {
        self.grpc_service.as_deref().unwrap_or("")
    }
}

fn default_threshold() -> u32 {
    3
}

fn default_interval_ms() -> u64 {
    3000
}

/// `[upstreams.health.passive]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthConfig {
    /// `unhealthy_statuses`: response statuses counted as failures. Default `[500, 502, 503, 504]`.
    #[serde(default = "default_unhealthy_statuses")]
    pub unhealthy_statuses: Vec<u16>,
    /// `unhealthy_threshold`: consecutive failures that eject. Default 3.
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
    /// `ejection_ms`: without active checks, an ejected server returns after this. Default 30000.
    #[serde(default = "default_ejection_ms")]
    pub ejection_ms: u64,
    /// `max_ejection_percent`: never eject more than this share of an upstream. Default 50.
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

fn default_unhealthy_statuses() -> Vec<u16> {
    vec![500, 502, 503, 504]
}

fn default_ejection_ms() -> u64 {
    30_000
}

fn default_max_ejection_percent() -> u32 {
    50
}
