//! `[[upstreams]]`: the upstream table itself, its scheme, TLS and all-down policy.

use serde::{Deserialize, Serialize};

use super::algorithm::{Algorithm, HashOn, HashRing};
use super::defaults::default_true;
use super::group::{GroupConfig, ServerEntry};
use super::health::HealthConfig;
use super::listener::{ListenerConfig, ListenerProtocol};
use super::proxy_protocol::ProxyProtocol;
use super::resilience::{
    default_queue_timeout_ms, default_retry_budget_min, default_retry_budget_percent,
};
use super::sticky::StickyConfig;

/// Upstream scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS, configured by the upstream's `tls` table.
    Https,
}

/// `protocol`: the HTTP version spoken to an upstream's servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    #[default]
    Http1,
    /// HTTP/2: h2c with prior knowledge on `scheme = "http"`; h2 negotiated by ALPN on `"https"`
    /// (a server that does not offer h2 is a connect failure).
    Http2,
    /// On `https`: h2 if the server offers it in ALPN, else HTTP/1.1. On `http`: HTTP/1.1.
    Auto,
}

/// What to do when no server of an upstream is available.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenAllDown {
    /// Answer 503 with a short body.
    #[default]
    Reject,
    /// Panic mode: use every enabled server, healthy or not.
    All,
}

fn default_max_concurrent_streams() -> u32 {
    100
}

/// `[[upstreams]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `name`: unique; routes refer to it.
    pub name: String,
    /// `algorithm`. Default `wrr`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `hash_on`: the key of `consistent_hash`. Default `source_ip`.
    #[serde(default)]
    pub hash_on: Option<HashOn>,
    /// `hash_ring`: the ring of the hashing algorithms (`consistent_hash`, `source_ip_hash`,
    /// `uri_hash`): `maglev` or `ketama` (NGINX-compatible). Only allowed with them; default
    /// `maglev` (see [`UpstreamConfig::effective_hash_ring`]).
    #[serde(default)]
    pub hash_ring: Option<HashRing>,
    /// `port`: default port for servers whose port is 0. Default 80.
    #[serde(default = "default_upstream_port")]
    pub port: u16,
    /// `scheme`: `http` | `https`. Default `http`.
    #[serde(default)]
    pub scheme: Scheme,
    /// `protocol`: `http1` | `http2` | `auto`. Default `http1`.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// `max_concurrent_streams`: the most requests (streams) one HTTP/2 connection to a server
    /// carries at once; the server's own `SETTINGS_MAX_CONCURRENT_STREAMS` lowers it, and a new
    /// connection is opened when every one is full. Default 100.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// `tls`: TLS settings for `https` upstreams and `https` health checks.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// `when_all_down`: `reject` (503) | `all` (panic mode). Default `reject`.
    #[serde(default)]
    pub when_all_down: WhenAllDown,
    /// `cascade`: sign requests to this upstream as a cascading instance. Default false.
    #[serde(default)]
    pub cascade: bool,
    /// `proxy_protocol`: PROXY header sent on each new connection to this upstream's servers
    /// (HTTP upstreams). Default `off`.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// `resolve_interval_ms`: how often server names are re-resolved. Default 30000.
    #[serde(default = "default_resolve_interval_ms")]
    pub resolve_interval_ms: u64,
    /// `max_in_flight_per_server`: the most requests (or TCP connections) in flight on each
    /// server at once; a server's own `max_in_flight` replaces it. 0 = unlimited (default).
    #[serde(default)]
    pub max_in_flight_per_server: u32,
    /// `slow_start_ms`: a server that (re)enters service — healthy again, enabled, or added by
    /// reload, DNS or the cluster — ramps from 10% to its full weight (and its share of
    /// `least_conn`/`ewma` traffic) over this window; not the servers present at start-up, not
    /// hashing. 0 = off (default); at most one hour.
    #[serde(default)]
    pub slow_start_ms: u64,
    /// `queue_size`: requests that may wait for a free server when every one is at its limit.
    /// Default 0 (no queue: such a request gets 503 at once).
    #[serde(default)]
    pub queue_size: u32,
    /// `queue_timeout_ms`: a queued request still waiting after this gets 503. Default 1000.
    #[serde(default = "default_queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// `retry_budget_percent`: retries in flight to this upstream may be at most this share of
    /// its requests in flight, 0..=100. Default 20.
    #[serde(default = "default_retry_budget_percent")]
    pub retry_budget_percent: u32,
    /// `retry_budget_min`: this many retries in flight are always allowed. Default 3.
    #[serde(default = "default_retry_budget_min")]
    pub retry_budget_min: u32,
    /// `retry_backoff_ms`: base of the jittered exponential backoff before each retry (0 =
    /// none). Default 0.
    #[serde(default)]
    pub retry_backoff_ms: u64,
    /// `[upstreams.sticky]`: cookie-insertion session persistence; absent = off.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// `[[upstreams.groups]]`.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// `[upstreams.health]`.
    #[serde(default)]
    pub health: HealthConfig,
}

impl UpstreamConfig {
    /// True when requests to this upstream may travel over HTTP/2: `protocol = "http2"`, or
    /// `"auto"` with `scheme = "https"` (ALPN decides). gRPC needs it.
    ///
    /// ```
    /// use switchyard_config::{Scheme, UpstreamProtocol};
    /// let mut cfg = switchyard_config::parse_str(r#"
    /// [[upstreams]]
    /// name = "u"
    /// groups = [{ name = "g", servers = [{ address = "127.0.0.1" }] }]
    /// "#).unwrap();
    /// let mut up = cfg.upstreams.remove(0);
    /// assert!(!up.may_use_h2());
    /// up.protocol = UpstreamProtocol::Auto;
    /// assert!(!up.may_use_h2()); // auto on plain http is HTTP/1.1
    /// up.scheme = Scheme::Https;
    /// assert!(up.may_use_h2());
    /// ```
    pub fn may_use_h2(&self) -> bool {
        match self.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Auto => self.scheme == Scheme::Https,
        }
    }

    /// Every server with its group, effective port (the upstream's `port` when the server's is 0)
    /// and effective weight (the group's `weight` unless the server sets its own), in file order.
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    /// port = 8080
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   weight = 5
    ///     [[upstreams.groups.servers]]
    ///     address = "10.0.0.1"
    ///     [[upstreams.groups.servers]]
    ///     address = "10.0.0.2"
    ///     port = 9090
    ///     weight = 1
    /// "#).unwrap();
    /// let up = cfg.upstream("api").unwrap();
    /// let ids: Vec<String> = up
    ///     .servers()
    ///     .map(|(g, s, port, weight)| format!("{}/{}={weight}", g.name, s.host_port(port)))
    ///     .collect();
    /// assert_eq!(ids, ["blue/10.0.0.1:8080=5", "blue/10.0.0.2:9090=1"]);
    /// ```
    pub fn servers(&self) -> impl Iterator<Item = (&GroupConfig, &ServerEntry, u16, u32)> + '_ {
        self.groups.iter().flat_map(move |g| {
            g.servers.iter().map(move |s| {
                (
                    g,
                    s,
                    s.effective_port(self.port),
                    s.effective_weight(g.weight),
                )
            })
        })
    }

    /// How many servers have `enabled = true` (standby and weight-0 servers included: they can
    /// still take a retry).
    ///
    /// ```
    /// let cfg = switchyard_config::parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }, { address = "10.0.0.2", enabled = false }]
    /// "#).unwrap();
    /// assert_eq!(cfg.upstreams[0].enabled_server_count(), 1);
    /// ```
    pub fn enabled_server_count(&self) -> usize {
        self.servers().filter(|(_, s, _, _)| s.enabled).count()
    }

    /// The PROXY header this upstream's active checks send before anything else (HAProxy's
    /// default with `send-proxy`, `check-send-proxy` to force it): `health.active.proxy_protocol`
    /// when set; otherwise none when the checks go to their own `port`; otherwise the version the
    /// traffic to these servers carries — the upstream's `proxy_protocol`, else that of a `tcp`
    /// listener in `listeners` that proxies to this upstream. Off without active checks.
    ///
    /// ```
    /// use switchyard_config::{parse_str, ProxyProtocol};
    /// let cfg = parse_str(r#"
    /// [[listeners]]
    /// name = "db"
    /// protocol = "tcp"
    /// listen = "127.0.0.1:5432"
    /// upstream = "pg"
    /// proxy_protocol = "v2"
    ///
    /// [[upstreams]]
    /// name = "pg"
    ///   [upstreams.health.active]
    ///   protocol = "tcp"
    ///   [[upstreams.groups]]
    ///   name = "g"
    ///   servers = [{ address = "10.0.0.1", port = 5432 }]
    /// "#).unwrap();
    /// let pg = cfg.upstream("pg").unwrap();
    /// assert_eq!(pg.check_proxy_protocol(&cfg.listeners), ProxyProtocol::V2);
    /// // Checked without knowing the listeners: only the upstream's own setting counts.
    /// assert_eq!(pg.check_proxy_protocol(&[]), ProxyProtocol::Off);
    /// ```
    pub fn check_proxy_protocol(&self, listeners: &[ListenerConfig]) -> ProxyProtocol {
        let Some(active) = &self.health.active else {
            return ProxyProtocol::Off;
        };
        if let Some(explicit) = active.proxy_protocol {
            return explicit;
        }
        if active.port != 0 {
            return ProxyProtocol::Off;
        }
        if self.proxy_protocol != ProxyProtocol::Off {
            return self.proxy_protocol;
        }
        listeners
            .iter()
            .filter(|l| l.protocol == ListenerProtocol::Tcp)
            .filter(|l| l.upstream.as_deref() == Some(self.name.as_str()))
            .map(|l| l.proxy_protocol)
            .find(|p| *p != ProxyProtocol::Off)
            .unwrap_or(ProxyProtocol::Off)
    }

    /// The ring of a hashing upstream: `hash_ring`, or `maglev` when unset.
    ///
    /// ```
    /// use switchyard_config::{parse_str, HashRing};
    /// let cfg = parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    /// algorithm = "uri_hash"
    /// hash_ring = "ketama"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }]
    /// "#).unwrap();
    /// assert_eq!(cfg.upstreams[0].effective_hash_ring(), HashRing::Ketama);
    /// ```
    pub fn effective_hash_ring(&self) -> HashRing {
        self.hash_ring.unwrap_or_default()
    }

    /// The key a `consistent_hash` upstream hashes on: `hash_on`, or `source_ip` when unset.
    /// `None` for the other algorithms (`source_ip_hash` and `uri_hash` have fixed keys).
    ///
    /// ```
    /// use switchyard_config::{parse_str, HashOn};
    /// let cfg = parse_str(r#"
    /// [[upstreams]]
    /// name = "api"
    /// algorithm = "consistent_hash"
    ///   [[upstreams.groups]]
    ///   name = "blue"
    ///   servers = [{ address = "10.0.0.1" }]
    /// "#).unwrap();
    /// assert_eq!(cfg.upstreams[0].effective_hash_on(), Some(HashOn::SourceIp));
    /// ```
    pub fn effective_hash_on(&self) -> Option<HashOn> {
        match self.algorithm {
            Algorithm::ConsistentHash => Some(self.hash_on.clone().unwrap_or(HashOn::SourceIp)),
            _ => None,
        }
    }
}

fn default_upstream_port() -> u16 {
    80
}

fn default_resolve_interval_ms() -> u64 {
    30_000
}

/// `tls` of an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// `verify`: verify the server certificate. Default true.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// `sni`: the name sent in SNI and verified; default: the server's address.
    #[serde(default)]
    pub sni: Option<String>,
    /// `ca`: PEM file of extra trusted roots; default: the bundled web roots.
    #[serde(default)]
    pub ca: Option<String>,
    /// `client_cert`: PEM client certificate for two-way TLS.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// `client_key`: PEM client key for two-way TLS.
    #[serde(default)]
    pub client_key: Option<String>,
}
