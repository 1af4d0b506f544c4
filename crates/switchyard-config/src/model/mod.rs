//! The typed configuration: one struct per TOML table, one file per section.
//!
//! These types are the library's public API: an embedder can build a [`Config`] in code without any
//! TOML. Every field documents its TOML key and default; `docs/configuration.md` is the reference.
//! A new section is a new file here (its table's types) and one in `validate/` (its rules), plus
//! its field on [`Config`].

mod admin;
mod algorithm;
mod cascade;
mod cidr;
mod cluster;
mod config;
mod defaults;
mod group;
mod health;
mod limits;
mod listener;
mod listener_tls;
mod metrics;
mod observability;
mod proxy_protocol;
mod rate_limit;
mod resilience;
mod route;
mod server;
mod status_range;
mod sticky;
mod upstream;

pub use admin::AdminConfig;
pub use algorithm::{Algorithm, HashOn, HashRing};
pub use cascade::CascadeConfig;
pub use cidr::Cidr;
pub use cluster::ClusterConfig;
pub use config::Config;
pub use group::{GroupConfig, ServerEntry};
pub use health::{
    ActiveHealthConfig, CheckMethod, CheckProtocol, HealthConfig, PassiveHealthConfig,
};
pub use limits::{
    EncodedSlashes, LimitsConfig, DEFAULT_HTTPS_READ_BUFFER_BYTES, DEFAULT_HTTP_READ_BUFFER_BYTES,
    MAX_READ_BUFFER_BYTES,
};
pub use listener::{ListenerConfig, ListenerProtocol};
pub use listener_tls::{CertKeyPair, ClientAuth, ListenerTls, TlsVersion};
pub use metrics::MetricsConfig;
pub use observability::{AccessLogConfig, AccessLogFormat, TracingConfig};
pub use proxy_protocol::ProxyProtocol;
pub use rate_limit::{RateLimitConfig, RateLimitKey};
pub use route::RouteConfig;
pub use server::{parse_resolver, ServerConfig};
pub use status_range::StatusRange;
pub use sticky::{SameSite, StickyConfig};
pub use upstream::{Scheme, UpstreamConfig, UpstreamProtocol, UpstreamTls, WhenAllDown};
