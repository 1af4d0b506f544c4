//! `Config`: the whole file, and look-ups across its tables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::admin::AdminConfig;
use super::cascade::CascadeConfig;
use super::cluster::ClusterConfig;
use super::limits::LimitsConfig;
use super::listener::{ListenerConfig, ListenerProtocol};
use super::metrics::MetricsConfig;
use super::observability::{AccessLogConfig, TracingConfig};
use super::route::RouteConfig;
use super::server::ServerConfig;
use super::upstream::UpstreamConfig;

/// The whole configuration file.
///
/// ```
/// let cfg: switchyard_config::Config = switchyard_config::parse_str(r#"
/// [[listeners]]
/// name = "web"
/// listen = "127.0.0.1:8080"
///
/// [[routes]]
/// name = "all"
/// path_prefix = "/"
/// upstream = "api"
///
/// [[upstreams]]
/// name = "api"
///   [[upstreams.groups]]
///   name = "blue"
///     [[upstreams.groups.servers]]
///     address = "127.0.0.1"
///     port = 8081
/// "#).unwrap();
/// assert_eq!(cfg.upstreams[0].groups[0].servers[0].port, 8081);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[variables]`: values substituted for `#name#` in `backend_path`.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// `[metrics]`: the Prometheus endpoint; absent = no metrics listener.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// `[admin]`: the admin API and status page; absent = no admin listener.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// `[limits]`: protective limits on client input.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[[listeners]]`.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// `[[routes]]`.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// `[[upstreams]]`.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// `[cascade]`: API cascading between instances; absent = off.
    #[serde(default)]
    pub cascade: Option<CascadeConfig>,
    /// `[access_log]`: one line per request and per TCP connection; absent = no access log.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// `[tracing]`: OpenTelemetry spans over OTLP/HTTP; absent = none exported.
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
    /// `[cluster]`: shared configuration from etcd (`docs/fleet.md`); absent = this file is the
    /// only source.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// The upstream named `name`.
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }]
    /// "#).unwrap();
    /// assert_eq!(cfg.upstream("api").map(|u| u.port), Some(80));
    /// assert!(cfg.upstream("nope").is_none());
    /// ```
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The listeners a route serves: those it names, or every http/https listener when its
    /// `listeners` list is empty.
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[listeners]]
    /// name = "web"
    /// listen = "127.0.0.1:8080"
    /// [[listeners]]
    /// name = "db"
    /// protocol = "tcp"
    /// listen = "127.0.0.1:5432"
    /// upstream = "api"
    /// [[routes]]
    /// name = "all"
    /// upstream = "api"
    /// [[upstreams]]
    /// name = "api"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }]
    /// "#).unwrap();
    /// let names: Vec<&str> = cfg.route_listeners(&cfg.routes[0]).map(|l| l.name.as_str()).collect();
    /// assert_eq!(names, ["web"]);
    /// ```
    pub fn route_listeners<'a>(
        &'a self,
        route: &'a RouteConfig,
    ) -> impl Iterator<Item = &'a ListenerConfig> + 'a {
        self.listeners.iter().filter(move |l| {
            if route.listeners.is_empty() {
                l.protocol != ListenerProtocol::Tcp
            } else {
                route.listeners.iter().any(|n| n == &l.name)
            }
        })
    }
}
