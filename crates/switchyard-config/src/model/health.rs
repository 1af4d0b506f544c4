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
    /// `protocol`: `tcp` | `http` | `https`. Default `http`.
    #[serde(default)]
    pub protocol: CheckProtocol,
    /// `path`: request path. Default `/`.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// `method`: `GET` | `HEAD`. Default `GET`.
    #[serde(default)]
    pub method: CheckMethod,
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
    /// `status_codes`: healthy statuses: integers or `"200-399"` ranges. Default `["200-399"]`.
    #[serde(default = "default_status_codes")]
    pub status_codes: Vec<StatusRange>,
    /// `proxy_protocol`: PROXY header each check sends first: `off` | `v1` (`PROXY UNKNOWN`) |
    /// `v2` (`LOCAL`). Absent: the version the upstream's traffic carries, unless `port` sends the
    /// checks elsewhere (see
    /// [`UpstreamConfig::check_proxy_protocol`](super::UpstreamConfig::check_proxy_protocol)).
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
}

fn default_health_path() -> String {
    "/".to_string()
}

fn default_threshold() -> u32 {
    3
}

fn default_interval_ms() -> u64 {
    3000
}

fn default_status_codes() -> Vec<StatusRange> {
    vec![StatusRange { lo: 200, hi: 399 }]
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
