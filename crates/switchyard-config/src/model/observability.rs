//! `[access_log]` and `[tracing]`: what the gateway records about each request.

use serde::{Deserialize, Serialize};

/// `[access_log]`: one line per request (and per TCP connection). Absent = no access log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `path`: the file lines are appended to, or `-` for standard output. A relative path is
    /// relative to the config file's directory ([`crate::load_file`] resolves it). Default `-`.
    #[serde(default = "default_access_log_path")]
    pub path: String,
    /// `format`: `json` (one object per line) or `combined` (NGINX's `combined`). Default `json`.
    #[serde(default)]
    pub format: AccessLogFormat,
}

impl AccessLogConfig {
    /// True if lines go to standard output (`path = "-"`).
    pub fn is_stdout(&self) -> bool {
        self.path == "-"
    }
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            path: default_access_log_path(),
            format: AccessLogFormat::default(),
        }
    }
}

fn default_access_log_path() -> String {
    "-".to_string()
}

/// `[access_log].format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line, with every field of `docs/configuration.md`.
    #[default]
    Json,
    /// NGINX's `combined` log format.
    Combined,
}

/// `[tracing]`: OpenTelemetry spans exported over OTLP/HTTP. Absent = no spans are exported
/// (W3C `traceparent` is still propagated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// `otlp_endpoint`: the full URL spans are POSTed to (OTLP over HTTP, protobuf), `http://`
    /// or `https://`. Default `http://127.0.0.1:4318/v1/traces`.
    #[serde(default = "default_otlp_endpoint")]
    pub otlp_endpoint: String,
    /// `service_name`: the `service.name` resource attribute. Default `switchyard`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// `sample_ratio`: the share of new traces (requests without a `traceparent`) that are
    /// sampled, 0.0 to 1.0. Requests with a `traceparent` follow its sampled flag. Default 1.0.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// `ca_file`: PEM certificates trusted for an `https` endpoint, in addition to the
    /// built-in public roots (the OpenTelemetry Collector's `tls.ca_file`, Envoy's
    /// `trusted_ca`). Relative to the config file. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: default_otlp_endpoint(),
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
            ca_file: None,
        }
    }
}

fn default_otlp_endpoint() -> String {
    "http://127.0.0.1:4318/v1/traces".to_string()
}

fn default_service_name() -> String {
    "switchyard".to_string()
}

fn default_sample_ratio() -> f64 {
    1.0
}
